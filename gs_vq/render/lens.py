"""OpenCV's perspective lens distortion (radial-tangential, rational) for projecting Gaussians into
a distorted camera directly, without undistorting its image.

Coefficients as ``gsplat.rasterization`` takes them: ``radial_coeffs [C, 6]`` = (k1, k2, k3, k4,
k5, k6) and ``tangential_coeffs [C, 2]`` = (p1, p2). For normalized pinhole coordinates (x, y),
``r2 = x^2 + y^2`` (OpenCV's ``projectPoints``, COLMAP's OPENCV / FULL_OPENCV / RADIAL /
SIMPLE_RADIAL):

    radial = (1 + k1 r2 + k2 r2^2 + k3 r2^3) / (1 + k4 r2 + k5 r2^2 + k6 r2^3)
    x' = x radial + 2 p1 x y + p2 (r2 + 2 x^2)
    y' = y radial + p1 (r2 + 2 y^2) + 2 p2 x y

A lens polynomial is only a lens inside the radius where ``r * radial(r^2)`` still grows: beyond
it the image folds back. :func:`fold_radius2` finds that radius per camera; the projection culls
Gaussians whose centre lies beyond it.
"""

from typing import Tuple

import torch
from torch import Tensor

# Largest normalized radius searched for a fold: tan(80 degrees), wider than any perspective lens.
MAX_RADIUS = 5.67
FOLD_SAMPLES = 2048


def _radial(r2: Tensor, k: Tensor) -> Tuple[Tensor, Tensor]:
    """``radial(r2)`` and ``d radial / d r2``; ``r2 [C, N]``, ``k [C, 6]``."""
    k1, k2, k3, k4, k5, k6 = (k[:, i, None] for i in range(6))  # [C, 1]
    num = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    den = 1 + r2 * (k4 + r2 * (k5 + r2 * k6))
    dnum = k1 + r2 * (2 * k2 + 3 * r2 * k3)
    dden = k4 + r2 * (2 * k5 + 3 * r2 * k6)
    return num / den, (dnum * den - num * dden) / (den * den)


def distort(x: Tensor, y: Tensor, radial_coeffs: Tensor, tangential_coeffs: Tensor) -> Tuple[Tensor, Tensor]:
    """Distorted normalized coordinates ``(x', y')`` ``[C, N]`` of ``x, y`` ``[C, N]``."""
    p1, p2 = tangential_coeffs[:, 0, None], tangential_coeffs[:, 1, None]  # [C, 1]
    r2 = x * x + y * y
    rad, _ = _radial(r2, radial_coeffs)
    return (x * rad + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * rad + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)


def distort_jacobian(x: Tensor, y: Tensor, radial_coeffs: Tensor,
                     tangential_coeffs: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """``d(x', y') / d(x, y)`` at ``x, y`` ``[C, N]``: the entries (dx'/dx, dx'/dy, dy'/dx, dy'/dy)."""
    p1, p2 = tangential_coeffs[:, 0, None], tangential_coeffs[:, 1, None]  # [C, 1]
    r2 = x * x + y * y
    rad, drad = _radial(r2, radial_coeffs)
    cross = 2 * x * y * drad + 2 * p1 * x + 2 * p2 * y  # dx'/dy = dy'/dx
    return (rad + 2 * x * x * drad + 2 * p1 * y + 6 * p2 * x, cross, cross,
            rad + 2 * y * y * drad + 6 * p1 * y + 2 * p2 * x)


def fold_radius2(radial_coeffs: Tensor) -> Tensor:
    """``[C]``: the squared normalized radius where each camera's radial map ``r * radial(r^2)`` stops
    growing (its first non-positive derivative or pole on a grid up to :data:`MAX_RADIUS`), or
    ``MAX_RADIUS^2`` when it grows all the way."""
    with torch.no_grad():
        r = torch.linspace(0, MAX_RADIUS, FOLD_SAMPLES, device=radial_coeffs.device,
                           dtype=radial_coeffs.dtype)[None].expand(radial_coeffs.shape[0], -1)  # [C, S]
        rad, drad = _radial(r * r, radial_coeffs)
        slope = rad + 2 * r * r * drad  # d(r radial) / dr
        bad = ~(slope > 0) | ~torch.isfinite(slope)  # [C, S]
        first = torch.where(bad.any(1), bad.float().argmax(1), torch.full_like(bad[:, 0], FOLD_SAMPLES - 1,
                                                                                 dtype=torch.long))
        return r.gather(1, first[:, None]).squeeze(1) ** 2
