"""Quantizers from config dicts (as read from YAML): ``build_quantizer({"type": "pq", ...})``."""

import inspect
from typing import Any, Dict, Mapping, Set

from ..errors import GsVqError
from ..fields import NONNEG, POSITIVE, Int, Num
from .additive import AdditiveQuantizer
from .base import Quantizer
from .product import ProductQuantizer, VectorQuantizer
from .residual import ResidualQuantizer
from .scalar import ScalarQuantizer
from .soft import SoftIndexQuantizer

QUANTIZERS: Dict[str, type] = {
    "vq": VectorQuantizer,
    "pq": ProductQuantizer,
    "rvq": ResidualQuantizer,
    "rq": ResidualQuantizer,
    "aq": AdditiveQuantizer,
    "lsq": AdditiveQuantizer,
    "fsq": ScalarQuantizer,
    "sq": ScalarQuantizer,
    "soft": SoftIndexQuantizer,
}

# the constructor options of the quantizers, as a config's vq.attributes entries give them (gs_vq.fields)
OPTION_RULES = {
    "codebook_size": Int(2), "levels": Int(2, items=True), "num_stages": Int(1), "num_codebooks": Int(1),
    "num_subvectors": Int(1), "beam_size": Int(1), "iters": Int(1), "encode_ils_rounds": Int(0),
    "num_vectors": Int(0), "temperature": POSITIVE, "clip_quantile": Num(0.0, 0.5, open_high=True),
    "clip_low": Num(0.0, 1.0, open_high=True), "chunk_size": Int(1), "batch_size": Int(1),
    "init_max_points": Int(1), "max_points": Int(1), "refine_iters": Int(0), "init_iters": Int(1),
    "icm_sweeps": Int(1), "num_perturb": Int(0), "ridge": NONNEG, "seed": Int(0),
}

_FIXED = {VectorQuantizer: {"num_subvectors"}}  # options a subclass sets for its base itself


def accepted_options(kind: str) -> Set[str]:
    """Constructor options of quantizer type ``kind``: its ``__init__``'s parameters and, where that
    forwards ``**kwargs``, its base classes' (less those it passes itself, e.g. VectorQuantizer's
    ``num_subvectors=1``)."""
    cls = QUANTIZERS[kind]
    names = set(inspect.signature(cls.__init__).parameters)
    for base in cls.__mro__[1:]:
        if "kwargs" not in names:
            break
        if "__init__" in vars(base):
            names |= set(inspect.signature(base.__init__).parameters) - _FIXED.get(cls, set())
    return names - {"self", "args", "kwargs"}


def build_quantizer(config: Mapping[str, Any]) -> Quantizer:
    """Construct a quantizer from ``{"type": name, **constructor arguments}``.

    Types: ``vq``, ``pq``, ``rvq`` (``rq``), ``aq`` (``lsq``), ``fsq`` (``sq``), ``soft``. The other
    keys are the class's constructor arguments (``dim`` is required), e.g.
    ``{"type": "pq", "dim": 45, "num_subvectors": 5, "codebook_size": 256}``.
    """
    params = dict(config)
    kind = params.pop("type", None)
    if kind not in QUANTIZERS:
        raise GsVqError(f"unknown quantizer type {kind!r}: expected one of {', '.join(QUANTIZERS)}")
    cls = QUANTIZERS[kind]
    unknown = sorted(set(params) - accepted_options(kind))
    if unknown:
        raise GsVqError(f"quantizer {kind!r} has no option(s) {', '.join(unknown)}")
    if "dim" not in params:
        raise GsVqError(f"quantizer {kind!r} needs 'dim'")
    return cls(**params)
