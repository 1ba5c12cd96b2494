"""The model folder as Inria's tools read it: cfg_args, cameras.json, point_cloud/iteration_N,
<split>/ours_N/{renders,gt}; --save_iterations / --test_iterations; TensorBoard scalars."""

import json
import os
import subprocess
import sys
from argparse import Namespace  # noqa: F401  (eval of cfg_args, as Inria's render.py does it)
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--iterations", "30", "--config", str(ROOT / "tests" / "tiny.yaml"), "--quiet", "--eval"]
# PSNR from the 8-bit PNGs against results.json's (float renders, rounded to 4 decimals): the
# quantization of the renders adds (1/255)^2/12 ~ 1.3e-6 to an image's MSE, under 0.01 dB down
# to 30 dB PSNR, and at the ~10 dB of this 30-step model about 1e-4 dB.
PSNR_TOL_DB = 0.01


def run(script, *args):
    return subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True,
                          cwd=str(ROOT), timeout=600)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("inria") / "m"
    r = run("train.py", "-m", str(path), *TINY, "--save_iterations", "10", "--test_iterations", "20")
    assert r.returncode == 0, r.stderr[-2000:]
    path.joinpath("train.log").write_text(r.stdout)
    r = run("render.py", "-m", str(path), "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    return path


def test_cfg_args_parses_as_namespace(model):
    ns = eval((model / "cfg_args").read_text())  # what Inria's render.py / SIBR do with it
    assert isinstance(ns, Namespace)
    for field in ("sh_degree", "source_path", "model_path", "images", "resolution", "white_background",
                  "data_device", "eval"):
        assert hasattr(ns, field), field
    assert ns.sh_degree == 1 and ns.eval is True and ns.resolution == -1 and ns.images == "images"
    assert os.path.samefile(ns.model_path, model)


def test_cameras_json_covers_every_training_camera(model):
    from gs_vq.data import load_scene

    scene = load_scene(None, eval=True, num_random_points=100)
    entries = json.loads((model / "cameras.json").read_text())
    assert len(entries) == len(scene.train_cameras)
    for i, (e, cam) in enumerate(zip(entries, scene.train_cameras)):
        assert set(e) == {"id", "img_name", "width", "height", "position", "rotation", "fx", "fy"}
        assert e["id"] == i and e["img_name"] == os.path.splitext(os.path.basename(cam.name))[0]
        assert (e["width"], e["height"]) == (cam.width, cam.height)
        c2w = cam.camtoworld.numpy()
        np.testing.assert_allclose(e["position"], c2w[:3, 3], atol=1e-5)  # the camera centre
        np.testing.assert_allclose(e["rotation"], c2w[:3, :3], atol=1e-5)  # camera-to-world
        R = np.array(e["rotation"])
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-5)
        assert e["fx"] == pytest.approx(float(cam.K[0, 0])) and e["fy"] == pytest.approx(float(cam.K[1, 1]))


def test_iteration_plys(model):
    final = model / "point_cloud" / "iteration_30" / "point_cloud.ply"
    assert os.path.samefile(final, model / "point_cloud.ply")  # a hard link, not a copy
    early = model / "point_cloud" / "iteration_10" / "point_cloud.ply"  # --save_iterations 10
    assert early.is_file() and early.read_bytes() != final.read_bytes()
    assert sorted(os.listdir(model / "point_cloud")) == ["iteration_10", "iteration_30"]


def test_test_iterations_report(model):
    log = (model / "train.log").read_text()
    assert "[ITER 20] Evaluating test: L1 " in log and "[ITER 10] Saving Gaussians" in log
    assert "[ITER 30] Evaluating" not in log


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0


def test_ours_folders_and_metrics_py_psnr(model, tmp_path):
    ours = model / "test" / "ours_30"
    renders, gts = sorted(os.listdir(ours / "renders")), sorted(os.listdir(ours / "gt"))
    res = json.loads((model / "results.json").read_text())
    assert renders == gts and len(renders) == res["num_views"]
    # metrics.py -m MODEL takes every folder in MODEL/test for a method: there is one, ours_30
    assert os.listdir(model / "test") == ["ours_30"]
    # Inria's metrics.py: per image 20 log10(1 / sqrt(mse)) on the PNGs, then the mean
    psnrs = [20 * np.log10(1.0 / np.sqrt(np.mean((png(ours / "renders" / n) - png(ours / "gt" / n)) ** 2)))
             for n in renders]
    assert float(np.mean(psnrs)) == pytest.approx(res["psnr"], abs=PSNR_TOL_DB)


def test_tensorboard_scalars(model):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(model / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/psnr", "train/num_gaussians", "test/psnr", "test/l1"} <= tags
    assert [s.step for s in acc.Scalars("train/loss")] == [1, 11, 21]  # every log_every (10) steps: a read is a sync
    assert [s.step for s in acc.Scalars("test/psnr")] == [20]


@pytest.mark.parametrize("value", ["abc", "0", "1.5"])
def test_bad_step_flags(tmp_path, value):
    r = run("train.py", "-m", str(tmp_path / "m"), "--iterations", "5", "--save_iterations", value)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "save_iterations" in lines[0], r.stderr
    assert not (tmp_path / "m").exists()


def test_without_tensorboard_one_line(tmp_path, monkeypatch, capsys):
    from gs_vq.train_outputs import tensorboard_writer

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    assert tensorboard_writer(str(tmp_path / "tb")) is None
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "tensorboard is not installed" in out[0]
    assert not (tmp_path / "tb").exists()


def test_fresh_run_removes_earlier_layout(tmp_path):
    from gs_vq.io.inria import remove_stale_layout

    for rel in ("cfg_args", "cameras.json", "point_cloud/iteration_7/point_cloud.ply",
                "tb/events.out.tfevents.1.host.1.0"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("old")
    removed = remove_stale_layout(str(tmp_path))
    assert set(removed) == {"cfg_args", "cameras.json", "point_cloud/iteration_7", "tb/events.out.tfevents.1.host.1.0"}
    assert os.listdir(tmp_path / "point_cloud") == [] and os.listdir(tmp_path / "tb") == []
