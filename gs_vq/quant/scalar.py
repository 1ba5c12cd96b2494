"""Scalar quantization on a fixed uniform grid per dimension (FSQ-style), straight-through."""

from typing import List, Optional, Sequence, Union

import torch
from torch import Tensor

from ..errors import GsVqError
from .base import Quantizer


def _per_dim(value: Union[float, int, Sequence], dim: int, name: str) -> Tensor:
    t = torch.as_tensor(value, dtype=torch.float64).flatten()
    if t.numel() == 1:
        t = t.expand(dim)
    if t.numel() != dim:
        raise GsVqError(f"{name} needs 1 or {dim} values, got {t.numel()}")
    return t.clone()


class ScalarQuantizer(Quantizer):
    """Dimension ``d`` is rounded to one of ``L_d`` evenly spaced values in ``[low_d, high_d]``.

    Codes are ``[N, D]`` (one "codebook" of ``L_d`` values per dimension), so
    ``bits_per_vector = sum_d ceil(log2 L_d)``. The grid is usable without ``fit`` (default range
    ``[-1, 1]``, as in FSQ); ``fit(x)`` sets the range per dimension to the data's quantiles
    ``clip_quantile`` and ``1 - clip_quantile`` (min and max for 0). Values outside are clamped.

    ``clip_low`` raises only the bottom of the range, to that quantile: for log-scales, whose
    lowest values are degenerate (flat or sub-pixel) axes that render the same when clamped,
    the levels then go where the size matters. On the plain lego model (post hoc, bench.rd's
    scenes) 16 levels per axis cost -1.38 dB over [min, max] and -0.22 dB with ``clip_low=0.1``.

    Args:
        dim: D.
        levels: ``L`` (>= 2) for every dimension, or one per dimension.
        low, high: grid range, one value or one per dimension.
        clip_quantile: quantile used by ``fit`` for the range (both ends).
        clip_low: quantile used by ``fit`` for the bottom of the range (overrides
            ``clip_quantile`` there when larger).
    """

    decode_rule = "concat"

    def __init__(self, dim: int, levels=16, low=-1.0, high=1.0, clip_quantile: float = 0.0,
                 clip_low: float = 0.0):
        super().__init__(dim)
        lv = _per_dim(levels, self.dim, "levels").long()
        if bool((lv < 2).any()):
            raise GsVqError("scalar quantizer levels must be >= 2")
        if not 0.0 <= clip_quantile < 0.5:
            raise GsVqError(f"clip_quantile must be in [0, 0.5), got {clip_quantile}")
        if not 0.0 <= clip_low < 1.0:
            raise GsVqError(f"clip_low must be in [0, 1), got {clip_low}")
        self.clip_quantile, self.clip_low = float(clip_quantile), float(clip_low)
        self.num_codebooks = self.dim
        self.register_buffer("levels", lv)  # [D]
        self.register_buffer("low", _per_dim(low, self.dim, "low").float())  # [D]
        self.register_buffer("high", _per_dim(high, self.dim, "high").float())  # [D]
        self.fitted.fill_(True)

    @property
    def step(self) -> Tensor:
        """``[D]`` grid spacing."""
        return (self.high - self.low).clamp_min(1e-12) / (self.levels - 1).float()

    @property
    def codebooks(self) -> List[Tensor]:
        """Per dimension, the ``[L_d, 1]`` grid values (computed; edit ``low``/``high`` instead)."""
        step = self.step
        return [
            (self.low[d] + torch.arange(int(self.levels[d]), device=step.device) * step[d])[:, None]
            for d in range(self.dim)
        ]

    def set_codebooks(self, tables) -> None:
        raise GsVqError("a scalar quantizer's grid is set through fit(x) or its low/high buffers")

    def _fit(self, x: Tensor) -> None:
        x = x.to(self.low.device).float()
        bottom = max(self.clip_quantile, self.clip_low)
        if bottom == 0.0:
            low, high = x.amin(dim=0), x.amax(dim=0)
        else:
            cap = min(x.shape[0], (1 << 24) // self.dim)  # torch.quantile's size limit
            rows = x[torch.linspace(0, x.shape[0] - 1, cap, device=x.device).long()]
            q = torch.tensor([bottom, 1 - self.clip_quantile], device=x.device)
            low, high = torch.quantile(rows, q, dim=0)
        self.low.copy_(low)
        self.high.copy_(torch.maximum(high, low + 1e-6))

    def _encode(self, x: Tensor) -> Tensor:
        x = x.to(self.low.device).float()
        q = ((x - self.low) / self.step).round()
        return torch.minimum(q.clamp_min(0), (self.levels - 1).float()).long()  # [N, D]

    def _decode(self, codes: Tensor) -> Tensor:
        if codes.shape[-1] != self.dim:
            raise GsVqError(f"expected codes [..., {self.dim}], got {tuple(codes.shape)}")
        return self.low + codes.to(self.low.device).float() * self.step

    def _update_from_assignments(self, x: Tensor, codes: Tensor, weights: Optional[Tensor] = None) -> None:
        """No-op: the grid stays uniform (use ``refit`` to adapt its range)."""

    def _refit(self, x: Tensor, iters: int) -> None:
        self._fit(x)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, levels={self.levels.tolist()}, bits={self.bits_per_vector}"


FSQ = ScalarQuantizer
