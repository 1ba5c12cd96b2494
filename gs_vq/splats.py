"""Gaussian splats: initialisation, optimizers and rendering of a camera batch.

Splats live in a ``torch.nn.ParameterDict`` with gsplat's names and raw (pre-activation) values:
``means [N,3]``, ``scales [N,3]`` (log), ``quats [N,4]`` (wxyz), ``opacities [N]`` (logit),
``sh0 [N,1,3]``, ``shN [N,K-1,3]`` and, with semantics, ``features [N,F]``. One Adam optimizer per
parameter, as gsplat's strategies expect.
"""

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from .data.cameras import camera_image
from .render import rasterize
from .render.projection import SH_C0, sh_colors



def rgb_to_sh(rgb: Tensor) -> Tensor:
    """Colour in [0, 1] -> DC SH coefficient (gsplat adds 0.5 after SH evaluation)."""
    return (rgb - 0.5) / SH_C0


def knn_mean_dist(points: Tensor, k: int = 3) -> Tensor:
    """Root mean squared distance of each point to its ``k`` nearest neighbours (gsplat's and
    Inria's initial scale). ``points [P, 3]`` -> ``[P]`` on ``points.device``. A KD-tree (scipy's
    cKDTree, all cores), O(P log P): 240k SfM points take seconds, not the minutes of a full
    distance matrix."""
    from scipy.spatial import cKDTree

    P = points.shape[0]
    if P < 2:
        return torch.zeros(P, device=points.device)
    xyz = points.detach().cpu().double().numpy()
    d, _ = cKDTree(xyz).query(xyz, k=min(k + 1, P), workers=-1)  # [P, k+1], the point itself first
    d2 = torch.from_numpy(d[:, 1:]).square().clamp_min(1e-12)  # [P, k]
    return d2.mean(dim=1).sqrt().float().to(points.device)


def init_splats(points: Tensor, rgbs: Tensor, sh_degree: int, init_opacity: float = 0.1,
                init_scale: float = 1.0, seed: int = 0) -> Dict[str, Tensor]:
    """Raw splat tensors from a point cloud ``points [P,3]`` with colours ``rgbs [P,3]`` in [0,1]."""
    g = torch.Generator().manual_seed(seed)
    N = points.shape[0]
    dist = knn_mean_dist(points).clamp_min(1e-7)  # [N]
    colors = torch.zeros(N, (sh_degree + 1) ** 2, 3)  # [N, K, 3]
    colors[:, 0] = rgb_to_sh(rgbs)
    return {
        "means": points.clone(),
        "scales": torch.log(dist * init_scale)[:, None].repeat(1, 3),
        "quats": torch.rand(N, 4, generator=g),
        "opacities": torch.logit(torch.full((N,), init_opacity)),
        "sh0": colors[:, :1].clone(),
        "shN": colors[:, 1:].clone(),
    }


def make_param_dict(tensors: Dict[str, Tensor], device: str) -> torch.nn.ParameterDict:
    """Wrap raw tensors as parameters; non-float entries (e.g. plugin codes) get no gradient."""
    return torch.nn.ParameterDict(
        {k: torch.nn.Parameter(v.detach().to(device).contiguous(), requires_grad=v.is_floating_point())
         for k, v in tensors.items()}
    )


def make_optimizers(splats: torch.nn.ParameterDict, lrs: Dict[str, float]) -> Dict[str, torch.optim.Optimizer]:
    """One Adam per trainable parameter (eps 1e-15, as in 3DGS). ``lrs``: name -> lr."""
    return {
        name: torch.optim.Adam([{"params": p, "lr": lrs[name], "name": name}], eps=1e-15)
        for name, p in splats.items() if p.requires_grad
    }


@dataclass
class RenderOutput:
    rgb: Tensor  # [C, H, W, 3]
    alpha: Tensor  # [C, H, W, 1]
    extra: Optional[Tensor]  # [C, H, W, F] rendered extra channels (semantic features) or None
    info: Dict


