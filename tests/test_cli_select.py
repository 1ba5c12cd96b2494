"""render.py --extract / --remove on the demo scene, from point_cloud.ply and compressed.ply, and
training-free lifting through its CLI; bad input is one line and exit 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gs_vq.io import load_ply

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--config", str(ROOT / "tests" / "tiny.yaml"), "--quiet"]


def run(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=str(ROOT), timeout=900)


@pytest.fixture(scope="module")
def lifted(tmp_path_factory):
    """A briefly trained RGB demo model and its training-free semantic field."""
    root = tmp_path_factory.mktemp("lift")
    r = run("train.py", "-m", str(root / "rgb"), "--iterations", "100", *TINY)
    assert r.returncode == 0, r.stderr[-2000:]
    r = run("-m", "gs_vq.cli.lift", "-m", str(root / "rgb"), "-o", str(root / "lift"))
    assert r.returncode == 0, r.stderr[-2000:]
    stats = json.loads(r.stdout.strip().splitlines()[-1])
    assert stats["num_views"] == 32 and stats["lift_cpu_seconds"] > 0 and stats["device"] == "cpu"
    return root


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a CUDA device")
def test_lift_on_cuda_without_a_device_is_one_line(lifted):
    r = run("-m", "gs_vq.cli.lift", "-m", str(lifted / "rgb"), "-o", str(lifted / "lift_cuda"), "--device", "cuda")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == ["error: --device cuda asked for, but no CUDA device "
                                                                    "is available"]
    assert not (lifted / "lift_cuda").exists()


def _alpha(splats, cam):
    from gs_vq.render import rasterize

    _, alpha, _ = rasterize(splats["means"], splats["quats"], splats["scales"].exp(), torch.sigmoid(splats["opacities"]),
                            torch.zeros(len(splats["means"]), 1), cam.viewmat[None], cam.K[None], cam.width, cam.height)
    return alpha[0, ..., 0] > 0.5


def test_extract_renders_the_object_and_remove_the_rest(lifted):
    from gs_vq.data import load_scene

    out, rest = lifted / "ball.ply", lifted / "rest.ply"
    r = run("render.py", "-m", str(lifted / "lift"), "--query", "red ball", "--extract", str(out), "--remove", str(rest))
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    ball, others, full = load_ply(str(out)), load_ply(str(rest)), load_ply(str(lifted / "lift" / "point_cloud.ply"))
    assert res["selected"] == len(ball["means"]) and len(ball["means"]) + len(others["means"]) == len(full["means"])
    assert set(ball) >= {"means", "scales", "quats", "opacities", "sh0", "shN"}  # a standard 3DGS ply
    scene = load_scene(None, eval=True)
    inter = pred = gt = 0
    for cam in scene.test_cameras:
        a, m = _alpha(ball, cam), cam.mask == 1  # id 1: the red ball
        inter, pred, gt = inter + int((a & m).sum()), pred + int(a.sum()), gt + int(m.sum())
    assert inter / pred > 0.5 and inter / gt > 0.3, (inter, pred, gt)  # the ball, and little else


def test_extract_from_compressed_ply(tmp_path):
    model = tmp_path / "semvq"
    r = run("train.py", "-m", str(model), "--semantic", "--vq", "--iterations", "300", *TINY)
    assert r.returncode == 0, r.stderr[-2000:]
    from gs_vq.io.compressed import describe_compressed

    bits = describe_compressed(str(model / "compressed.ply"))["bits_per_gaussian"]
    assert 0 < bits["labels.index"] <= 8 and 0 <= bits["labelconf.index"] <= 4 and "labelconf.codebook" in bits
    labels = load_ply(str(model / "point_cloud.ply"))["labels"]
    # three label queries (300 seeded steps select some Gaussians but not all; after 100 the
    # field is still one entry for nearly every Gaussian): extract and remove
    # both write, and together hold every Gaussian of the compressed file
    r = run("render.py", "-m", str(model), "--ply", str(model / "compressed.ply"), "--query", "checkered platform",
            "--query", "red ball", "--query", "green cube", "--extract", str(tmp_path / "x.ply"),
            "--remove", str(tmp_path / "y.ply"))
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    x, y = load_ply(str(tmp_path / "x.ply")), load_ply(str(tmp_path / "y.ply"))
    assert len(x["means"]) == res["selected"] > 0 and len(y["means"]) > 0
    assert len(x["means"]) + len(y["means"]) == len(labels) == res["num_gaussians"]


def test_selection_bad_input_is_one_line(lifted, tmp_path):
    cases = [
        (["-m", str(lifted / "lift"), "--query", "red ball", "--threshold", "2", "--extract", str(tmp_path / "a.ply")],
         "selects no Gaussians"),
        (["-m", str(lifted / "rgb"), "--query", "red ball", "--extract", str(tmp_path / "b.ply")], "semantic head"),
        (["-m", str(lifted / "lift"), "--extract", str(tmp_path / "c.ply")], "need a --query"),
    ]
    for args, msg in cases:
        r = run("render.py", *args)
        lines = [x for x in r.stderr.splitlines() if x.strip() and "Loading weights" not in x]
        assert r.returncode == 2 and len(lines) == 1 and msg in lines[0], r.stderr
    assert not any(tmp_path.iterdir())  # no empty files left behind
