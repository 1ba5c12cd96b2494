"""What one kind of section of compressed.ply is: :class:`SectionCodec`, and what it works on.

The writer hands every kind the same :class:`Job` (the scene in file order and the choices made
for the whole file) and writes the :class:`Section` list each returns; the reader hands each
section back to its kind's ``decode`` with the header entry; the header check and the bits
report ask the kind too. A kind's header entry is::

    {"name": ..., "kind": ..., <fields>, "bytes": len(payload), "params": {...}}

``params`` is a small JSON-able dict (the codec tags that won, shapes, sub-stream sizes);
``fields`` are the entry's own keys (per-attribute kinds: ``attr``, ``shape``, then their own).
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from torch import Tensor

from ...errors import GsVqError
from ..check import NAME, RESERVED, Check
from ..grid import PositionGrid
from ..scene import CompressedScene

Params = Dict[str, Any]
Entry = Dict[str, Any]  # a section's header entry (name, kind, fields, bytes, params)


@dataclass
class Job:
    """What the writer gives every section kind (arrays in scene order; ``order`` sorts them)."""

    scene: CompressedScene
    order: np.ndarray              # [N] int64: file row i is scene row order[i] (Morton order)
    means: np.ndarray              # [N, 3] float32 positions, finite
    opacities: np.ndarray          # [N] float32 logits, finite
    grid: Optional[PositionGrid]   # None: positions stored as float32
    opacity_bits: int              # 1..16 bins of sigmoid(opacity), or 32 (float32)
    compact_codebooks: bool        # drop unused codebook entries

    @property
    def n(self) -> int:
        return int(self.order.shape[0])

    @property
    def order_t(self) -> Tensor:
        return torch.from_numpy(self.order)

    def rows(self, value: Tensor, dtype) -> np.ndarray:
        """[N, ...] per-Gaussian tensor -> [N, W] ``dtype`` array in file order (W values a row)."""
        width = int(np.prod(tuple(value.shape[1:])))
        return value.detach().cpu().numpy().astype(dtype).reshape(self.n, width)[self.order]


@dataclass
class Section:
    """One section to write: its element name, header params, payload and own header fields."""

    name: str
    params: Params
    payload: bytes
    fields: Dict[str, Any] = field(default_factory=dict)


class SectionCodec:
    """One kind of section: how it is written, read, checked and counted.

    ``kind`` is the header's ``kind``. With ``prefix`` (per-attribute kinds) a file holds one
    section per attribute, named ``<prefix>_<attr>``, whose entry carries ``attr`` and ``shape``
    (the per-Gaussian shape, validated before ``check`` is called); without, exactly one.
    """

    kind: str = ""
    prefix: Optional[str] = None

    def encode(self, job: Job) -> List[Section]:
        """The sections of this kind for ``job`` (GsVqError on what the format cannot store)."""
        raise NotImplementedError

    def decode(self, entry: Entry, payload: bytes, n: int, scene: CompressedScene) -> None:
        """Store one section's values (``n`` Gaussians) in ``scene``; ValueError on bad input."""
        raise NotImplementedError

    def check(self, c: Check, entry: Entry, params: Params, where: str, size: int) -> None:
        """Validate this kind's fields and params (``size``: values per Gaussian, 0 if none)."""
        raise NotImplementedError

    def bits(self, entry: Entry, n: int) -> Dict[str, float]:
        """Bits per Gaussian of this section's parts (default: the whole section, by its name)."""
        return {entry["name"]: 8.0 * entry["bytes"] / n}

    def attribute_section(self, attr: str, shape, params: Params, payload: bytes, **fields) -> Section:
        """The section of attribute ``attr`` (per-Gaussian ``shape``)."""
        if not NAME.match(attr) or attr in RESERVED:
            raise GsVqError(f"attribute name {attr!r} must be alphanumeric (and not means/opacities)")
        return Section(f"{self.prefix}_{attr}", params, payload, {"attr": attr, "shape": list(shape), **fields})
