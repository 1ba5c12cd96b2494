"""One quantized attribute: a ``gs_vq.quant`` quantizer plus its columns in the code table.

The plugin decodes codes with :func:`gs_vq.io.compressed.decode_codes` and the rule the quantizer
declares (``Quantizer.decode_rule``: ``sum`` for VQ, RVQ, AQ; ``concat`` for PQ and scalar grids),
rather than ``quantizer.decode``, so the trained model and the loaded compressed.ply evaluate the
same floating-point expression.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from torch import Tensor

from ..errors import GsVqError
from ..io.compressed import decode_codes
from ..io.scene import round_mantissa, round_step
from ..quant import build_quantizer


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
    combine: str = "sum"          # the quantizer's decode_rule: "sum" | "concat"
    final_tables: Optional[List[Tensor]] = field(default=None)  # the tables once snapped
    mantissa: int = 10            # float16 mantissa bits kept when snapped (10: plain float16)
    resolution: float = 0.0       # float16 tables: first rounded to multiples of this power of two (0: not)
    rate_scale: Optional[float] = None  # ECVQ: squared error per vector a bit is priced against
    # (the plain assignment's distortion at the first rate-constrained refresh, then fixed)

    @property
    def cols(self) -> slice:
        return slice(self.start, self.start + self.num_codes)

    @staticmethod
    def rule_of(name: str, quantizer: Any) -> str:
        """The quantizer's declared decoding rule, or a one-line error if the file cannot store it."""
        rule = getattr(quantizer, "decode_rule", None)
        if rule not in ("sum", "concat"):
            raise GsVqError(f"vq.attributes.{name}: {type(quantizer).__name__} decodes in a way compressed.ply "
                            "cannot store (not a sum or concatenation of codewords)")
        return rule

    def tables(self) -> List[Tensor]:
        """Codebook tables in the file's layout: M x [K_m, d_m]."""
        if self.final_tables is not None:
            return self.final_tables
        return [cb.detach() for cb in self.quantizer.codebooks]

    def decode(self, codes: Tensor) -> Tensor:
        """[N, M] codes -> [N, d] values."""
        return decode_codes(self.tables(), codes, self.combine)

    def snap(self) -> None:
        """Freeze the tables at their storage precision (idempotent): float32, or float16 with
        ``mantissa`` bits kept, after rounding to multiples of ``resolution`` when set (the dropped bits
        are zero, which compressed.ply stores almost free)."""
        tables = [t.detach().clone().float() for t in self.tables()]
        if self.precision == "float16":
            if self.resolution > 0:
                tables = [round_step(t, self.resolution) for t in tables]
            tables = [round_mantissa(t, self.mantissa).to(t.device) for t in tables]
        self.final_tables = tables

    def state(self) -> Dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "start": self.start,
                "num_codes": self.num_codes, "precision": self.precision, "combine": self.combine,
                "spec": dict(self.spec),
                "quantizer": self.quantizer.state_dict(),
                "final_tables": [t.cpu() for t in self.final_tables] if self.final_tables is not None else None,
                "mantissa": self.mantissa, "resolution": self.resolution, "rate_scale": self.rate_scale}

    @classmethod
    def from_state(cls, s: Dict[str, Any], device) -> "Slot":
        """Inverse of :meth:`state`: rebuild the quantizer from its spec and load its tensors."""
        quantizer = build_quantizer(s["spec"]).to(device)
        quantizer.load_state_dict(s["quantizer"])
        final = s.get("final_tables", s.get("frozen"))  # "frozen" and "step": older checkpoints
        final = [t.to(device) for t in final] if final is not None else None
        return cls(s["name"], tuple(s["shape"]), quantizer, int(s["start"]), int(s["num_codes"]),
                   s["precision"], dict(s["spec"]), cls.rule_of(s["name"], quantizer), final,
                   int(s.get("mantissa", 10)), float(s.get("resolution", s.get("step", 0.0))), s.get("rate_scale"))
