"""Fewer Gaussians and fewer SH bands in the VQ plugin: significance pruning, per-Gaussian SH
degree, and their consistency through gsplat's ops, checkpoints and compressed.ply."""

import math
import os
from types import SimpleNamespace

import pytest
import torch
from gsplat.cuda._torch_impl import _spherical_harmonics
from gsplat.strategy import ops

from gs_vq.errors import GsVqError
from gs_vq.io.compressed import load_compressed_splats, read_compressed
from gs_vq.plugins import TrainContext
from gs_vq.vq import CODES_KEY, VQPlugin
from gs_vq.vq.codes import SH_DEGREES_KEY
from gs_vq.render.contribution import contribution
from gs_vq.vq.importance import lowest, prune_count, sh_drop_mask, view_dependence, view_subset

from test_vq_export import ATTRS, render, scene_splats, trained_plugin

CAMERA = SimpleNamespace(viewmat=torch.eye(4), K=torch.tensor([[40.0, 0, 24], [0, 40.0, 24], [0, 0, 1]]),
                         width=48, height=48)
SCENE = SimpleNamespace(train_cameras=[CAMERA])
REDUCE = {"prune_window": 6, "prune_every": 2, "prune_fraction": 0.3, "sh_drop": 0.5,
          "significance_downscale": 1}


def test_view_dependence_is_the_rms_of_the_sh_colour_over_directions():
    g = torch.Generator().manual_seed(0)
    coeffs = torch.randn(5, 16, 3, generator=g)  # degree 3
    dirs = torch.nn.functional.normalize(torch.randn(50000, 3, generator=g), dim=-1)  # [D, 3]
    full = _spherical_harmonics(3, dirs[:, None].expand(-1, 5, -1),
                                coeffs[None].expand(len(dirs), -1, -1, -1))  # [D, 5, 3]
    dc = coeffs[:, 0] * 0.28209479177387814  # [5, 3]
    mc = (full - dc).pow(2).mean(dim=(0, 2)).sqrt()  # Monte Carlo RMS over directions
    assert torch.allclose(view_dependence(coeffs[:, 1:]), mc, rtol=0.03)


def test_masks_pick_the_lowest_and_never_everything():
    s = torch.tensor([3.0, 1.0, 2.0, 1.0, 5.0])
    assert lowest(s, 2).tolist() == [False, True, False, True, False]  # ties: stable order
    assert lowest(s, 99).sum() == 4 and lowest(s, 0).sum() == 0
    assert prune_count(1000, 0.3, 0) == 300 and prune_count(1000, 0.0, 600) == 400
    assert prune_count(1000, 0.3, 800) == 300 and prune_count(1000, 0.0, 2000) == 0
    shN = torch.zeros(4, 3, 3)
    shN[:, 0, 0] = torch.tensor([0.1, 0.4, 0.2, 0.3])
    assert sh_drop_mask(shN, None, 0.5).tolist() == [True, False, True, False]
    # significance weighs in: a strongly view-dependent but invisible Gaussian goes first
    assert sh_drop_mask(shN, torch.tensor([1.0, 0.0, 1.0, 1.0]), 0.25).tolist() == [False, True, False, False]


def fitted_plugin(scene=SCENE, **options):
    """A VQ plugin with REDUCE's options (and ``options``), fitted at step 0 on scene_splats()."""
    splats, opts = scene_splats()
    plugin = VQPlugin.from_dict({"vq_start": 0, "attributes": ATTRS, "prune_opa": 0.0, "max_k_fraction": 0.0,
                                 "init_iters": 2, **REDUCE, **options})
    plugin.initialize(splats, opts, TrainContext(total_steps=10, scene=scene))
    plugin.step_pre_forward(0, splats, opts)
    return plugin, splats, opts


def test_reduce_removes_the_least_significant_and_drops_sh():
    plugin, splats, opts = fitted_plugin()
    score = contribution(splats, [CAMERA])  # the significance reduce() ranks by
    keep = set(map(tuple, splats["means"].detach()[~lowest(score, 90)].tolist()))
    counts = plugin.prune_insignificant(splats, opts)
    assert counts == {"pruned": 90, "sh_dropped": 105}
    assert set(map(tuple, splats["means"].detach().tolist())) == keep
    degrees = splats[SH_DEGREES_KEY]
    assert degrees.shape == (210,) and int((degrees == 0).sum()) == 105 and set(degrees.tolist()) == {0, 1}
    rendered = plugin.splats_to_render(splats)["shN"]
    assert (rendered[degrees == 0] == 0).all() and (rendered[degrees > 0] != 0).any()
    assert (splats[CODES_KEY][degrees == 0][:, plugin.state.slots["shN"].cols] == 0).all()


