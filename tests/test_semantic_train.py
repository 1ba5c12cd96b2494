"""The semantic plugin inside the real training loop and render.py's semantic options."""

import argparse
import json

import pytest
import torch

from gs_vq.config import make_config, to_dict
from gs_vq.data import generate_demo_scene, load_scene
from gs_vq.errors import GsVqError
from gs_vq.cli.semantic_render import add_render_args, run_semantic_render, wants_semantics
from gs_vq.semantics.features import compute_label_features
from gs_vq.trainer import Trainer
from test_semantic_lib import BagOfWordsEncoder


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    path = generate_demo_scene(root / "scene", n_train=4, n_test=2, size=32)
    scene = load_scene(str(path), num_random_points=1500, cache_dir=str(root / "cache"))
    enc = BagOfWordsEncoder()
    compute_label_features(scene, str(root / "feats"), downscale=2, encoder=enc)
    return root, scene, enc


def test_trainer_with_semantics_densifies_features_and_exports(demo):
    root, scene, enc = demo
    sem = {"features_dir": str(root / "feats"), "num_codes": 8, "kmeans_per_view": 8, "num_pixels": 512}
    cfg = make_config("cpu", {"iterations": 40, "semantic": sem, "checkpoint_every": 0, "sh_degree": 1,
                              "strategy": {"refine_start_iter": 10, "refine_every": 10, "refine_stop_iter": 35,
                                           "grow_grad2d": 1e-7}})
    trainer = Trainer(cfg, scene, str(root / "model"))
    n0 = len(trainer.splats["means"])
    assert trainer.splats["features"].shape == (n0, 8) and "features" in trainer.optimizers
    codes0 = trainer.plugins["semantic"].state.codebook.codes.detach().clone()
    trainer.train(progress=False)
    n1 = len(trainer.splats["means"])
    assert n1 != n0 and trainer.splats["features"].shape == (n1, 8)  # densification carried the features
    plugin = trainer.plugins["semantic"]
    assert set(plugin.state.last) == {"cos", "ce", "entropy"} and all(v == v for v in plugin.state.last.values())
    assert not torch.equal(plugin.state.codebook.codes, codes0)  # the codebook trains
    sizes = trainer.export()
    assert sizes["semantic_head_bytes"] > 0 and (root / "model" / "semantic_head.pt").is_file()
    # resume restores the plugin state
    again = Trainer(make_config("cpu", {**to_dict(cfg), "resume": True}), scene, str(root / "model"))
    assert torch.equal(again.plugins["semantic"].state.codebook.codes, plugin.state.codebook.codes)

    # render.py's semantic options on the trained model
    p = argparse.ArgumentParser()
    add_render_args(p)
    labels = root / "labels.json"
    labels.write_text(json.dumps(scene.labels))
    args = p.parse_args(["--eval-queries", str(labels), "--query", "red ball", "--semantic"])
    assert wants_semantics(args) and not wants_semantics(p.parse_args([]))
    from gs_vq.semantics import encoders

    key = ("minilm", enc.spec.model, None, "cpu")  # text encoders run on the CPU on any machine
    encoders._CACHE[key] = enc
    try:
        res = run_semantic_render(args, str(root / "model"), str(root / "model" / "test"), dict(trainer.splats.items()), scene.test_cameras,
                                  scene.source_path, trainer.background, trainer.device, progress=False)
    finally:
        encoders._CACHE.pop(key)
    assert 0 <= res["miou"] <= 1 and "red ball" in res["iou"] and "round objects" in res["iou_extra"]
    assert [p.name.startswith("red_ball") for p in (root / "model" / "test" / "queries").iterdir()] == [True]
    assert len(list((root / "model" / "test" / "semantic").glob("*.png"))) == 2
    with pytest.raises(GsVqError, match="no file"):
        run_semantic_render(p.parse_args(["--eval-queries", "nope.json"]), str(root / "model"), str(root / "model" / "test"),
                            dict(trainer.splats.items()), scene.test_cameras, scene.source_path, None,
                            trainer.device)


def test_semantic_only_preset_keeps_rgb_fixed(demo):
    root, scene, _ = demo
    base = make_config("cpu", {"iterations": 5, "checkpoint_every": 0, "sh_degree": 1})
    rgb = Trainer(base, scene, str(root / "rgb"))
    rgb.train(progress=False)
    rgb.save_checkpoint()
    sem = {"features_dir": str(root / "feats"), "num_codes": 8, "kmeans_per_view": 8, "num_pixels": 256}
    cfg = make_config("semantic_only", {"iterations": 10, "semantic": sem, "sh_degree": 1,
                                        "start_checkpoint": str(root / "rgb" / "ckpt.pt")})
    trainer = Trainer(cfg, scene, str(root / "sem"))
    before = {k: v.detach().clone() for k, v in trainer.splats.items() if k != "features"}
    feats0 = trainer.splats["features"].detach().clone()
    trainer.train(progress=False)
    for k, v in before.items():
        assert torch.equal(trainer.splats[k], v), k
    assert not torch.equal(trainer.splats["features"], feats0)
