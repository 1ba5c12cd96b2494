"""Which Gaussians matter: global significance for pruning, view dependence for SH bands.

* **Significance** (LightGaussian's global score): ``sum_views sum_pixels alpha_i T_i``, how much
  of the training images Gaussian i paints: :func:`gs_vq.render.contribution.contribution`, one
  backward pass per view, CPU rasterizer or gsplat.
* **View dependence**: with gsplat's orthonormal real SH basis the higher bands add a colour
  ``sum_{l>=1} c_lm Y_lm(d)`` whose mean square over all directions is ``|shN|^2 / (4 pi)``; its
  root, in RGB units, is how far the colour moves with the view on average. Times the
  Gaussian's significance it is the colour error (pixel-weighted) that dropping its SH bands
  costs, to first order.

Significance may be measured on a subset of the views (:func:`view_subset`): evenly spaced, a
different one each pruning round, so that every view counts over the rounds.

Ties go in index order. Pruning never removes every Gaussian; ``sh_drop = 1`` drops every SH band.
"""

import math
from typing import List, Optional, Sequence

import torch
from torch import Tensor

def view_subset(cameras: Sequence, count: int, round: int = 0) -> List:
    """At most ``count`` of ``cameras`` (0: all), every ``ceil(len / count)``-th one starting at
    ``round`` modulo that stride: successive rounds take disjoint subsets until all were used."""
    cameras = list(cameras)
    if count <= 0 or count >= len(cameras):
        return cameras
    stride = -(-len(cameras) // count)
    return cameras[round % stride::stride][:count]


def footprint_weight(splats) -> Tensor:
    """``[N]`` importance of each Gaussian for its codewords: ``sigmoid(opacity)`` times its
    footprint, the area ``(s_x s_y s_z)^(2/3)`` of a sphere of its volume (world units squared),
    normalised to mean 1 (gsplat PR #1063 weights SH k-means by opacity x footprint)."""
    w = torch.sigmoid(splats["opacities"].detach().flatten().float()) * torch.exp(
        splats["scales"].detach().float().sum(dim=-1) * (2.0 / 3.0))  # [N]
    return w / w.mean().clamp_min(1e-30)


def view_dependence(shN: Tensor) -> Tensor:
    """RMS over directions of the colour the SH bands above 0 add: ``[N, K-1, 3]`` -> ``[N]``
    (RGB units; the mean over the three channels)."""
    if shN.numel() == 0:
        return torch.zeros(shN.shape[0], device=shN.device)
    return torch.sqrt(shN.detach().float().pow(2).sum(dim=1).mean(dim=-1) / (4 * math.pi))


def lowest(scores: Tensor, count: int, keep_one: bool = True) -> Tensor:
    """``[N]`` bool mask of the ``count`` lowest ``scores`` (at least 0, at most N - 1 with
    ``keep_one``, else N)."""
    n = scores.shape[0]
    count = max(0, min(int(count), n - 1 if keep_one else n))
    mask = torch.zeros(n, dtype=torch.bool, device=scores.device)
    if count:
        mask[torch.argsort(scores, stable=True)[:count]] = True
    return mask


def prune_count(n: int, fraction: float, budget: int) -> int:
    """How many of ``n`` Gaussians to remove for a ``fraction`` (0..1) and/or a ``budget``
    (Gaussians kept at most; 0 = none): the larger of the two demands."""
    by_fraction = int(round(fraction * n)) if fraction > 0 else 0
    by_budget = max(0, n - budget) if budget > 0 else 0
    return max(by_fraction, by_budget)


def sh_drop_mask(shN: Tensor, significance: Optional[Tensor], fraction: float) -> Tensor:
    """``[N]`` bool: the Gaussians whose SH bands go, the ``fraction`` (of all N) with the
    least view-dependent colour times ``significance [N]`` (None: view dependence alone)."""
    score = view_dependence(shN)
    if significance is not None:
        score = score * significance.float()
    return lowest(score, int(round(fraction * shN.shape[0])), keep_one=False)
