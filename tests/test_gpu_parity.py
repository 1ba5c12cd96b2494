"""bench/gpu_parity.py on the CPU: its comparison runs (our two CPU backends agree) and fails
loudly, exit 1, when one side's image or a single gradient is off."""

import json
import os

import pytest
import torch

from bench import gpu_parity

pytestmark = pytest.mark.skipif(os.environ.get("GS_VQ_NO_EXT") == "1", reason="needs the cpp backend")
ARGS = ["--candidate", "cpp", "--reference", "torch"]


def test_cpu_backends_agree_and_the_report_is_written(tmp_path):
    out = tmp_path / "parity.json"
    assert gpu_parity.main(ARGS + ["--cases", "feat11,packed_absgrad,strategy", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [r["case"] for r in report["rows"]] == ["feat11", "packed_absgrad", "strategy"]
    assert report["failed"] == [] and "grad_absgrad" in report["rows"][1]["metrics"]
    counts = report["rows"][2]["metrics"]["counts"]
    assert counts[-1] > counts[0]  # the strategy really refined on the rasterizer's info


class _ScaleGrad(torch.autograd.Function):
    """Identity forward, gradient times 1.1 (a backward bug that images cannot show)."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return 1.1 * g


@pytest.mark.parametrize("fault,expected", [("shift", "image_max"), ("grad", "grad_opacities")])
def test_a_difference_exits_1(monkeypatch, tmp_path, capsys, fault, expected):
    real = gpu_parity.rasterize

    def faulty(means, quats, scales, opacities, *args, backend="auto", **kw):
        if backend == "cpp":  # the candidate only
            if fault == "shift":
                means = means + torch.tensor([0.02, 0.0, 0.0])
            else:
                opacities = _ScaleGrad.apply(opacities)
        return real(means, quats, scales, opacities, *args, backend=backend, **kw)

    monkeypatch.setattr(gpu_parity, "rasterize", faulty)
    rc = gpu_parity.main(ARGS + ["--cases", "sh3", "--out", str(tmp_path / "p.json")])
    report = json.loads((tmp_path / "p.json").read_text())
    assert rc == 1 and report["failed"] == ["sh3"]
    assert expected in report["rows"][0]["failed"]
    if fault == "grad":
        assert report["rows"][0]["failed"] == ["grad_opacities"]  # nothing else moved
    assert "MISMATCH in sh3" in capsys.readouterr().err


def test_contribution_sums_and_35_channels_with_absgrad(monkeypatch, tmp_path):
    from gs_vq.render import contribution

    out = tmp_path / "p.json"
    assert gpu_parity.main(ARGS + ["--cases", "feat35_absgrad,contrib65", "--out", str(out)]) == 0
    feat35, contrib = json.loads(out.read_text())["rows"]
    assert feat35["metrics"]["grad_absgrad"] < 1e-4 and contrib["metrics"]["grad_sums"] < 1e-4
    # both CPU backends sum |gradient| over all 35 channels, far from what the RGB pass alone gives
    assert feat35["metrics"]["absgrad_vs_rgb"] > 0.1
    real = contribution.rasterize

    def faulty(means, quats, scales, opacities, colors, *args, backend="auto", **kw):
        if backend == "cpp":  # the candidate's contribution sums 10% off
            colors = _ScaleGrad.apply(colors)
        return real(means, quats, scales, opacities, colors, *args, backend=backend, **kw)

    monkeypatch.setattr(contribution, "rasterize", faulty)
    assert gpu_parity.main(ARGS + ["--cases", "contrib1", "--out", str(out)]) == 1
    assert json.loads(out.read_text())["rows"][0]["failed"] == ["grad_sums"]


def test_gsplat_candidate_without_cuda_is_refused(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert gpu_parity.main(["--candidate", "gsplat"]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err
