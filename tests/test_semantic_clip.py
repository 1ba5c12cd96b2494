"""open_clip feature source with a tiny randomly initialised model (no download, no torchvision)."""

import importlib.util
import json
from types import SimpleNamespace

import pytest
import torch

from gs_vq.errors import GsVqError

pytestmark = pytest.mark.skipif(importlib.util.find_spec("open_clip") is None, reason="open_clip not installed")

TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """(config path, checkpoint path) of a random tiny open_clip ViT."""
    from gs_vq.semantics.clip_model import open_clip_modules

    folder = tmp_path_factory.mktemp("clip")
    cfg_path = folder / "tiny-vit.json"
    cfg_path.write_text(json.dumps(TINY))
    oc_model, _ = open_clip_modules()
    torch.manual_seed(0)
    model = oc_model.CLIP(TINY["embed_dim"], oc_model.CLIPVisionCfg(**TINY["vision_cfg"]),
                          oc_model.CLIPTextCfg(**TINY["text_cfg"]))
    ckpt = folder / "tiny.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, ckpt)
    return str(cfg_path), str(ckpt)


def test_load_and_encode(tiny_clip):
    from gs_vq.semantics.clip_model import load_clip
    from gs_vq.semantics.encoders import EncoderSpec, load_text_encoder

    bundle = load_clip(*tiny_clip)
    assert bundle.embed_dim == 16 and bundle.image_size == (32, 32)
    e = bundle.encode_text(["a red apple", "a blue mug"])
    assert e.shape == (2, 16) and torch.allclose(e.norm(dim=-1), torch.ones(2), atol=1e-5)
    enc = load_text_encoder(EncoderSpec("open_clip", tiny_clip[0], 16, tiny_clip[1]))
    assert torch.allclose(enc.encode(["a red apple"]), e[:1], atol=1e-6)


def test_dense_features_patch_and_crops(tiny_clip):
    from gs_vq.semantics.clip_model import load_clip
    from gs_vq.semantics.dense import crop_boxes, dense_features

    bundle = load_clip(*tiny_clip)
    image = torch.rand(40, 60, 3)
    for mode in ("patch", "crops"):
        f = dense_features(bundle, image, (10, 15), mode)
        assert f.shape == (10, 15, 16) and torch.allclose(f.norm(dim=-1), torch.ones(10, 15), atol=1e-4), mode
    boxes, rows, cols = crop_boxes(40, 60, 0.5)
    assert len(boxes) == rows * cols and all(t + s <= 40 and l + s <= 60 for t, l, s in boxes)
    assert boxes[-1][0] + boxes[-1][2] == 40 and boxes[-1][1] + boxes[-1][2] == 60  # reaches the corner
    with pytest.raises(GsVqError):
        dense_features(bundle, image, (10, 15), "pixels")


def test_clip_feature_folder_records_the_encoder(tiny_clip, tmp_path):
    from gs_vq.semantics.features import compute_clip_features, load_features

    cams = [SimpleNamespace(name=f"train/{i}", image=torch.rand(24, 32, 3), width=32, height=24, mask=None)
            for i in range(2)]
    scene = SimpleNamespace(train_cameras=cams, test_cameras=[], source_path="", labels=None)
    meta = compute_clip_features(scene, str(tmp_path), *tiny_clip, downscale=4, mode="patch")
    assert meta["source"] == "clip" and meta["encoder"]["kind"] == "open_clip" and meta["dim"] == 16
    fm = load_features(str(tmp_path), cams)
    assert fm["train/0"].shape == (6, 8, 16) and fm.interp == "bilinear"
    assert fm.encoder.checkpoint == tiny_clip[1]


def test_checkpoint_errors(tiny_clip, tmp_path):
    from gs_vq.semantics.clip_model import load_clip

    with pytest.raises(GsVqError, match="no file"):
        load_clip(tiny_clip[0], str(tmp_path / "missing.pt"))
    bad = tmp_path / "bad.pt"
    torch.save({"visual.proj": torch.zeros(3, 3)}, bad)
    with pytest.raises(GsVqError, match="does not match"):
        load_clip(tiny_clip[0], str(bad))
    with pytest.raises(GsVqError, match="unknown open_clip model"):
        load_clip("no-such-model", tiny_clip[1])


def test_clip_source_end_to_end_features_training_query(tiny_clip, tmp_path):
    """The clip source through the CLIs: feature maps, --semantic training on them, a text query
    (a random model, so the query's content means nothing: the plumbing is what is checked)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from gs_vq.data.demo import generate_demo_scene

    root = Path(__file__).resolve().parents[1]
    scene = generate_demo_scene(tmp_path / "demo", n_train=4, n_test=1, size=32)
    run = lambda *a: subprocess.run([sys.executable, *a], capture_output=True, text=True, cwd=str(root),  # noqa: E731
                                    timeout=600, env={**os.environ, "PYTHONPATH": str(root)})
    feats = tmp_path / "feats"
    r = run("-m", "gs_vq.cli.features", "-s", str(scene), "--source", "clip", "--clip-model", tiny_clip[0],
            "--clip-checkpoint", tiny_clip[1], "--features", str(feats), "--downscale", "4")
    assert r.returncode == 0, r.stderr[-2000:]
    model = tmp_path / "model"
    r = run("train.py", "-s", str(scene), "-m", str(model), "--semantic", "--features", str(feats),
            "--iterations", "30", "--config", str(root / "tests" / "tiny.yaml"), "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    from gs_vq.semantics.head import SemanticHead

    head = SemanticHead.load(str(model / "semantic_head.pt"))
    assert head.encoder.kind == "open_clip" and head.encoder.checkpoint == tiny_clip[1]  # queries use the clip text tower
    r = run("render.py", "-m", str(model), "--query", "red ball", "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads((model / "results.json").read_text())["query_outputs"]["red ball"]
    assert len(os.listdir(out)) > 0
