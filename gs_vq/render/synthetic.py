"""Random but realistic Gaussian scenes for the rasterizer's tests and benchmark."""

import math
from typing import Dict

import torch
from torch import Tensor

from .projection import SH_C0


def look_at_viewmat(eye: Tensor, target: Tensor) -> Tensor:
    """World-to-camera ``[4, 4]`` (OpenCV: x right, y down, z forward) from eye to target."""
    forward = torch.nn.functional.normalize(target - eye, dim=0)
    up = torch.tensor([0.0, -1.0, 0.0])
    right = torch.nn.functional.normalize(torch.linalg.cross(up, forward), dim=0)
    down = torch.linalg.cross(forward, right)
    R = torch.stack([right, down, forward])  # rows: camera axes in world coordinates
    viewmat = torch.eye(4)
    viewmat[:3, :3] = R
    viewmat[:3, 3] = -R @ eye
    return viewmat


def random_scene(
    n: int,
    width: int = 200,
    height: int = 200,
    n_cameras: int = 1,
    sh_degree: int = 3,
    sigma_px: tuple = (0.3, 2.0),
    seed: int = 0,
) -> Dict[str, Tensor]:
    """``n`` Gaussians in front of ``n_cameras`` cameras looking at the origin.

    Means fill the first camera's frustum between depths 2 and 6 (a little beyond the image
    edges), footprints are log-uniform in ``sigma_px`` pixels (anisotropic, randomly rotated),
    opacities uniform in [0.1, 0.9], SH coefficients random (``sh_degree`` bands) with a
    DC term that gives mid-range colours. Everything is float32 with activations applied,
    ready for ``rasterize``: keys means, quats, scales, opacities, colors [N, K, 3],
    viewmats [C, 4, 4], Ks [C, 3, 3].
    """
    g = torch.Generator().manual_seed(seed)
    focal = 0.9 * width
    Ks = torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
    eyes = [torch.tensor([0.0, 0.0, -4.0])]
    for i in range(1, n_cameras):  # further cameras on a small arc around the origin
        angle = 0.25 * i
        eyes.append(torch.tensor([4.0 * math.sin(angle), 0.3 * i, -4.0 * math.cos(angle)]))
    viewmats = torch.stack([look_at_viewmat(e, torch.zeros(3)) for e in eyes])

    depth = 2.0 + 4.0 * torch.rand(n, generator=g)  # camera-0 z
    half_w, half_h = 0.55 * width / focal, 0.55 * height / focal
    x = (2 * torch.rand(n, generator=g) - 1) * half_w * depth
    y = (2 * torch.rand(n, generator=g) - 1) * half_h * depth
    cam0 = torch.stack([x, y, depth], -1)  # [N, 3]
    R0, t0 = viewmats[0, :3, :3], viewmats[0, :3, 3]
    means = (cam0 - t0) @ R0  # back to world: R^T (p - t)

    lo, hi = math.log(sigma_px[0]), math.log(sigma_px[1])
    px = torch.exp(lo + (hi - lo) * torch.rand(n, 1, generator=g))  # [N, 1] pixels
    aniso = torch.exp(0.7 * (2 * torch.rand(n, 3, generator=g) - 1))  # [N, 3]
    scales = px * aniso * depth[:, None] / focal  # [N, 3] world units
    quats = torch.randn(n, 4, generator=g)
    opacities = 0.1 + 0.8 * torch.rand(n, generator=g)
    K = (sh_degree + 1) ** 2
    colors = 0.2 * torch.randn(n, K, 3, generator=g)
    colors[:, 0] = (torch.rand(n, 3, generator=g) - 0.5) / SH_C0
    return {"means": means, "quats": quats, "scales": scales, "opacities": opacities,
            "colors": colors, "viewmats": viewmats, "Ks": Ks[None].repeat(n_cameras, 1, 1)}
