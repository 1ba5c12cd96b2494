"""The common quantizer interface.

A quantizer maps vectors ``[..., D]`` to integer codes ``[..., M]`` (one index per codebook or
stage) and back. Codebooks are registered buffers (or parameters) named ``codebook_0`` ...
``codebook_{M-1}``, so ``state_dict()`` / ``load_state_dict()`` carry them, and the training plugin
may read or overwrite them in place (``quantizer.codebooks[m].copy_(...)``).

Subclasses implement ``_fit``, ``_encode`` and ``_decode`` on 2-D ``[N, D]`` tensors; the public
methods accept any number of leading dimensions. On CPU, ``fit`` / ``encode`` / ``refit`` run their
ops single-threaded and split the heavy passes over rows across threads (:mod:`.parallel`).
"""

from typing import ClassVar, List, Optional, Sequence

import torch
from torch import Tensor, nn

from ..bits import bits_for  # noqa: F401  (re-exported: gs_vq.quant.bits_for)
from ..errors import GsVqError
from .parallel import cpu_sharded


class _StraightThrough(torch.autograd.Function):
    """Forward: ``q`` itself; backward: the incoming gradient goes to ``x`` unchanged."""

    @staticmethod
    def forward(ctx, q: Tensor, x: Tensor) -> Tensor:
        return q.view_as(q)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return None, grad


def straight_through(q: Tensor, x: Tensor) -> Tensor:
    """Value exactly ``q`` [..., D], gradient exactly the identity to ``x`` [..., D] (same shape).

    The usual ``x + (q - x).detach()`` costs two passes over the tensor forward and may differ
    from ``q`` in the last bit; this costs none.
    """
    if q.shape != x.shape:
        raise GsVqError(f"straight_through: shapes differ, {tuple(q.shape)} vs {tuple(x.shape)}")
    return _StraightThrough.apply(q.to(x.dtype), x)