def render_splats(
    splats: Dict[str, Tensor],
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    sh_degree: int,
    background: Optional[Sequence[float]] = None,
    extra: Optional[Tensor] = None,  # [N, F]
    backend: str = "auto",
    absgrad: bool = False,
    radial_coeffs: Optional[Tensor] = None,  # [C, 6]
    tangential_coeffs: Optional[Tensor] = None,  # [C, 2]
) -> RenderOutput:
    """Render raw splats (activations applied here) from ``C`` cameras.

    With ``extra`` the RGB colours are evaluated from SH here and rasterized together with the
    extra channels in one pass (``3 + F`` channels); the extra channels see a zero background.
    ``absgrad`` gives ``info["means2d"].absgrad`` after backward (``DefaultStrategy(absgrad=True)``).
    ``radial_coeffs``/``tangential_coeffs``: distorted cameras (:func:`gs_vq.data.cameras.camera_lens_batch`).
    """
    C = viewmats.shape[0]
    device = viewmats.device
    bg = None
    if background is not None:
        bg = torch.as_tensor(background, dtype=torch.float32, device=device)[None].expand(C, 3)  # [C, 3]
    common = dict(
        means=splats["means"],
        quats=splats["quats"],
        scales=torch.exp(splats["scales"]),
        opacities=torch.sigmoid(splats["opacities"]),
        viewmats=viewmats,
        Ks=Ks,
        width=width,
        height=height,
        packed=False,
        absgrad=absgrad,
        backend=backend,
        radial_coeffs=radial_coeffs,
        tangential_coeffs=tangential_coeffs,
    )
    if extra is None:
        colors = torch.cat([splats["sh0"], splats["shN"]], dim=1)  # [N, K, 3]
        img, alpha, info = rasterize(colors=colors, sh_degree=sh_degree, backgrounds=bg, **common)
        return RenderOutput(img, alpha, None, info)
    coeffs = torch.cat([splats["sh0"], splats["shN"]], dim=1)  # [N, K, 3]
    rgb = sh_colors(sh_degree, splats["means"], coeffs, viewmats)  # [C, N, 3]
    colors = torch.cat([rgb, extra[None].expand(C, -1, -1)], dim=-1)  # [C, N, 3+F]
    if bg is not None:
        bg = torch.cat([bg, torch.zeros(C, extra.shape[1], device=device)], dim=-1)  # [C, 3+F]
    out, alpha, info = rasterize(colors=colors, sh_degree=None, backgrounds=bg, **common)
    return RenderOutput(out[..., :3], alpha, out[..., 3:], info)


def camera_batch(cameras: List, device: str):
    """Stack cameras into ``viewmats [C,4,4]``, ``Ks [C,3,3]`` and images ``[C,H,W,3]``."""
    viewmats = torch.stack([c.viewmat for c in cameras]).to(device)
    Ks = torch.stack([c.K for c in cameras]).to(device)
    images = torch.stack([camera_image(c, device) for c in cameras])  # uint8 pixels become float on the device
    return viewmats, Ks, images


def num_sh_bases(degree: int) -> int:
    return (degree + 1) ** 2


def sh_degree_for(rest: int) -> Optional[int]:
    """SH degree of ``rest`` higher coefficients per colour (``(d + 1)^2 - 1``); None if no degree has
    that many."""
    degree = math.isqrt(rest + 1) - 1
    return degree if (degree + 1) ** 2 == rest + 1 else None


def sh_degree_of(splats: Dict[str, Tensor]) -> int:
    """SH degree stored in ``splats`` (from the number of coefficients of ``shN [N, K - 1, 3]``)."""
    sh_n = splats["shN"] if "shN" in splats.keys() else None
    degree = sh_degree_for(0 if sh_n is None or sh_n.ndim < 2 else sh_n.shape[1])
    if degree is None:
        raise ValueError(f"shN has {sh_n.shape[1]} coefficients per colour, not (d + 1)^2 - 1")
    return degree
