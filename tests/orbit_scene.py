"""A few Gaussians at the origin and a ring of cameras around them (z up, OpenCV axes): enough to
render real frames in tests of evaluation and camera-path videos, in well under a second."""

import math

import torch

from gs_vq.data.cameras import Camera
from gs_vq.splats import init_splats


def look_at_viewmat(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> torch.Tensor:
    """[4, 4] world-to-camera (OpenCV: x right, y down, z forward) at ``eye`` looking at ``target``."""
    eye, target, up = (torch.tensor(v, dtype=torch.float64) for v in (eye, target, up))
    z = torch.nn.functional.normalize(target - eye, dim=0)
    x = torch.nn.functional.normalize(torch.linalg.cross(z, up), dim=0)
    y = torch.linalg.cross(z, x)
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, :3] = torch.stack([x, y, z], dim=1)
    c2w[:3, 3] = eye
    return torch.linalg.inv(c2w).float()


def ring_cameras(n: int = 12, size: int = 32, radius: float = 3.0, height: float = 1.0):
    """``n`` cameras on a circle of ``radius`` at ``height``, all looking at the origin."""
    f = size * 1.2
    K = torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]], dtype=torch.float32)
    cams = []
    for i in range(n):
        a = 2 * math.pi * i / n
        eye = (radius * math.cos(a), radius * math.sin(a), height)
        cams.append(Camera(name=f"view{i:03d}.png", image=torch.full((size, size, 3), 0.5),
                           viewmat=look_at_viewmat(eye), K=K.clone(), width=size, height=size))
    return cams


def blob_splats(n: int = 200, seed: int = 0):
    """``n`` coloured Gaussians in a unit ball (raw parameters, SH degree 1)."""
    g = torch.Generator().manual_seed(seed)
    points = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1) * torch.rand(n, 1, generator=g)
    splats = init_splats(points, torch.rand(n, 3, generator=g), sh_degree=1, init_opacity=0.8)
    return splats
