"""CPU rasterizer: projection and SH against gsplat's torch reference, compositing against a
slow one-Gaussian-at-a-time reference, gradients, render modes, cameras, packing."""

import os

import pytest
import torch
from gsplat.cuda._torch_impl import (
    _fully_fused_projection,
    _quat_scale_to_covar_preci,
    _spherical_harmonics,
)

from gs_vq.errors import GsVqError
from gs_vq.render import rasterize
from gs_vq.render.composite import composite_torch
from gs_vq.render.projection import project_gaussians, sh_colors
from gs_vq.render.synthetic import random_scene

BACKENDS = ["torch", "cpp"]


def need_backend(backend):
    """cpp tests fail if the kernel does not build, unless GS_VQ_NO_EXT=1 turned it off."""
    if backend == "cpp" and os.environ.get("GS_VQ_NO_EXT") == "1":
        pytest.skip("GS_VQ_NO_EXT=1")


def composite(backend, *args, **kwargs):
    need_backend(backend)
    if backend == "torch":
        return composite_torch(*args, **kwargs)
    from gs_vq.render.ext import composite_cpp

    return composite_cpp(*args, **kwargs)


def reference_composite(means2d, conics, colors, opacities, radii, depths, width, height, bg=None):
    """One image, one Gaussian at a time over every pixel, as the CUDA kernel's per-pixel loop.

    means2d [N, 2], conics [N, 3], colors [N, D], opacities [N], radii [N, 2], depths [N].
    """
    ys, xs = torch.meshgrid(torch.arange(height, dtype=means2d.dtype) + 0.5,
                            torch.arange(width, dtype=means2d.dtype) + 0.5, indexing="ij")
    T = torch.ones(height, width, dtype=means2d.dtype)
    done = torch.zeros(height, width, dtype=torch.bool)
    out = torch.zeros(height, width, colors.shape[-1], dtype=means2d.dtype)
    for g in torch.argsort(depths, stable=True).tolist():
        if not bool((radii[g] > 0).all()):
            continue
        dx, dy = means2d[g, 0] - xs, means2d[g, 1] - ys
        a, b, c = conics[g]
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = torch.clamp_max(opacities[g] * torch.exp(-sigma), 0.999)
        valid = (sigma >= 0) & (alpha >= 1.0 / 255.0) & ~done
        next_T = T * (1 - alpha)
        stop = valid & (next_T <= 1e-4)
        done = done | stop
        use = valid & ~stop
        out = out + torch.where(use, alpha * T, 0.0)[..., None] * colors[g]
        T = torch.where(use, next_T, T)
    if bg is not None:
        out = out + T[..., None] * bg
    return out, 1 - T[..., None]


def projected_scene(n=150, width=40, height=30, n_cameras=1, dtype=torch.float64, seed=0,
                    sigma_px=(0.5, 3.0), channels=3, opacities=None):
    s = random_scene(n, width, height, n_cameras=n_cameras, sh_degree=0, sigma_px=sigma_px,
                     seed=seed)
    if opacities is not None:
        s["opacities"] = opacities
    radii, means2d, depths, conics = project_gaussians(
        s["means"], s["quats"], s["scales"], s["viewmats"], s["Ks"], width, height,
        opacities=s["opacities"])
    g = torch.Generator().manual_seed(seed + 1)
    colors = torch.rand(n_cameras, n, channels, generator=g)
    opac = s["opacities"][None].expand(n_cameras, n)
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in
            dict(means2d=means2d, conics=conics, colors=colors, opacities=opac, radii=radii,
                 depths=depths).items()}


def flat(p):
    C, N = p["depths"].shape
    return (p["means2d"].reshape(-1, 2), p["conics"].reshape(-1, 3),
            p["colors"].reshape(C * N, -1), p["opacities"].reshape(-1), p["radii"].reshape(-1, 2),
            p["depths"].reshape(-1), torch.arange(C).repeat_interleave(N))


# ---------------------------------------------------------------- projection and SH