def test_sh_degrees_follow_ops_and_checkpoints():
    plugin, splats, opts = fitted_plugin()
    plugin.prune_insignificant(splats, opts)
    before = splats[SH_DEGREES_KEY].clone()
    state = {"grad2d": torch.zeros(210), "count": torch.zeros(210)}
    sel = torch.zeros(210, dtype=torch.bool)
    sel[:20] = True
    ops.split(splats, opts, state, sel)  # children of a degree-0 Gaussian are degree 0
    plugin.sync(splats)
    n = splats["means"].shape[0]
    assert splats[SH_DEGREES_KEY].shape == (n,)
    assert torch.equal(splats[SH_DEGREES_KEY][-40:], before[:20].repeat(2))
    rows = splats[SH_DEGREES_KEY] == 0
    assert (plugin.splats_to_render(splats)["shN"][rows] == 0).all()
    saved = plugin.state_dict()
    splats2 = torch.nn.ParameterDict({k: torch.nn.Parameter(v.detach().clone(), requires_grad=v.requires_grad)
                                      for k, v in splats.items() if k not in (SH_DEGREES_KEY,)})
    other = VQPlugin.from_dict({"vq_start": 0, "attributes": ATTRS, "max_k_fraction": 0.0, **REDUCE})
    other.initialize(splats2, opts, TrainContext(total_steps=10, scene=SCENE))
    other.load_state_dict(saved)
    assert torch.equal(splats2[SH_DEGREES_KEY], splats[SH_DEGREES_KEY]) and other.state.reduced
    assert torch.equal(other.splats_to_render(splats2)["shN"], plugin.splats_to_render(splats)["shN"])


def test_trained_with_reduction_loads_back_exactly_and_stores_no_dropped_indices(tmp_path):
    plugin, splats = trained_plugin(tmp_path, steps=10, ctx={"scene": SCENE}, **REDUCE)
    assert plugin.state.reduced and plugin.state.num_pruned == 90 and plugin.state.num_sh_dropped == 105
    model = {k: v for k, v in {**dict(splats.items()), **plugin.splats_to_render(splats)}.items()
             if k not in (CODES_KEY, SH_DEGREES_KEY)}
    sizes = plugin.export(str(tmp_path), splats)
    assert sizes["vq_sh_dropped"] == 105
    path = os.path.join(tmp_path, "compressed.ply")
    loaded = load_compressed_splats(path)
    key = lambda m: torch.argsort(m[:, 0] * 1e8 + m[:, 1] * 1e4 + m[:, 2])  # noqa: E731
    a, b = key(model["means"].detach()), key(loaded["means"])
    for k, v in loaded.items():
        assert torch.equal(model[k].detach()[a], v[b]), k
    assert torch.allclose(render(model).detach(), render(loaded), atol=1e-5)
    shn = next(x for x in read_compressed(path).attributes if x.name == "shN")
    assert shn.present is not None and int(shn.present.sum()) == 105


def test_reduction_options_are_checked():
    with pytest.raises(GsVqError, match="sh_drop"):
        VQPlugin.from_dict({"sh_drop": 1.5})
    with pytest.raises(GsVqError, match="prune_window"):
        VQPlugin.from_dict({"prune_fraction": 0.5, "prune_window": 100, "prune_every": 100})
    splats, opts = scene_splats()
    with pytest.raises(GsVqError, match="training views"):
        VQPlugin.from_dict({"prune_fraction": 0.5}).initialize(splats, opts, TrainContext(total_steps=10))
    assert math.isclose(VQPlugin.from_dict({"prune_budget": 10}).prune_fraction, 0.0)


@pytest.mark.parametrize("kind", ["none", "some", "all"])
def test_absent_rows_store_no_indices_and_unused_entries_go(tmp_path, kind):
    from gs_vq.io.compressed import CodedAttribute, CompressedScene, write_compressed

    n, g = 500, torch.Generator().manual_seed(1)
    present = {"none": torch.zeros(n, dtype=torch.bool), "all": torch.ones(n, dtype=torch.bool),
               "some": torch.rand(n, generator=g) < 0.3}[kind]
    codes = torch.stack([torch.randint(0, 16, (n,), generator=g), torch.randint(0, 8, (n,), generator=g)], 1)
    attr = CodedAttribute("shN", (3, 3), [torch.randn(16, 9, generator=g), torch.randn(8, 9, generator=g)],
                          codes, "sum", "float32", present)
    scene = CompressedScene(means=torch.randn(n, 3, generator=g), opacities=torch.randn(n, generator=g),
                            attributes=[attr])
    report = write_compressed(str(tmp_path / "c.ply"), scene, pos_bits=32, opacity_bits=32)
    back = read_compressed(str(tmp_path / "c.ply")).attributes[0]
    order = torch.from_numpy(report["order"])
    assert torch.equal(back.decode(), attr.decode()[order]) and torch.equal(back.present, present[order])
    if kind == "none":  # nothing uses the codebooks: one entry each is kept
        assert [c.shape[0] for c in back.codebooks] == [1, 1] and report["bits_per_gaussian"]["shN.index"] < 0.1


