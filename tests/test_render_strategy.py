"""gsplat's DefaultStrategy, unchanged, densifying and pruning on top of the CPU rasterizer."""

import os
import re

import pytest
import torch
from gsplat.strategy import DefaultStrategy

from gs_vq.render import rasterize
from gs_vq.render.synthetic import random_scene


def make_splats(n=400, seed=0):
    s = random_scene(n, 48, 36, n_cameras=2, sh_degree=1, sigma_px=(0.7, 3.0), seed=seed)
    logit = torch.logit(s["opacities"])
    logit[:25] = -9.0  # opacity ~1e-4: pruned at the first refinement
    params = torch.nn.ParameterDict({
        "means": s["means"], "scales": torch.log(s["scales"]), "quats": s["quats"],
        "opacities": logit, "sh0": s["colors"][:, :1], "shN": s["colors"][:, 1:],
    })
    optimizers = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    return params, optimizers, s


@pytest.mark.parametrize("backend,packed,absgrad", [
    ("torch", False, False), ("torch", True, True), ("cpp", False, True), ("cpp", True, False)])
def test_default_strategy_refines(backend, packed, absgrad, capsys):
    if backend == "cpp" and os.environ.get("GS_VQ_NO_EXT") == "1":
        pytest.skip("GS_VQ_NO_EXT=1")
    params, optimizers, s = make_splats()
    target = torch.rand(2, 36, 48, 3)
    scales = torch.exp(params["scales"]).max(-1).values
    # scene_scale puts the grow_scale3d threshold at the median scale: half duplicate, half split
    strategy = DefaultStrategy(refine_start_iter=2, refine_every=3, reset_every=10_000,
                               grow_grad2d=1e-9, absgrad=absgrad, verbose=True)
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state(scene_scale=float(scales.median().detach()) / 0.01)
    sizes = []
    for step in range(5):
        colors = torch.cat([params["sh0"], params["shN"]], 1)
        render, alpha, info = rasterize(
            params["means"], params["quats"], torch.exp(params["scales"]),
            torch.sigmoid(params["opacities"]), colors, s["viewmats"], s["Ks"], 48, 36,
            sh_degree=1, packed=packed, absgrad=absgrad, backend=backend)
        strategy.step_pre_backward(params, optimizers, state, step, info)
        loss = (render - target).abs().mean()
        loss.backward()
        if absgrad:
            assert info["means2d"].absgrad.shape == info["means2d"].shape
        assert info["means2d"].grad is not None and info["means2d"].grad.abs().sum() > 0
        strategy.step_post_backward(params, optimizers, state, step, info, packed=packed)
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        sizes.append(len(params["means"]))
    log = capsys.readouterr().out
    n_dupli, n_split = map(int, re.search(r"Step 3: (\d+) GSs duplicated, (\d+) GSs split", log)
                           .groups())
    n_prune = int(re.search(r"Step 3: (\d+) GSs pruned", log).group(1))
    assert n_dupli > 50 and n_split > 50 and n_prune >= 25
    assert sizes[:3] == [400] * 3 and sizes[3] == 400 + n_dupli + n_split - n_prune
    assert all(len(p) == sizes[-1] for p in params.values())
    assert state["grad2d"].shape == (sizes[-1],)


def test_knn_mean_dist_matches_the_full_distance_matrix():
    """The initial scale: gsplat's formula, sqrt(mean of the k smallest squared distances to others)."""
    from gs_vq.splats import knn_mean_dist

    g = torch.Generator().manual_seed(0)
    pts = torch.randn(700, 3, generator=g)
    pts[5] = pts[6]  # a duplicate: its nearest neighbour is at distance 0
    d2 = torch.cdist(pts.double(), pts.double()).square()
    d2.fill_diagonal_(float("inf"))
    expected = d2.topk(3, dim=1, largest=False).values.clamp_min(1e-12).mean(dim=1).sqrt()
    torch.testing.assert_close(knn_mean_dist(pts).double(), expected, rtol=1e-5, atol=1e-6)
    assert knn_mean_dist(pts[:1]).tolist() == [0.0] and knn_mean_dist(pts[:2]).shape == (2,)
