"""The compiled nearest-code kernel gives the codes of the matrix-product path, and falls back."""

import logging
import os

import pytest
import torch

from gs_vq.quant import ext, kmeans, search

needs_ext = pytest.mark.skipif(os.environ.get("GS_VQ_NO_EXT") == "1", reason="GS_VQ_NO_EXT=1")


@needs_ext
@pytest.mark.parametrize("dim", [1, 3, 4, 8, 16])
@pytest.mark.parametrize("n", [1, 15, 16, 17, 1000])
def test_kernel_matches_matrix_products(dim, n):
    g = torch.Generator().manual_seed(dim * 1000 + n)
    x, codes = torch.randn(n, dim, generator=g), torch.randn(300, dim, generator=g)
    assert ext.usable(x, dim)
    d2, idx = search.nearest(x, codes)
    with ext.KERNEL.disabled():
        d2_ref, idx_ref = search.nearest(x, codes)
    # float32 scores (fused multiply-adds in the kernel) may break near-ties differently; the
    # distance reached is then the same to rounding
    assert (idx == idx_ref).float().mean() >= 0.99
    assert torch.all(d2 <= d2_ref + 1e-6 + 1e-4 * d2_ref)
    brute = torch.cdist(x.double(), codes.double()).min(dim=1).values.square().float()
    assert torch.allclose(d2, brute, rtol=1e-4, atol=1e-6)


@needs_ext
def test_kernel_ties_take_the_first_code():
    codes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]] * 7)  # 21 rows: a short last block
    assert search.assign(x, codes).tolist() == [0, 1, 0] * 7
    assert ext.usable(x, 2) and not ext.usable(x, ext.MAX_DIM + 1)


def test_kmeans_same_without_kernel():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3000, 4, generator=g)
    a = kmeans(x, 64, iters=5, seed=1)
    with ext.KERNEL.disabled():
        b = kmeans(x, 64, iters=5, seed=1)
    assert torch.equal(a.assignments, b.assignments) or abs(a.mse - b.mse) < 1e-3 * a.mse


def test_failed_build_falls_back(broken_build, caplog):
    broken_build(ext.KERNEL)
    x = torch.randn(50, 3)
    with caplog.at_level(logging.WARNING, logger="gs_vq.quant.ext"):
        assert not ext.usable(x, 3)
    assert "using matrix products" in caplog.text
    assert search.assign(x, x[:5]).shape == (50,)