def test_prune_rounds_share_the_fraction_and_rank_afresh():
    plugin, splats, opts = fitted_plugin()
    counts = []
    for r in range(3):
        score = contribution(splats, [CAMERA])  # what this round ranks by
        n = splats["means"].shape[0]
        target = round(300 * 0.7 ** ((r + 1) / 3))
        keep = set(map(tuple, splats["means"].detach()[~lowest(score, n - target)].tolist()))
        assert SH_DEGREES_KEY not in splats and not plugin.state.reduced  # SH bands go last
        counts.append(plugin.prune_insignificant(splats, opts, rounds=3))
        assert set(map(tuple, splats["means"].detach().tolist())) == keep
    assert [c["pruned"] for c in counts] == [34, 29, 27]  # 300 -> 266 -> 237 -> 210, as 30% at once
    assert [c["sh_dropped"] for c in counts] == [0, 0, 105] and plugin.state.reduced
    assert int((splats[SH_DEGREES_KEY] == 0).sum()) == 105 and plugin.state.num_pruned == 90


def test_view_subsets_are_evenly_spaced_and_rotate_over_the_rounds():
    views = list(range(100))
    rounds = [view_subset(views, 34, r) for r in range(3)]
    assert rounds[0] == views[0::3] and rounds[1] == views[1::3][:34] and rounds[2] == views[2::3]
    assert sorted(sum(rounds, [])) == views  # three rounds: every view once
    assert view_subset(views, 0, 1) == views and view_subset(views[:17], 34, 2) == views[:17]
    assert view_subset(views, 34, 3) == rounds[0]
    with pytest.raises(GsVqError, match="significance_views"):
        VQPlugin.from_dict({"significance_views": -1})


def test_each_round_ranks_by_its_own_views():
    shifted = [SimpleNamespace(**{**vars(CAMERA), "viewmat": torch.eye(4)}) for _ in range(3)]
    for i, cam in enumerate(shifted):
        cam.viewmat[0, 3] = 0.4 * (i - 1)  # three views, each seeing a different side
    plugin, splats, opts = fitted_plugin(SimpleNamespace(train_cameras=shifted), significance_views=1)
    for r in range(3):
        score = contribution(splats, [shifted[r]])  # round r: view r alone
        n, target = splats["means"].shape[0], round(300 * 0.7 ** ((r + 1) / 3))
        keep = set(map(tuple, splats["means"].detach()[~lowest(score, n - target)].tolist()))
        assert score.ne(contribution(splats, shifted)).any()
        plugin.prune_insignificant(splats, opts, rounds=3)
        assert set(map(tuple, splats["means"].detach().tolist())) == keep


def test_prune_rounds_run_in_the_window_and_are_checkpointed(tmp_path):
    plugin, splats = trained_plugin(tmp_path, steps=12, ctx={"scene": SCENE}, **{**REDUCE, "prune_window": 8,
                                                                                  "prune_rounds": 3})
    assert plugin.state.reduced and plugin.state.reduce_rounds == 3 and plugin.state.num_pruned == 90
    with pytest.raises(GsVqError, match="prune_rounds"):
        VQPlugin.from_dict({**REDUCE, "prune_rounds": 3}).validate()  # 2 x 3 steps do not fit in 6
    with pytest.raises(GsVqError, match="prune_rounds"):
        VQPlugin.from_dict({**REDUCE, "prune_rounds": 0}).validate()
    mid = fitted_plugin()[0]
    mid.state.reduce_rounds, mid.state.reduce_from = 1, 300
    again, _ = type(mid.state).from_dict(mid.state.to_dict(None), "cpu")
    assert (again.reduce_rounds, again.reduce_from) == (1, 300)


def test_weighted_attributes_take_importance_weighted_codeword_means(tmp_path):
    """``vq.weighted``: every codeword is the opacity x footprint weighted mean of its members;
    the other attributes keep plain means."""
    from gs_vq.vq.importance import footprint_weight
    from gs_vq.quant.search import segment_mean
    from gs_vq.vq.codes import CodeTable

    plugin, splats = trained_plugin(tmp_path, steps=8, weighted=["sh0"])[:2]
    w = footprint_weight(splats)  # [N]
    assert torch.isclose(w.mean(), torch.tensor(1.0)) and w.std() > 0.1
    plugin._update_codebooks(splats)
    for name, weights in (("sh0", w), ("scales", None)):
        slot = plugin.state.slots[name]
        x, codes = plugin._vectors(splats, name), CodeTable.columns(splats, slot)[:, 0]
        table = slot.quantizer.codebook_0
        assert torch.allclose(table, segment_mean(x, codes, table, weights), atol=1e-5), name
    assert not torch.allclose(plugin.state.slots["sh0"].quantizer.codebook_0,
                              segment_mean(plugin._vectors(splats, "sh0"),
                                           CodeTable.columns(splats, plugin.state.slots["sh0"])[:, 0],
                                           plugin.state.slots["sh0"].quantizer.codebook_0), atol=1e-4)
    with pytest.raises(GsVqError, match="weighted"):
        VQPlugin.from_dict({"weighted": ["colour"]})
