"""VQ plugin -> compressed.ply -> loaded splats: renders equal the trained quantized model."""

import os

import pytest
import torch

from gs_vq.io.compressed import describe_compressed, load_compressed_splats, read_compressed
from gs_vq.io.ply import load_ply, save_ply
from gs_vq.splats import render_splats
from gs_vq.plugins import TrainContext
from gs_vq.vq import CODES_KEY, VQPlugin

ATTRS = {"sh0": {"type": "vq", "codebook_size": 32}, "shN": {"type": "rvq", "num_stages": 2, "codebook_size": 8},
         "scales": {"type": "vq", "codebook_size": 32}, "quats": {"type": "vq", "codebook_size": 32}}


def scene_splats(n=300, seed=0, features=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 3, generator=g) * torch.tensor([2.0, 2.0, 1.0]) + torch.tensor([-1.0, -1.0, 3.0])
    t = {"means": means, "scales": torch.randn(n, 3, generator=g) * 0.2 - 2.5,
         "quats": torch.randn(n, 4, generator=g), "opacities": torch.randn(n, generator=g),
         "sh0": torch.randn(n, 1, 3, generator=g), "shN": torch.randn(n, 3, 3, generator=g) * 0.2}
    if features:
        t["features"] = torch.randn(n, features, generator=g)
    splats = torch.nn.ParameterDict({k: torch.nn.Parameter(v) for k, v in t.items()})
    return splats, {k: torch.optim.Adam([splats[k]], lr=5e-3) for k in splats.keys()}


def render(splats):
    viewmats = torch.eye(4)[None]
    Ks = torch.tensor([[[40.0, 0, 24], [0, 40.0, 24], [0, 0, 1]]])
    return render_splats(splats, viewmats, Ks, 48, 48, sh_degree=1, background=[0.0, 0.0, 0.0]).rgb


def trained_plugin(tmp_path, steps=8, features=0, ctx=None, **cfg):
    splats, opts = scene_splats(features=features)
    attrs = dict(ATTRS, **({"features": {"type": "vq", "codebook_size": 16}} if features else {}))
    plugin = VQPlugin.from_dict({"vq_start": 2, "vq_every": 3, "init_iters": 3, "refresh_iters": 2,
                                 "attributes": attrs, "prune_opa": 0.0, "max_k_fraction": 0.0, **cfg})
    plugin.initialize(splats, opts, TrainContext(total_steps=steps, **(ctx or {})))
    target = torch.rand(1, 48, 48, 3, generator=torch.Generator().manual_seed(3))
    for step in range(steps):
        plugin.step_pre_forward(step, splats, opts)
        rendered = {**{k: v for k, v in splats.items()}, **plugin.splats_to_render(splats)}
        loss = (render(rendered) - target).abs().mean()
        loss.backward()
        for o in opts.values():
            o.step()
            o.zero_grad(set_to_none=True)
        plugin.step_post_backward(step, splats, opts, None)
    return plugin, splats


def test_loaded_compressed_ply_renders_like_the_trained_model(tmp_path):
    plugin, splats = trained_plugin(tmp_path)
    assert plugin.state.frozen  # snapped at the last step
    model = {**dict(splats.items()), **plugin.splats_to_render(splats)}
    model.pop(CODES_KEY)
    sizes = plugin.export(str(tmp_path), splats)
    path = os.path.join(tmp_path, "compressed.ply")
    assert sizes["compressed_bytes"] == os.path.getsize(path)
    loaded = load_compressed_splats(path)
    assert set(loaded) == {"means", "opacities", "sh0", "shN", "scales", "quats"}
    # the same Gaussians, in Morton order: match them up by position
    key = lambda m: torch.argsort(m[:, 0] * 1e8 + m[:, 1] * 1e4 + m[:, 2])  # noqa: E731
    a, b = key(model["means"].detach()), key(loaded["means"])
    for k, v in loaded.items():
        assert torch.equal(model[k].detach()[a], v[b]), k  # bit-exact after snapping
    assert torch.allclose(render(model).detach(), render(loaded), atol=1e-5)


def test_codes_and_codebooks_load_back_bit_exactly(tmp_path):
    plugin, splats = trained_plugin(tmp_path)
    from gs_vq.io.compressed import write_compressed
    from gs_vq.vq import compressed_scene

    scene = compressed_scene(plugin, splats)
    report = write_compressed(str(tmp_path / "c.ply"), scene, compact_codebooks=False)
    back = read_compressed(str(tmp_path / "c.ply"))
    order = torch.from_numpy(report["order"])
    for mine, theirs in zip(scene.attributes, back.attributes):
        assert torch.equal(theirs.codes, mine.codes[order])
        assert all(torch.equal(x, y) for x, y in zip(mine.codebooks, theirs.codebooks))
        for m, cb in enumerate(theirs.codebooks):
            assert back.attributes and cb.shape[0] == plugin.state.slots[mine.name].quantizer.codebook_sizes[m]


def test_standard_ply_matches_compressed(tmp_path):
    plugin, splats = trained_plugin(tmp_path, features=4)
    rendered = {k: v.detach() for k, v in {**dict(splats.items()), **plugin.splats_to_render(splats)}.items()}
    std = str(tmp_path / "point_cloud.ply")
    save_ply(rendered, std)
    sizes = plugin.export(str(tmp_path), splats)
    assert sizes["compression_ratio"] == pytest.approx(os.path.getsize(std) / sizes["compressed_bytes"], rel=1e-3)
    bits = describe_compressed(str(tmp_path / "compressed.ply"))["bits_per_gaussian"]
    assert bits == sizes["bits_per_gaussian"] and "features.index" in bits
    a, b = load_ply(std), load_compressed_splats(str(tmp_path / "compressed.ply"))
    key = lambda m: torch.argsort(m[:, 0] * 1e8 + m[:, 1] * 1e4 + m[:, 2])  # noqa: E731
    ia, ib = key(a["means"]), key(b["means"])
    for k in b:
        assert torch.equal(a[k][ia], b[k][ib]), k