def test_projection_matches_gsplat_torch_impl():
    s = random_scene(400, 64, 48, n_cameras=2, sh_degree=0, seed=3)
    means = s["means"].clone()
    means[:10] = means[:10] * torch.tensor([1.0, 1.0, -1.0]) - torch.tensor([0, 0, 8.0])  # behind
    means[10:20, 0] += 30.0  # far off-screen
    means.requires_grad_(True)
    quats, scales = s["quats"].requires_grad_(True), s["scales"].requires_grad_(True)
    radii, means2d, depths, conics = project_gaussians(
        means, quats, scales, s["viewmats"], s["Ks"], 64, 48)
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    r_radii, r_means2d, r_depths, r_conics, _ = _fully_fused_projection(
        means, covars, s["viewmats"], s["Ks"], 64, 48)
    assert radii.dtype == torch.int32 and radii.shape == (2, 400, 2)
    assert torch.equal(radii, r_radii)
    valid = (radii > 0).all(-1)
    assert 0.5 < valid.float().mean() < 0.99 and not valid[:, :20].any()
    torch.testing.assert_close(means2d[valid], r_means2d[valid], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(depths[valid], r_depths[valid])
    torch.testing.assert_close(conics[valid], r_conics[valid], rtol=1e-4, atol=1e-6)
    # gradients through the projection (incl. the FOV clamp) agree as well
    w1, w2 = torch.randn_like(means2d), torch.randn_like(conics)
    ours = torch.autograd.grad(((means2d * w1)[valid].sum() + (conics * w2)[valid].sum()),
                               [means, quats, scales])
    ref = torch.autograd.grad(((r_means2d * w1)[valid].sum() + (r_conics * w2)[valid].sum()),
                              [means, quats, scales])
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_opacity_aware_radii():
    s = random_scene(300, 64, 48, sh_degree=0, seed=4)
    opac = torch.rand(300) * 0.99 + 0.002  # some below 1/255
    radii, _, _, conics = project_gaussians(s["means"], s["quats"], s["scales"], s["viewmats"],
                                           s["Ks"], 64, 48, opacities=opac)
    full, _, _, _ = project_gaussians(s["means"], s["quats"], s["scales"], s["viewmats"],
                                      s["Ks"], 64, 48)
    a, b, c = conics[0].unbind(-1)
    det = a * c - b * b
    cov = torch.stack([c / det, a / det], -1)  # [N, 2] diagonal of the 2D covariance
    extend = torch.sqrt(2 * torch.log(opac * 255.0)).clamp(max=3.33)
    expect = torch.ceil(extend[:, None] * cov.sqrt()).int()
    on = (radii[0] > 0).all(-1)
    assert torch.equal(radii[0][on], expect[on])
    assert not on[opac < 1 / 255].any() and on.sum() > 200
    assert (radii[0] <= full[0]).all() and (radii[0] < full[0]).any()


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_matches_gsplat(degree):
    s = random_scene(200, sh_degree=3, n_cameras=2, seed=5)
    coeffs = torch.randn(200, 16, 3)
    ours = sh_colors(degree, s["means"], coeffs, s["viewmats"])  # [C, N, 3]
    campos = torch.inverse(s["viewmats"])[:, :3, 3]
    dirs = s["means"][None] - campos[:, None]
    ref = _spherical_harmonics(degree, dirs, coeffs[None].expand(2, -1, -1, -1))
    torch.testing.assert_close(ours, torch.clamp_min(ref + 0.5, 0.0), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- compositing


@pytest.mark.parametrize("backend", BACKENDS)
def test_composite_matches_reference(backend):
    p = projected_scene(n=200, n_cameras=2, channels=5, seed=7, sigma_px=(0.5, 4.0))
    bg = torch.rand(2, 5, dtype=torch.float64)
    leaves = [p["means2d"], p["conics"], p["colors"], p["opacities"]]
    for t in leaves:
        t.requires_grad_(True)
    out, alpha = composite(backend, *flat(p), 2, 40, 30, bg)
    gout, galpha = torch.randn_like(out), torch.randn_like(alpha)
    grads = torch.autograd.grad((out * gout).sum() + (alpha * galpha).sum(), leaves)
    for c in range(2):
        ref_out, ref_alpha = reference_composite(
            p["means2d"][c], p["conics"][c], p["colors"][c], p["opacities"][c], p["radii"][c],
            p["depths"][c], 40, 30, bg[c])
        assert ref_alpha.max() > 0.9999 - 1e-6 or ref_alpha.mean() > 0.5  # dense enough to matter
        torch.testing.assert_close(out[c], ref_out, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(alpha[c], ref_alpha, rtol=1e-6, atol=1e-7)
        ref_grads = torch.autograd.grad((ref_out * gout[c]).sum() + (ref_alpha * galpha[c]).sum(),
                                        leaves)
        for ours, ref in zip(grads, ref_grads):
            torch.testing.assert_close(ours[c], ref[c], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_composite_early_stop_and_clamp(backend):
    """Opaque stacks: the 1e-4 transmittance stop and the 0.999 alpha clamp both trigger."""
    opac = torch.full((120,), 0.9995)
    opac[::3] = 0.6
    opac[1::3] = 1.0
    p = projected_scene(n=120, width=12, height=10, seed=8, sigma_px=(2.0, 4.0), opacities=opac)
    # a third sits 0.01 px off a pixel centre with opacity 1: alpha clamps to 0.999 there
    snap = p["means2d"][:, 1::3]
    p["means2d"][:, 1::3] = torch.floor(snap) + 0.51
    p["radii"] = p["radii"] + (p["radii"] > 0).int()  # boxes stay conservative after the move
    leaves = [p["means2d"], p["conics"], p["colors"], p["opacities"]]
    for t in leaves:
        t.requires_grad_(True)
    out, alpha = composite(backend, *flat(p), 1, 12, 10)
    ref_out, ref_alpha = reference_composite(*(p[k][0] for k in (
        "means2d", "conics", "colors", "opacities", "radii", "depths")), 12, 10)
    torch.testing.assert_close(out[0], ref_out, rtol=1e-6, atol=1e-7)
    assert (1 - alpha).min() < 1e-3
    g_ours = torch.autograd.grad(out.sum() + alpha.sum(), leaves)
    g_ref = torch.autograd.grad(ref_out.sum() + ref_alpha.sum(), leaves)
    for ours, ref in zip(g_ours, g_ref):
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_tiny(backend):
    need_backend(backend)
    p = projected_scene(n=6, width=8, height=8, seed=11, sigma_px=(1.0, 2.5), channels=2)
    p["opacities"] = p["opacities"].clone()
    means2d, conics, colors, opac, radii, depths, image_ids = flat(p)
    bg = torch.rand(1, 2, dtype=torch.float64, requires_grad=True)
    assert (radii > 0).all(-1).sum() >= 4

    def fn(m, co, cl, op, b):
        return composite(backend, m, co, cl, op, radii, depths, image_ids, 1, 8, 8, b)

    inputs = [t.detach().clone().requires_grad_(True) for t in (means2d, conics, colors, opac)]
    assert torch.autograd.gradcheck(fn, inputs + [bg], eps=1e-6, atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------- rasterize()


@pytest.mark.parametrize("backend", BACKENDS)
def test_rasterize_background_and_expected_depth(backend):
    need_backend(backend)
    s = random_scene(300, 40, 30, sh_degree=3, seed=12, sigma_px=(0.5, 2.0))
    s["opacities"] = s["opacities"] * 0.5  # leave some transmittance for the background
    bg = torch.tensor([[0.2, 0.5, 0.9]])
    args = (s["means"], s["quats"], s["scales"], s["opacities"], s["colors"], s["viewmats"],
            s["Ks"], 40, 30)
    rgbd, alpha, info = rasterize(*args, sh_degree=3, backgrounds=bg, render_mode="RGB+ED",
                                  packed=False, backend=backend)
    rgb, alpha2, _ = rasterize(*args, sh_degree=3, render_mode="RGB", backend=backend)
    assert rgbd.shape == (1, 30, 40, 4) and alpha.shape == (1, 30, 40, 1)
    torch.testing.assert_close(alpha, alpha2)
    torch.testing.assert_close(rgbd[..., :3], rgb + (1 - alpha) * bg, rtol=1e-5, atol=1e-6)
    assert 0.05 < (1 - alpha).mean() < 0.95
    # expected depth = sum(w z) / alpha, from the reference with depth as the feature
    feats = sh_colors(3, s["means"], s["colors"], s["viewmats"])[0]
    ref_d, ref_a = reference_composite(info["means2d"][0], info["conics"][0],
                                       info["depths"][0][:, None], info["opacities"][0],
                                       info["radii"][0], info["depths"][0], 40, 30)
    ref_rgb, _ = reference_composite(info["means2d"][0], info["conics"][0], feats,
                                     info["opacities"][0], info["radii"][0], info["depths"][0],
                                     40, 30, bg[0])
    torch.testing.assert_close(rgbd[0, ..., 3:], ref_d / ref_a.clamp(min=1e-10), rtol=1e-4,
                               atol=1e-4)
    torch.testing.assert_close(rgbd[0, ..., :3], ref_rgb, rtol=1e-4, atol=1e-5)
    ed, _, _ = rasterize(*args, sh_degree=3, render_mode="ED", backend=backend)
    d, _, _ = rasterize(*args, sh_degree=3, render_mode="D", backend=backend)
    torch.testing.assert_close(ed, rgbd[..., 3:])
    torch.testing.assert_close(d, ref_d[None], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rasterize_cameras_features_packed(backend):
    need_backend(backend)
    s = random_scene(300, 32, 24, n_cameras=3, sh_degree=0, seed=13)
    feats = torch.rand(300, 19, requires_grad=True)  # semantics-sized features
    means = s["means"].requires_grad_(True)
    args = (means, s["quats"], s["scales"], s["opacities"], feats, s["viewmats"], s["Ks"], 32, 24)
    out, alpha, info = rasterize(*args, packed=False, backend=backend)
    outp, alphap, infop = rasterize(*args, backend=backend, absgrad=True)  # packed by default, as gsplat
    assert out.shape == (3, 24, 32, 19) and info["means2d"].shape == (3, 300, 2)
    torch.testing.assert_close(out, outp)
    torch.testing.assert_close(alpha, alphap)
    sel = (info["radii"] > 0).all(-1)
    nnz = int(sel.sum())
    assert infop["means2d"].shape == (nnz, 2) and infop["radii"].shape == (nnz, 2)
    assert torch.equal(infop["radii"], info["radii"][sel])
    assert torch.equal(infop["gaussian_ids"], torch.where(sel)[1])
    assert torch.equal(infop["camera_ids"], torch.where(sel)[0])
    for i in (info, infop):
        i["means2d"].retain_grad()
    w = torch.randn_like(out)
    (out * w).sum().backward()
    (outp * w).sum().backward()
    torch.testing.assert_close(infop["means2d"].grad, info["means2d"].grad[sel])
    assert infop["means2d"].absgrad.shape == (nnz, 2)
    assert (infop["means2d"].absgrad >= infop["means2d"].grad.abs() - 1e-6).all()
    # each camera renders like a single-camera call
    for c in range(3):
        single, _, _ = rasterize(means, s["quats"], s["scales"], s["opacities"], feats,
                                 s["viewmats"][c:c + 1], s["Ks"][c:c + 1], 32, 24, backend=backend)
        torch.testing.assert_close(single[0], out[c])


def test_rasterize_rejects_bad_shapes():
    s = random_scene(10, sh_degree=3)
    with pytest.raises(GsVqError):
        rasterize(s["means"], s["quats"], s["scales"], s["opacities"][:5], s["colors"],
                  s["viewmats"], s["Ks"], 20, 20, sh_degree=3, backend="torch")
    with pytest.raises(GsVqError):
        rasterize(s["means"], s["quats"], s["scales"], s["opacities"], s["colors"][:, :4],
                  s["viewmats"], s["Ks"], 20, 20, sh_degree=3, backend="torch")
    with pytest.raises(GsVqError):
        rasterize(s["means"], s["quats"], s["scales"], s["opacities"], s["colors"],
                  s["viewmats"], s["Ks"], 20, 20, sh_degree=3, backend="vulkan")


@pytest.mark.parametrize("channels, sh, absgrad, chunk", [(35, False, True, 36), (35, False, False, 32),
                                                          (8, False, True, 32), (16, True, True, 32)])
def test_gsplat_renders_every_channel_in_one_pass_when_absgrad_is_on(monkeypatch, channels, sh, absgrad, chunk):
    """gsplat's chunks of 32 channels would each overwrite means2d.absgrad (issue 24, item 4)."""
    import gsplat

    import gs_vq.render.gsplat_cuda as gc
    from gs_vq.render import rasterize

    seen = {}

    def fake(*args, **kwargs):
        seen.update(kwargs)
        return torch.zeros(1, 4, 4, 3), torch.zeros(1, 4, 4, 1), {}

    monkeypatch.setattr(gsplat, "rasterization", fake)
    monkeypatch.setattr(gc, "load_gsplat_cuda", lambda *a, **k: 0.0)
    N = 5
    colors = torch.rand(N, 16, 3) if sh else torch.rand(N, channels)
    rasterize(torch.rand(N, 3) + torch.tensor([0, 0, 3.0]), torch.tensor([[1.0, 0, 0, 0]]).repeat(N, 1),
              torch.full((N, 3), 0.1), torch.full((N,), 0.5), colors, torch.eye(4)[None],
              torch.tensor([[[4.0, 0, 2], [0, 4.0, 2], [0, 0, 1]]]), 4, 4, sh_degree=3 if sh else None,
              absgrad=absgrad, backend="gsplat")
    assert seen["channel_chunk"] == chunk


def test_reach_bounds_hold_every_projected_box():
    """The cheap bound of the label query path holds every box the projection gives, wide and
    off-screen Gaussians included, and it does cull."""
    from gs_vq.render.projection import reach_bounds
    from gs_vq.render.synthetic import random_scene

    for seed in range(4):
        s = random_scene(3000, width=120, height=90, sh_degree=0, sigma_px=(0.3, 25.0), seed=seed)
        s["means"] = s["means"] * torch.tensor([2.5, 2.5, 1.0])  # many centres far outside the view
        g = torch.Generator().manual_seed(seed)
        for _ in range(5):
            x0, y0 = int(torch.randint(0, 100, (1,), generator=g)), int(torch.randint(0, 70, (1,), generator=g))
            w, h = int(torch.randint(1, 120 - x0 + 1, (1,), generator=g)), int(torch.randint(1, 90 - y0 + 1, (1,), generator=g))
            radii, means2d, _, _ = project_gaussians(s["means"], s["quats"], s["scales"], s["viewmats"], s["Ks"], 120, 90,
                                                     opacities=s["opacities"])
            m, r = means2d[0], radii[0].float()
            meets = (radii[0] > 0).all(-1) & (m[:, 0] + r[:, 0] > x0) & (m[:, 0] - r[:, 0] < x0 + w) & \
                (m[:, 1] + r[:, 1] > y0) & (m[:, 1] - r[:, 1] < y0 + h)
            lo, hi, in_front = reach_bounds(s["means"], s["scales"].max(-1).values, s["viewmats"][0], s["Ks"][0])
            kept = in_front & (hi[:, 0] > x0) & (lo[:, 0] < x0 + w) & (hi[:, 1] > y0) & (lo[:, 1] < y0 + h)
            assert not (meets & ~kept).any()
            assert kept.sum() < len(kept)