class Quantizer(nn.Module):
    """Base class: ``fit``, ``encode``, ``decode``, straight-through ``forward``.

    Attributes:
        dim: length D of the vectors.
        fitted: bool buffer, set once the codebooks hold trained values.
    """

    # How codes decode, declared for the VQ plugin and compressed.ply alike (see
    # gs_vq.io.compressed.decode_codes): "sum" of the selected codewords (VQ, RVQ, AQ), "concat" of
    # them (PQ; a scalar grid is the concatenation of its 1-D per-axis codebooks), or None when the
    # values are not a function of the codebooks alone (soft indices).
    decode_rule: ClassVar[Optional[str]] = None

    def __init__(self, dim: int):
        super().__init__()
        if int(dim) < 1:
            raise GsVqError(f"quantizer dim must be >= 1, got {dim}")
        self.dim = int(dim)
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self._seen_fitted = False  # host copy of ``fitted`` once it was read True (no device sync)

    # ---- codebooks -------------------------------------------------------------------------
    def _register_codebooks(self, shapes: Sequence[Sequence[int]], trainable: bool = False) -> None:
        """Create ``codebook_m`` (zeros) for each shape, as buffers or as parameters."""
        self.num_codebooks = len(shapes)
        for m, shape in enumerate(shapes):
            table = torch.zeros(*shape)
            if trainable:
                self.register_parameter(f"codebook_{m}", nn.Parameter(table))
            else:
                self.register_buffer(f"codebook_{m}", table)

    @property
    def codebooks(self) -> List[Tensor]:
        """The M codebooks, ``[K_m, d_m]`` each (the tensors themselves: editable in place)."""
        return [getattr(self, f"codebook_{m}") for m in range(self.num_codebooks)]

    @property
    def codebook_sizes(self) -> List[int]:
        """Number of entries ``K_m`` of each codebook."""
        return [int(c.shape[0]) for c in self.codebooks]

    @property
    def bits_per_vector(self) -> int:
        """Bits of one vector's codes: sum over codebooks of ``ceil(log2 K_m)``."""
        return sum(bits_for(k) for k in self.codebook_sizes)

    @torch.no_grad()
    def set_codebooks(self, tables: Sequence[Tensor]) -> None:
        """Overwrite the codebooks in place (shapes must match) and mark the quantizer fitted."""
        if len(tables) != self.num_codebooks:
            raise GsVqError(f"expected {self.num_codebooks} codebooks, got {len(tables)}")
        for mine, new in zip(self.codebooks, tables):
            if mine.shape != new.shape:
                raise GsVqError(f"codebook shape {tuple(new.shape)} != {tuple(mine.shape)}")
            mine.copy_(new)
        self.fitted.fill_(True)

    # ---- shape handling --------------------------------------------------------------------
    def _flat(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.dim:
            name = type(self).__name__
            raise GsVqError(f"{name} expects [..., {self.dim}], got {tuple(x.shape)}")
        return x.reshape(-1, self.dim)

    def _require_fitted(self) -> None:
        """Raise unless fitted. ``fitted`` is read from the device once; after that the host copy
        answers, so the training plugin's per-step codebook update makes no CUDA sync here."""
        if self._seen_fitted:
            return
        if not bool(self.fitted):
            raise GsVqError(f"{type(self).__name__} is not fitted: call fit(x) first")
        self._seen_fitted = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self._seen_fitted = False  # the loaded ``fitted`` may be False
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ---- public API ------------------------------------------------------------------------
    @torch.no_grad()
    @cpu_sharded
    def fit(self, x: Tensor) -> "Quantizer":
        """Train the codebooks on ``x [..., D]``; returns ``self``."""
        x2 = self._flat(x)
        if x2.shape[0] == 0 or not bool(torch.isfinite(x2).all()):
            raise GsVqError(f"{type(self).__name__}.fit needs a non-empty, finite [N, D] tensor")
        self._fit(x2)
        self.fitted.fill_(True)
        return self

    @torch.no_grad()
    @cpu_sharded
    def encode(self, x: Tensor) -> Tensor:
        """Codes ``[..., M]`` int64 of ``x [..., D]``."""
        self._require_fitted()
        codes = self._encode(self._flat(x))
        return codes.reshape(*x.shape[:-1], codes.shape[-1])

    def decode(self, codes: Tensor) -> Tensor:
        """Reconstruction ``[..., D]`` of codes ``[..., M]``."""
        flat = codes.reshape(-1, codes.shape[-1]).long()
        return self._decode(flat).reshape(*codes.shape[:-1], self.dim)

    @torch.no_grad()
    def quantize(self, x: Tensor) -> Tensor:
        """``decode(encode(x))`` without gradient."""
        return self.decode(self.encode(x))

    def forward(self, x: Tensor) -> Tensor:
        """Quantized ``x`` whose gradient passes straight through to ``x`` (identity Jacobian)."""
        return straight_through(self.quantize(x), x)

    @torch.no_grad()
    def mse(self, x: Tensor) -> float:
        """Mean squared reconstruction error per coordinate."""
        x2 = self._flat(x).float()
        return float((self.quantize(x2) - x2).square().mean())

    # ---- updates used by the training plugin -------------------------------------------------
    @torch.no_grad()
    @cpu_sharded
    def update_codebooks_from_assignments(self, x: Tensor, codes: Tensor, weights: Optional[Tensor] = None) -> None:
        """Set every code to the mean of its members' targets, keeping codes without members.

        The target of a vector is the vector itself (VQ / PQ sub-vector) or, for sums of codewords
        (RVQ / AQ), the vector minus the other codebooks' codewords (one block coordinate step).
        ``weights [N]`` (>= 0) make the means weighted (importance-weighted k-means); scalar
        grids stay uniform either way.
        """
        self._require_fitted()
        if weights is not None:
            weights = weights.reshape(-1).float()
        self._update_from_assignments(self._flat(x).float(), codes.reshape(-1, codes.shape[-1]), weights)

    @torch.no_grad()
    @cpu_sharded
    def refit(self, x: Tensor, iters: int = 5) -> "Quantizer":
        """A few training iterations warm-started from the current codebooks."""
        if not bool(self.fitted):
            return self.fit(x)
        self._refit(self._flat(x).float(), iters)
        return self

    # ---- to implement ----------------------------------------------------------------------
    def _fit(self, x: Tensor) -> None:
        raise NotImplementedError

    def _encode(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _decode(self, codes: Tensor) -> Tensor:
        raise NotImplementedError

    def _update_from_assignments(self, x: Tensor, codes: Tensor, weights: Optional[Tensor] = None) -> None:
        raise NotImplementedError

    def _refit(self, x: Tensor, iters: int) -> None:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"dim={self.dim}, codebook_sizes={self.codebook_sizes}, bits={self.bits_per_vector}"
