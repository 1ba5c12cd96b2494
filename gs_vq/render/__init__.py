"""Rasterization backends behind one function with ``gsplat.rasterization``'s signature.

``rasterize(...)`` calls ``gsplat.rasterization`` for CUDA tensors and our CPU rasterizer
otherwise: EWA projection + SH in torch (:mod:`.projection`), compositing either in pure torch
with a hand-written backward (:mod:`.composite`) or in a compiled C++/OpenMP kernel
(:mod:`.ext`, same maths, built on first use). The result and the ``info`` dict follow gsplat
1.5.3 (classic mode, pinhole cameras), so gsplat's ``DefaultStrategy`` runs on top unchanged.
"""

from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from ..errors import GsVqError
from .composite import composite_torch
from .projection import project_gaussians, sh_colors

__all__ = ["rasterize", "resolve_backend"]

RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")
BACKENDS = ("auto", "gsplat", "torch", "cpp")
# gsplat's tile size; reported in info (the CPU paths work per pixel / per row).
TILE_SIZE = 16


def gsplat_channel_chunk(colors: Tensor, sh_degree: Optional[int], absgrad: bool) -> int:
    """``channel_chunk`` for ``gsplat.rasterization``: its default 32, or every channel in one pass
    when ``absgrad`` is on. gsplat renders more than ``channel_chunk`` channels (depth included) in
    chunks, and each chunk's backward overwrites ``means2d.absgrad``, so the strategy would see the
    last chunk's gradient only; one pass gives the absgrad of all channels, as the CPU backends do."""
    channels = 3 if sh_degree is not None else colors.shape[-1]
    return max(32, channels + 1) if absgrad else 32  # + 1: a depth channel of "RGB+D" / "RGB+ED"


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``. On CUDA, gsplat's extension is loaded
    (compiled the first time) here, before any timing, or a one-line error says how to get it."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise GsVqError("--device cuda asked for, but no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise GsVqError(f"--device must be auto, cpu or cuda, got {name}")
    if name == "cuda":
        from .gsplat_cuda import load_gsplat_cuda

        load_gsplat_cuda()
    return name


def resolve_backend(backend: str, is_cuda: bool) -> str:
    """``"auto"`` -> ``"gsplat"`` on CUDA, else ``"cpp"`` if the kernel builds, else ``"torch"``."""
    if backend not in BACKENDS:
        raise GsVqError(f"unknown rasterizer backend {backend!r}; expected one of {BACKENDS}")
    if backend != "auto":
        return backend
    if is_cuda:
        return "gsplat"
    from . import ext

    return "cpp" if ext.available() else "torch"


def to_window(radii: Tensor, means2d: Tensor, window: Tuple[int, int, int, int]) -> Tuple[Tensor, Tensor]:
    """Projected Gaussians (``radii [C, N, 2]``, ``means2d [C, N, 2]``) in the pixels of
    ``window = (x0, y0, w, h)`` (inside the image, as :func:`rasterize` checks): centres shifted
    by ``(x0, y0)``, radii 0 where the bounding box misses the window."""
    x0, y0, w, h = (int(v) for v in window)
    means2d = means2d - means2d.new_tensor([x0, y0])
    with torch.no_grad():
        m, r = means2d.detach(), radii.to(means2d.dtype)
        hit = ((m + r > 0) & (m - r < m.new_tensor([w, h]))).all(-1)  # [C, N]
    return radii * hit[..., None], means2d


def _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, sh_degree, render_mode):
    N, C = means.shape[0], viewmats.shape[0]
    expected = {"means": (means, (N, 3)), "quats": (quats, (N, 4)), "scales": (scales, (N, 3)),
                "opacities": (opacities, (N,)), "viewmats": (viewmats, (C, 4, 4)),
                "Ks": (Ks, (C, 3, 3))}
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise GsVqError(f"rasterize: {name} has shape {tuple(tensor.shape)}, expected {shape}")
    if render_mode not in RENDER_MODES:
        raise GsVqError(f"rasterize: render_mode {render_mode!r} not in {RENDER_MODES}")
    if sh_degree is None:
        ok = (colors.dim() == 2 and colors.shape[0] == N) or (
            colors.dim() == 3 and colors.shape[:2] == (C, N))
        what = "[N, D] or [C, N, D] features"
    else:
        ok = colors.shape[-1] == 3 and ((colors.dim() == 3 and colors.shape[0] == N) or (
            colors.dim() == 4 and colors.shape[:2] == (C, N)))
        ok = ok and (sh_degree + 1) ** 2 <= colors.shape[-2] and 0 <= sh_degree <= 3
        what = f"[N, K, 3] or [C, N, K, 3] SH coefficients with K >= {(sh_degree or 0) + 1}^2"
    if not ok:
        raise GsVqError(f"rasterize: colors has shape {tuple(colors.shape)}, expected {what}")


