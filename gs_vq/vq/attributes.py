"""Splat attributes seen as the [N, d] vectors that get quantized, and back.

``sh0 [N,1,3]`` -> [N, 3], ``shN [N,K-1,3]`` -> [N, 3(K-1)], ``scales [N,3]`` (log) as is,
``features [N,F]`` as is, and ``quats [N,4]`` normalised with a non-negative real part
(``q`` and ``-q`` are the same rotation, so this halves what the codebook must cover; the
rasterizer normalises quaternions anyway). All views are differentiable.
"""

from typing import Tuple

import torch
from torch import Tensor


def canonical_quats(quats: Tensor) -> Tensor:
    """[N, 4] wxyz -> unit quaternions with w >= 0 (same rotations)."""
    norm = torch.linalg.vector_norm(quats, dim=-1, keepdim=True).clamp_min(1e-12)  # [N, 1], as F.normalize
    return quats / torch.where(quats[:, :1].detach() < 0, -norm, norm)  # one pass: divide by +-|q|


def to_vectors(name: str, value: Tensor) -> Tensor:
    """Splat tensor ``value`` [N, ...] of attribute ``name`` -> [N, d] vectors to quantize."""
    if name == "quats":
        return canonical_quats(value)
    return value.reshape(value.shape[0], -1)


def from_vectors(vectors: Tensor, shape: Tuple[int, ...]) -> Tensor:
    """[N, d] vectors -> [N, *shape] splat tensor (``shape`` without the leading N)."""
    return vectors.reshape(vectors.shape[0], *shape)
