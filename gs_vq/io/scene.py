"""What a compressed.ply holds, decoded: :class:`CompressedScene` and its coded attributes.

Shared by every version of the file format and by the VQ plugin (:func:`decode_codes` is the one
decoding rule of coded vectors).
"""

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from . import streams as S

LOSSLESS = 32  # pos_bits / opacity_bits value meaning "store float32 as is"
COMBINE_RULES = ("sum", "concat")
PRECISIONS = ("float32", "float16")


def decode_codes(codebooks: Sequence[Tensor], codes: Tensor, combine: str) -> Tensor:
    """Values of coded vectors: the one decoding rule shared by the file and the VQ plugin.

    Args:
        codebooks: M tensors [K_m, d_m].
        codes: [N, M] integer indices.
        combine: "sum" (VQ, residual and additive VQ: sum_m C_m[c_m], added in order m = 0..M-1)
            or "concat" (product quantization: [C_0[c_0], ..., C_{M-1}[c_{M-1}]]).
    Returns:
        [N, d] with d = d_0 (sum) or sum_m d_m (concat).
    """
    if combine not in COMBINE_RULES:
        raise ValueError(f"unknown combine rule {combine!r}")
    if len(codebooks) > 1 and len({cb.shape[1] for cb in codebooks}) == 1:  # one gather into the stacked tables
        offsets = torch.tensor([0] + [cb.shape[0] for cb in codebooks[:-1]], device=codes.device).cumsum(0)
        rows, table = codes.long() + offsets, torch.cat(list(codebooks))  # [N, M], [sum K_m, d]
        if combine == "sum":  # gather and add in one pass, in order m = 0..M-1
            return F.embedding_bag(rows, table, mode="sum")
        return F.embedding(rows, table).reshape(codes.shape[0], -1)  # [N, M * d]
    parts = [cb.index_select(0, codes[:, m].contiguous()) for m, cb in enumerate(codebooks)]
    return torch.cat(parts, dim=-1) if combine == "concat" else parts[0]


@dataclass
class CodedAttribute:
    """One per-Gaussian attribute stored as indices into codebooks."""

    name: str                    # splat key: "sh0", "shN", "scales", "quats", "features", ...
    shape: Tuple[int, ...]       # per-Gaussian shape in the splats, e.g. (1, 3) for sh0
    codebooks: List[Tensor]      # M x [K_m, d_m] float32
    codes: Tensor                # [N, M] int64
    combine: str = "sum"         # see decode_codes
    precision: str = "float32"   # codebook storage: "float32" or "float16" (values rounded)
    present: Optional[Tensor] = None  # [N] bool: rows that carry codes (None: all); the others
    # decode to zeros and store no indices (e.g. shN of Gaussians whose SH degree is 0)

    def decode(self) -> Tensor:
        """[N, *shape] float32 values (zeros where ``present`` is False)."""
        flat = decode_codes(self.codebooks, self.codes, self.combine)
        if self.present is not None:
            flat = flat * self.present.to(flat.device, flat.dtype)[:, None]
        return flat.reshape(flat.shape[0], *self.shape)


@dataclass
class CompressedScene:
    """What compressed.ply holds, decoded (Gaussians in the file's order).

    ``ints`` holds extra per-Gaussian integer attributes (e.g. semantic labels, [N] or [N, k]
    int64, values >= 0), entropy-coded losslessly; ``raw`` holds float attributes stored at
    ``raw_precision`` (e.g. a per-Gaussian confidence). Both come back from :meth:`to_splats`
    under their own names.
    """

    means: Tensor                                   # [N, 3] float32
    opacities: Tensor                               # [N] float32 logits
    attributes: List[CodedAttribute]
    raw: Dict[str, Tensor] = field(default_factory=dict)  # unquantized attributes [N, ...]
    raw_precision: str = "float16"                  # how ``raw`` is stored
    meta: Dict[str, Any] = field(default_factory=dict)    # free-form (sh_degree, ...)
    grid: Optional[S.PositionGrid] = None           # position grid (None: lossless)
    opacity_bits: int = 8
    ints: Dict[str, Tensor] = field(default_factory=dict)  # integer attributes [N, ...] int64

    def to_splats(self) -> Dict[str, Tensor]:
        """Decoded splat tensors with gsplat's names (``means``, ``quats``, ``sh0``, ...)."""
        out = {"means": self.means, "opacities": self.opacities}
        out.update({a.name: a.decode() for a in self.attributes})
        out.update(self.raw)
        out.update(self.ints)
        return out


def round_mantissa(values: Tensor, bits: int) -> Tensor:
    """Round float values to float16 with only ``bits`` (0..10) mantissa bits kept (ties away
    from zero; the dropped bits are zero, which the file's byte-plane coders store almost for
    free). Idempotent; ``bits=10`` is plain float16 rounding. Returns float32 values."""
    if not 0 <= bits <= 10:
        raise ValueError(f"float16 mantissa bits must be in 0..10, got {bits}")
    w = values.detach().float().cpu().half().view(torch.int16).to(torch.int32) & 0xFFFF
    drop = 10 - bits
    if drop:
        sign, mag = w & 0x8000, w & 0x7FFF
        finite = mag < 0x7C00
        mag = torch.where(finite, ((mag + (1 << (drop - 1))) >> drop) << drop, mag)
        biggest = (0x7BFF >> drop) << drop  # largest finite value with those bits
        mag = torch.where(finite & (mag >= 0x7C00), torch.full_like(mag, biggest), mag)
        w = sign | mag
    out = w.to(torch.int16).view(torch.float16).float()
    return out.to(values.device).reshape(values.shape)


def is_codebook_step(step: float) -> bool:
    """Whether ``step`` is a power of two in [2**-14, 1] (what :func:`round_step` takes)."""
    return 2.0**-14 <= step <= 1.0 and math.frexp(step)[0] == 0.5


def round_step(values: Tensor, step: float) -> Tensor:
    """Round to the nearest multiple of ``step`` (a power of two, 2**-14..1): fixed point with a
    shared absolute resolution, for codebooks of small values (shN) whose float16 mantissas are
    finer than anything a render shows. Multiples of ``step`` below ``2**11 * step`` are exact in
    float16, and their low mantissa bits are zero. Idempotent; returns float32 values."""
    if not is_codebook_step(step):
        raise ValueError(f"codebook step must be a power of two in [2**-14, 1], got {step}")
    return torch.round(values.detach().float() / step) * step
