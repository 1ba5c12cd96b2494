"""The compiled kernel's loader: backend choice, fallback on a failed build, wide features."""

import logging
import os
import subprocess
import sys

import pytest
import torch

from gs_vq.errors import GsVqError
from gs_vq.render import ext, rasterize, resolve_backend
from gs_vq.render.synthetic import random_scene

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_ext = pytest.mark.skipif(os.environ.get("GS_VQ_NO_EXT") == "1", reason="GS_VQ_NO_EXT=1")


@needs_ext
def test_auto_backend_on_cpu_is_cpp():
    assert ext.available()
    assert resolve_backend("auto", is_cuda=False) == "cpp"
    assert resolve_backend("auto", is_cuda=True) == "gsplat"
    assert resolve_backend("torch", is_cuda=False) == "torch"


def test_no_ext_env_forces_torch_path():
    code = ("from gs_vq.render import ext, resolve_backend; "
            "print(ext.available(), resolve_backend('auto', False))")
    env = dict(os.environ, GS_VQ_NO_EXT="1", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout.split()
    assert out == ["False", "torch"]


def test_failed_build_falls_back_and_logs(broken_build, caplog):
    broken_build(ext.KERNEL)
    with caplog.at_level(logging.WARNING, logger="gs_vq.render.ext"):
        assert not ext.available()
    assert "using the torch path" in caplog.text
    assert resolve_backend("auto", is_cuda=False) == "torch"
    s = random_scene(20, 16, 16, sh_degree=0)
    with pytest.raises(GsVqError):
        rasterize(s["means"], s["quats"], s["scales"], s["opacities"], s["colors"],
                  s["viewmats"], s["Ks"], 16, 16, sh_degree=0, backend="cpp")
    img, _, info = rasterize(s["means"], s["quats"], s["scales"], s["opacities"], s["colors"],
                             s["viewmats"], s["Ks"], 16, 16, sh_degree=0)
    assert info["backend"] == "torch" and img.shape == (1, 16, 16, 3)


@needs_ext
def test_wide_features_are_chunked():
    """More channels than the kernel's per-call limit: split, same result as the torch path."""
    s = random_scene(150, 24, 20, sh_degree=0, seed=2)
    D = int(ext.load().max_channels) + 6
    feats = torch.rand(150, D, requires_grad=True)
    bg = torch.rand(1, D)
    args = (s["means"], s["quats"], s["scales"], s["opacities"], feats, s["viewmats"], s["Ks"],
            24, 20)
    out_c, alpha_c, _ = rasterize(*args, backgrounds=bg, backend="cpp")
    out_t, alpha_t, _ = rasterize(*args, backgrounds=bg, backend="torch")
    torch.testing.assert_close(out_c, out_t, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(alpha_c, alpha_t, rtol=1e-5, atol=1e-6)
    w = torch.randn_like(out_c)
    g_c, = torch.autograd.grad((out_c * w).sum(), feats)
    g_t, = torch.autograd.grad((out_t * w).sum(), feats)
    torch.testing.assert_close(g_c, g_t, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_a_window_is_those_pixels_of_the_full_render(backend):
    if backend == "cpp" and not ext.available():
        pytest.skip("the compiled kernel did not build")
    s = random_scene(3000, width=80, height=64, sh_degree=0, sigma_px=(0.5, 6.0), seed=5)
    args = (s["means"], s["quats"], s["scales"], s["opacities"], s["colors"], s["viewmats"], s["Ks"], 80, 64)
    full, alpha, _ = rasterize(*args, sh_degree=0, backend=backend)
    win, walpha, info = rasterize(*args, sh_degree=0, backend=backend, window=(13, 7, 41, 30))
    assert win.shape == (1, 30, 41, 3) and info["width"] == 41
    torch.testing.assert_close(win, full[:, 7:37, 13:54], atol=1e-5, rtol=0)
    torch.testing.assert_close(walpha, alpha[:, 7:37, 13:54], atol=1e-5, rtol=0)
    with pytest.raises(GsVqError, match="window .* is not inside the 80x64 image"):
        rasterize(*args, sh_degree=0, backend=backend, window=(50, 0, 40, 10))