def _features(colors, means, viewmats, sh_degree, C, N) -> Tensor:
    """Per-camera features ``[C, N, D]`` (SH evaluated to RGB when ``sh_degree`` is set)."""
    if sh_degree is not None:
        return sh_colors(sh_degree, means, colors, viewmats)
    if colors.dim() == 2:
        return colors[None].expand(C, N, colors.shape[-1])
    return colors


def _with_depth(render_mode, feats, depths, backgrounds, C):
    """Append (or substitute) the depth channel as gsplat does for the depth render modes."""
    if render_mode in ("RGB+D", "RGB+ED"):
        feats = torch.cat([feats, depths[..., None]], -1)
        if backgrounds is not None:
            backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(C, 1)], -1)
    elif render_mode in ("D", "ED"):
        feats = depths[..., None]
        if backgrounds is not None:
            backgrounds = backgrounds.new_zeros(C, 1)
    return feats, backgrounds


def rasterize(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [N, K, 3] / [C, N, K, 3] (SH) or [N, D] / [C, N, D]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    sh_degree: Optional[int] = None,
    packed: bool = True,
    backgrounds: Optional[Tensor] = None,  # [C, D]
    render_mode: str = "RGB",
    absgrad: bool = False,
    backend: str = "auto",
    radial_coeffs: Optional[Tensor] = None,  # [C, 6]
    tangential_coeffs: Optional[Tensor] = None,  # [C, 2]
    window: Optional[Tuple[int, int, int, int]] = None,
) -> Tuple[Tensor, Tensor, Dict]:
    """Render ``N`` 3D Gaussians into ``C`` pinhole cameras, like ``gsplat.rasterization``.

    Args:
        means, quats, scales, opacities: Gaussians with activations applied (scales are
            standard deviations in world units, opacities in [0, 1], quats ``wxyz``).
        colors: SH coefficients when ``sh_degree`` is given (RGB = max(SH(dir) + 0.5, 0)), or
            any post-activation features (D channels, per Gaussian or per camera).
        viewmats: world-to-camera, OpenCV axes. Ks: intrinsics in pixels. width, height: pixels.
        backgrounds: per-camera colour ``[C, D]`` added as ``T_final * background``.
        render_mode: "RGB" (features), "D" (accumulated depth), "ED" (expected depth, i.e.
            accumulated depth / alpha), "RGB+D", "RGB+ED" (depth as the last channel).
        absgrad: also give ``info["means2d"].absgrad`` after backward.
        backend: "auto" (gsplat on CUDA, else "cpp" if it builds, else "torch"), "gsplat",
            "torch" or "cpp".
        radial_coeffs, tangential_coeffs: OpenCV lens distortion of each camera, gsplat's names
            and order (:mod:`~gs_vq.render.lens`); CPU backends only (gsplat takes them only
            through its unscented transform and 3D evaluation, which gs-vq does not drive).
        window: ``(x0, y0, w, h)``: render only these pixels of the ``width x height`` image, as
            they are in the full render (same projection; Gaussians whose box misses the window
            are culled before compositing). The outputs are ``[C, h, w, ...]``. gsplat renders
            the full image and cuts it.

    Returns:
        ``render_colors [C, H, W, X]``, ``render_alphas [C, H, W, 1]`` and ``info`` with
        ``means2d`` (``[C, N, 2]``, or ``[nnz, 2]`` when packed; its ``.grad`` is what
        DefaultStrategy reads), ``radii`` (int32 ``[C, N, 2]`` / ``[nnz, 2]``), ``depths``,
        ``conics``, ``opacities``, ``gaussian_ids``/``camera_ids`` (``[nnz]`` when packed, else
        None), ``width``, ``height``, ``n_cameras``, ``tile_size``, ``backend``.
    """
    _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, sh_degree, render_mode)
    backend = resolve_backend(backend, means.is_cuda)
    if (radial_coeffs is None) != (tangential_coeffs is None):
        raise GsVqError("rasterize: give radial_coeffs and tangential_coeffs together")
    C = viewmats.shape[0]
    for name, tensor, n in (("radial_coeffs", radial_coeffs, 6), ("tangential_coeffs", tangential_coeffs, 2)):
        if tensor is not None and tuple(tensor.shape) != (C, n):
            raise GsVqError(f"rasterize: {name} has shape {tuple(tensor.shape)}, expected {(C, n)}")
    if window is not None:
        x0, y0, w, h = (int(v) for v in window)
        if not (0 <= x0 and 0 <= y0 and w >= 1 and h >= 1 and x0 + w <= width and y0 + h <= height):
            raise GsVqError(f"rasterize: window {tuple(window)} is not inside the {width}x{height} image")
    if backend == "gsplat" and radial_coeffs is not None:
        raise GsVqError("distorted cameras render on the CPU backends only; on CUDA load the scene "
                        "with --lens undistort (the default)")
    if backend == "gsplat":
        import gsplat

        from .gsplat_cuda import load_gsplat_cuda

        load_gsplat_cuda()  # a one-line error, not a NoneType traceback, without the extension

        render, alphas, info = gsplat.rasterization(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height,
            near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, sh_degree=sh_degree,
            packed=packed, backgrounds=backgrounds, render_mode=render_mode, absgrad=absgrad,
            channel_chunk=gsplat_channel_chunk(colors, sh_degree, absgrad))
        info["backend"] = "gsplat"
        if window is not None:
            x0, y0, w, h = window
            render, alphas = render[:, y0:y0 + h, x0:x0 + w], alphas[:, y0:y0 + h, x0:x0 + w]
        return render, alphas, info
    if means.is_cuda:
        raise GsVqError(f"rasterize: backend {backend!r} runs on CPU tensors only")

    C, N = viewmats.shape[0], means.shape[0]
    radii, means2d, depths, conics = project_gaussians(
        means, quats, scales, viewmats, Ks, width, height, eps2d=eps2d,
        near_plane=near_plane, far_plane=far_plane, opacities=opacities,
        radial_coeffs=radial_coeffs, tangential_coeffs=tangential_coeffs)
    if window is not None:
        radii, means2d = to_window(radii, means2d, window)
        width, height = window[2], window[3]
    feats = _features(colors, means, viewmats, sh_degree, C, N)  # [C, N, D]
    feats, backgrounds = _with_depth(render_mode, feats, depths, backgrounds, C)
    opas = opacities[None].expand(C, N)  # [C, N]
    camera_ids = gaussian_ids = None
    if packed:
        camera_ids, gaussian_ids = torch.nonzero((radii > 0).all(-1), as_tuple=True)  # [nnz]
        means2d, radii = means2d[camera_ids, gaussian_ids], radii[camera_ids, gaussian_ids]
        depths, conics = depths[camera_ids, gaussian_ids], conics[camera_ids, gaussian_ids]
        opas, feats = opas[camera_ids, gaussian_ids], feats[camera_ids, gaussian_ids]
        image_ids = camera_ids
    else:
        image_ids = torch.arange(C).repeat_interleave(N)  # [C * N]

    flat = (means2d.reshape(-1, 2), conics.reshape(-1, 3), feats.reshape(-1, feats.shape[-1]),
            opas.reshape(-1), radii.reshape(-1, 2), depths.reshape(-1).detach(), image_ids)
    absgrad_to = means2d if absgrad else None
    if backend == "cpp":
        from .ext import composite_cpp

        render, alphas = composite_cpp(*flat, C, width, height, backgrounds, absgrad_to)
    else:
        render, alphas = composite_torch(*flat, C, width, height, backgrounds, absgrad_to)
    if render_mode in ("ED", "RGB+ED"):
        render = torch.cat([render[..., :-1], render[..., -1:] / alphas.clamp(min=1e-10)], -1)

    info = {
        "camera_ids": camera_ids, "gaussian_ids": gaussian_ids, "batch_ids": None,
        "radii": radii, "means2d": means2d, "depths": depths, "conics": conics,
        "opacities": opas, "width": width, "height": height, "n_cameras": C, "n_batches": 1,
        "tile_size": TILE_SIZE, "backend": backend,
    }
    return render, alphas, info
