"""Pictures of a semantic field: colormapped relevance heatmaps and a PCA colouring of features."""

from typing import Optional, Tuple

import torch
from torch import Tensor

# anchor colours of a perceptually ordered blue -> cyan -> green -> yellow -> red ramp (sRGB, [0, 1])
_RAMP = torch.tensor([
    [0.19, 0.07, 0.23],
    [0.16, 0.44, 0.90],
    [0.10, 0.80, 0.75],
    [0.45, 0.95, 0.30],
    [0.95, 0.80, 0.15],
    [0.95, 0.45, 0.05],
    [0.85, 0.05, 0.05],
])


def colormap(x: Tensor) -> Tensor:
    """``x [...]`` in [0, 1] -> ``[..., 3]`` RGB in [0, 1] (piecewise-linear ramp, dark blue to red)."""
    ramp = _RAMP.to(x.device)
    t = x.float().clamp(0, 1) * (len(ramp) - 1)
    i = t.floor().long().clamp(max=len(ramp) - 2)
    f = (t - i)[..., None]
    return ramp[i] * (1 - f) + ramp[i + 1] * f


def overlay(image: Tensor, score: Tensor, alpha: float = 0.85) -> Tensor:
    """A colormapped ``score [H, W]`` over a dimmed grey version of ``image [H, W, 3]``, opaque
    where the score is high (the object's own colours cannot hide the heatmap)."""
    grey = (0.5 * image.mean(dim=-1, keepdim=True)).expand_as(image)
    a = alpha * score.clamp(0, 1)[..., None]
    return grey * (1 - a) + colormap(score) * a


def pca_basis(codes: Tensor, active: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """PCA of the (active) codebook entries ``codes [K, D]`` -> ``(mean [D], axes [D, 3], lo [3], hi [3])``.

    Decoded features are convex combinations of entries, so projecting onto these axes and scaling
    by the entries' own range gives the same colours in every view.
    """
    ref = codes[active] if active is not None and active.sum() >= 2 else codes
    mean = ref.mean(dim=0)
    _, _, V = torch.linalg.svd(ref - mean, full_matrices=False)  # V [min(K,D), D]
    axes = V[:3].T  # [D, <=3]
    if axes.shape[1] < 3:
        axes = torch.cat([axes, torch.zeros(axes.shape[0], 3 - axes.shape[1], device=axes.device)], dim=1)
    proj = (ref - mean) @ axes  # [K', 3]
    return mean, axes, proj.min(dim=0).values, proj.max(dim=0).values


def pca_colors(weights: Tensor, codes: Tensor, basis) -> Tensor:
    """Entry weights ``[..., K]`` -> ``[..., 3]`` colours: the decoded feature's PCA coordinates."""
    mean, axes, lo, hi = basis
    code_rgb = ((codes - mean) @ axes - lo) / (hi - lo).clamp_min(1e-8)  # [K, 3]
    return (weights @ code_rgb).clamp(0, 1)