def test_unquantized_attributes_are_stored_raw(tmp_path):
    plugin, splats = trained_plugin(tmp_path, attributes={"shN": None, "quats": None})
    plugin.export(str(tmp_path), splats)
    scene = read_compressed(str(tmp_path / "compressed.ply"))
    assert {a.name for a in scene.attributes} == {"sh0", "scales"}
    assert set(scene.raw) == {"shN", "quats"}
    loaded = scene.to_splats()
    key = lambda m: torch.argsort(m[:, 0] * 1e8 + m[:, 1] * 1e4 + m[:, 2])  # noqa: E731
    a, b = key(splats["means"].detach()), key(loaded["means"])
    assert torch.equal(splats["shN"].detach()[a], loaded["shN"][b])  # snapped to float16 at the end


def test_contracted_position_grid_loads_back_exactly(tmp_path):
    """pos_contract: the grid lives in contracted space around the training cameras; the file is
    version 3 and the loaded means equal the snapped model's bit for bit."""
    from types import SimpleNamespace

    cams = []
    for x in (-1.0, 1.0):
        viewmat = torch.eye(4)
        viewmat[0, 3] = -x  # camera centre at (x, 0, 0)
        cams.append(SimpleNamespace(viewmat=viewmat))
    plugin, splats = trained_plugin(tmp_path, pos_bits=8, pos_contract=1.5,
                                    ctx={"scene": SimpleNamespace(train_cameras=cams)})
    grid = plugin.state.grid
    assert grid.radius == pytest.approx(1.5) and grid.center == pytest.approx((0.0, 0.0, 0.0))
    plugin.export(str(tmp_path), splats)
    path = os.path.join(tmp_path, "compressed.ply")
    assert describe_compressed(path)["version"] == 3
    loaded = load_compressed_splats(path)["means"]
    mine = splats["means"].detach()
    key = lambda m: torch.argsort(m[:, 0] * 1e8 + m[:, 1] * 1e4 + m[:, 2])  # noqa: E731
    assert torch.equal(mine[key(mine)], loaded[key(loaded)])


def test_codebook_step_rounds_the_stored_codebook_to_its_grid(tmp_path):
    """vq.attributes.shN.codebook_step: the snapped shN tables are multiples of the step, the file
    stores them exactly and is smaller than with float16's own resolution."""
    from gs_vq.errors import GsVqError
    from gs_vq.io.scene import round_step

    step = 2.0**-6
    shN = dict(ATTRS["shN"], codebook_step=step)
    plugin, splats = trained_plugin(tmp_path, attributes=dict(ATTRS, shN=shN))
    tables = plugin.state.slots["shN"].tables()
    assert all(torch.equal(round_step(t, step), t) for t in tables)
    assert not all(torch.equal(round_step(t, step), t) for t in plugin.state.slots["sh0"].tables())
    plugin.export(str(tmp_path), splats)
    back = read_compressed(os.path.join(tmp_path, "compressed.ply"))
    books = {a.name: a.codebooks for a in back.attributes}
    assert all(torch.equal(round_step(t, step), t) for t in books["shN"])
    with_step = describe_compressed(os.path.join(tmp_path, "compressed.ply"))["bits_per_gaussian"]["shN.codebook"]
    plain_dir = tmp_path / "plain"
    plain, plain_splats = trained_plugin(plain_dir)
    plain.export(str(plain_dir), plain_splats)
    assert with_step < describe_compressed(str(plain_dir / "compressed.ply"))["bits_per_gaussian"]["shN.codebook"]
    for bad in (0.003, 2.0, -0.25, True):
        with pytest.raises(GsVqError, match="codebook_step"):
            VQPlugin.from_dict({"attributes": {"shN": dict(ATTRS["shN"], codebook_step=bad)}})


def test_position_bits_chosen_by_measured_loss(tmp_path):
    """vq.pos_max_drop: the kept grid costs at most the budget on the training views, one bit
    fewer costs more; the file stores that grid and train stats report the drops."""
    from types import SimpleNamespace

    from gs_vq.vq.positions import MIN_BITS

    splats, _ = scene_splats()
    K = torch.tensor([[40.0, 0, 24], [0, 40.0, 24], [0, 0, 1]])
    cams = []
    for x in (-0.2, 0.0, 0.2):
        viewmat = torch.eye(4)
        viewmat[0, 3] = -x
        image = render_splats({k: v.detach() for k, v in splats.items()}, viewmat[None], K[None], 48, 48,
                              sh_degree=1, background=[0.0] * 3).rgb[0]
        cams.append(SimpleNamespace(viewmat=viewmat, K=K, width=48, height=48, image=image))
    scene = SimpleNamespace(train_cameras=cams, white_background=False)
    budget = 0.5
    plugin, splats = trained_plugin(tmp_path, pos_bits=12, pos_max_drop=budget, ctx={"scene": scene})
    drops, bits = plugin.state.pos_drops, plugin.state.grid.bits
    assert drops[bits] <= budget and bits < 12
    assert bits == MIN_BITS or drops[bits - 1] > budget
    stats = plugin.export(str(tmp_path), splats)
    assert stats["position_bits"] == bits and set(stats["position_drops"]) == {str(b) for b in drops}
    assert read_compressed(os.path.join(tmp_path, "compressed.ply")).grid.bits == bits
