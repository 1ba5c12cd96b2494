"""Contribution-weighted lifting through the rasterizer's backward vs a brute-force forward."""

import math
from types import SimpleNamespace

import pytest
import torch

from gs_vq.render import rasterize
from gs_vq.render.contribution import contribution, lift_maps, lift_view, scaled_intrinsics
from gs_vq.render.synthetic import random_scene


def _raw(scene):
    return {"means": scene["means"], "quats": scene["quats"], "scales": scene["scales"].log(),
            "opacities": torch.logit(scene["opacities"])}


@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_lift_view_matches_per_gaussian_weights(backend):
    scene = random_scene(40, width=24, height=20, sigma_px=(1.0, 4.0), seed=3)
    N = 40
    # brute force: render the identity as N-channel colours: channel i of pixel p is w_i(p)
    w, _, _ = rasterize(scene["means"], scene["quats"], scene["scales"], scene["opacities"], torch.eye(N),
                        scene["viewmats"], scene["Ks"], 24, 20, sh_degree=None, backend="torch")
    w = w[0]  # [H, W, N]
    assert w.sum() > 1.0  # the Gaussians are visible
    G = torch.randn(20, 24, 5, generator=torch.Generator().manual_seed(0))
    expected = torch.einsum("hwn,hwd->nd", w, G)  # [N, D]
    got = lift_view(_raw(scene), scene["viewmats"][0], scene["Ks"][0], 24, 20, G, backend=backend)
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-3)


def test_lift_maps_rescales_cameras_and_counts_contribution():
    scene = random_scene(30, width=32, height=32, sigma_px=(1.0, 3.0), seed=1)
    cam = SimpleNamespace(viewmat=scene["viewmats"][0], K=scene["Ks"][0], width=32, height=32)
    raw = _raw(scene)
    # maps at half resolution: the render is made at 16x16 with rescaled intrinsics
    K16 = scaled_intrinsics(cam.K, 32, 32, 16, 16)
    assert math.isclose(float(K16[0, 0]), float(cam.K[0, 0]) / 2) and math.isclose(float(K16[0, 2]), 8.0)
    w, alpha, _ = rasterize(scene["means"], scene["quats"], scene["scales"], scene["opacities"], torch.eye(30),
                            scene["viewmats"], K16[None], 16, 16, sh_degree=None, backend="torch")
    G = torch.rand(16, 16, 3, generator=torch.Generator().manual_seed(2))
    sums, weight = lift_maps(raw, [cam, cam], lambda c: G)
    assert torch.allclose(sums, 2 * torch.einsum("hwn,hwd->nd", w[0], G), atol=1e-4, rtol=1e-3)
    assert torch.allclose(weight, 2 * w[0].sum(dim=(0, 1)), atol=1e-4, rtol=1e-3)
    # sum over Gaussians of the contribution = the rendered alpha, summed over pixels
    c = contribution(raw, [cam], downscale=2)
    assert torch.allclose(c.sum(), alpha.sum(), rtol=1e-4)
    assert (c >= 0).all()
    skipped = lift_maps(raw, [cam], lambda c: None)
    assert skipped[0].shape == (30, 0) and float(skipped[1].sum()) == 0.0
