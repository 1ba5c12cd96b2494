"""One quantized attribute: a ``gs_vq.quant`` quantizer plus how its codes decode.

The plugin decodes codes with :func:`gs_vq.io.compressed.decode_codes` (the file's rule) rather
than ``quantizer.decode``, so the trained model and the loaded compressed.ply evaluate the same
floating-point expression. Which rule a quantizer follows is checked once after its first fit:
``sum`` (VQ, RVQ, AQ), ``concat`` (PQ), or, for anything else with one index per vector, a
materialised table ``decode(0..K-1)``.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from ..errors import GsVqError
from ..io.compressed import decode_codes


@dataclass
class Slot:
    """A quantized splat attribute and its columns in the plugin's code table."""

    name: str                     # splat key
    shape: Tuple[int, ...]        # per-Gaussian shape in the splats
    quantizer: Any                # gs_vq.quant.Quantizer
    start: int                    # first column of its codes in the code table
    num_codes: int                # M: indices per Gaussian
    precision: str                # codebook storage in compressed.ply
    spec: Dict[str, Any] = field(default_factory=dict)  # build_quantizer spec it was built from
    combine: str = "sum"          # "sum" | "concat" | "table"
    frozen: Optional[List[Tensor]] = field(default=None)  # final tables once snapped

    @property
    def cols(self) -> slice:
        return slice(self.start, self.start + self.num_codes)

    def tables(self) -> List[Tensor]:
        """Codebook tables in the file's layout: M x [K_m, d_m] (one [K, d] table for "table")."""
        if self.frozen is not None:
            return self.frozen
        if self.combine == "table":
            k = int(self.quantizer.codebook_sizes[0])
            idx = torch.arange(k, device=self._device())[:, None]
            return [self.quantizer.decode(idx).detach()]
        return [cb.detach() for cb in self.quantizer.codebooks]

    def file_combine(self) -> str:
        return "sum" if self.combine == "table" else self.combine

    def decode(self, codes: Tensor) -> Tensor:
        """[N, M] codes -> [N, d] values."""
        return decode_codes(self.tables(), codes, self.file_combine())

    def _device(self) -> torch.device:
        for t in self.quantizer.state_dict().values():
            if isinstance(t, Tensor):
                return t.device
        return torch.device("cpu")

    def choose_combine(self, codes: Tensor, spec_type: str) -> None:
        """Pick the decoding rule that reproduces ``quantizer.decode`` on ``codes`` [N, M]."""
        reference = self.quantizer.decode(codes).detach()
        candidates = ["concat", "sum"] if spec_type == "pq" else ["sum", "concat"]
        for combine in candidates + ["table"]:
            if combine == "table" and codes.shape[1] != 1:
                continue
            self.combine = combine
            try:
                mine = self.decode(codes)
            except (RuntimeError, IndexError, ValueError):
                continue
            if mine.shape == reference.shape and torch.allclose(mine, reference, atol=1e-5, rtol=1e-4):
                return
        raise GsVqError(f"vq.attributes.{self.name}: quantizer type {spec_type!r} decodes in a way "
                        "compressed.ply cannot store (not a sum or concatenation of codewords)")

    def snap(self) -> None:
        """Freeze the tables at their storage precision (float16 rounding is idempotent)."""
        tables = [t.detach().clone().float() for t in self.tables()]
        if self.precision == "float16":
            tables = [t.half().float() for t in tables]
        self.frozen = tables

    def state(self) -> Dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "start": self.start,
                "num_codes": self.num_codes, "precision": self.precision, "combine": self.combine,
                "spec": dict(self.spec),
                "quantizer": self.quantizer.state_dict(),
                "frozen": [t.cpu() for t in self.frozen] if self.frozen is not None else None}
