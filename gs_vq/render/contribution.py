"""Contribution-weighted sums of per-pixel maps onto Gaussians, through the rasterizer's backward.

A render of per-Gaussian "colours" ``c [N, D]`` is ``R(p) = sum_i w_i(p) c_i`` with
``w_i(p) = alpha_i(p) T_i(p)`` (alpha times transmittance, zero background). Its gradient is
therefore

    d/dc_i  sum_p <G(p), R(p)>  =  sum_p w_i(p) G(p)

for any fixed per-pixel map ``G [H, W, D]``: one backward pass per view gives the
contribution-weighted sum of ``G`` over the pixels each Gaussian touches (``G = 1`` gives the
contribution itself). No new kernel is needed; the same code runs on the CPU rasterizer and on
gsplat (CUDA). Used for semantic lifting (:mod:`gs_vq.semantics.lift`) and for importance scores.
"""

from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..data.cameras import camera_lens_batch
from . import rasterize


def scaled_intrinsics(K: Tensor, width: int, height: int, new_width: int, new_height: int) -> Tensor:
    """``K [3, 3]`` of a ``width x height`` camera rescaled to ``new_width x new_height`` pixels
    (pixel centres at +0.5 stay aligned)."""
    K = K.clone()
    K[0] *= new_width / width
    K[1] *= new_height / height
    K[2] = torch.tensor([0.0, 0.0, 1.0], dtype=K.dtype)
    return K


def lift_view(splats: Dict[str, Tensor], viewmat: Tensor, K: Tensor, width: int, height: int, G: Tensor,
              backend: str = "auto", **lens: Tensor) -> Tensor:
    """``sum_p w_i(p) G(p)`` for one view: ``G [height, width, D]`` -> ``[N, D]``.

    ``splats`` are raw (pre-activation) tensors as in the ParameterDict; ``viewmat [4, 4]``,
    ``K [3, 3]`` (pixels of the ``width x height`` image); ``lens``: a distorted camera's
    ``radial_coeffs [1, 6]`` and ``tangential_coeffs [1, 2]`` (``camera_lens_batch``).
    """
    means = splats["means"].detach()
    N, D = means.shape[0], G.shape[-1]
    colors = torch.zeros(N, D, device=means.device, requires_grad=True)  # [N, D]
    with torch.enable_grad():
        render, _, _ = rasterize(means, splats["quats"].detach(), torch.exp(splats["scales"].detach()),
                                 torch.sigmoid(splats["opacities"].detach()), colors, viewmat[None].to(means.device),
                                 K[None].to(means.device), width, height, sh_degree=None, backend=backend, **lens)
        (render[0] * G.to(render)).sum().backward()
    return colors.grad  # [N, D]


def lift_maps(splats: Dict[str, Tensor], cameras: Sequence, maps: Callable[[object], Optional[Tensor]],
              backend: str = "auto") -> Tuple[Tensor, Tensor]:
    """Sum ``maps(cam) [h, w, D]`` onto the Gaussians over ``cameras``, weighted by contribution.

    Each view is rendered at its map's size (``h x w``, intrinsics rescaled); views whose map is
    None are skipped. Returns ``(sums [N, D], contribution [N])``, where ``contribution`` is
    ``sum_views sum_p w_i(p)`` at those sizes (so ``sums / contribution`` is the weighted mean).
    """
    N, device = splats["means"].shape[0], splats["means"].device
    sums: Optional[Tensor] = None
    weight = torch.zeros(N, device=device)
    for cam in cameras:
        G = maps(cam)
        if G is None:
            continue
        h, w = G.shape[:2]
        K = scaled_intrinsics(cam.K, cam.width, cam.height, w, h)
        G1 = torch.cat([G.to(device).float(), torch.ones(h, w, 1, device=device)], dim=-1)  # [h, w, D+1]
        out = lift_view(splats, cam.viewmat, K, w, h, G1, backend, **camera_lens_batch([cam], device))  # [N, D+1]
        sums = out[:, :-1] if sums is None else sums + out[:, :-1]
        weight += out[:, -1]
    if sums is None:
        sums = torch.zeros(N, 0, device=device)
    return sums, weight


def contribution(splats: Dict[str, Tensor], cameras: Sequence, downscale: int = 1,
                 backend: str = "auto") -> Tensor:
    """``sum_views sum_p alpha_i(p) T_i(p)`` of every Gaussian -> ``[N]`` (pixels of images
    ``downscale`` times smaller than the cameras'): how much each Gaussian is seen."""
    def ones(cam):
        return torch.ones(max(1, cam.height // downscale), max(1, cam.width // downscale), 0)

    return lift_maps(splats, cameras, ones, backend)[1]
