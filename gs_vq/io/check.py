"""Field checks of a compressed.ply header: each problem is one line naming the field.

:class:`Check` is what :func:`gs_vq.io.header.validate_header` and every section kind's
``check`` (:mod:`gs_vq.io.sections`) use, so that all of them fail the same way.
"""

import math
import re
from typing import Mapping

from ..errors import GsVqError

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,31}$")  # attribute names
RESERVED = ("means", "opacities")  # names an attribute may not take
MAX_COUNT = 1 << 28        # Gaussians (268M; far above any scene this trains)
MAX_VALUES = 1 << 16       # values per Gaussian of one attribute
MAX_TABLE = 1 << 26        # codebook entries x dims


class Check:
    """Typed reads of header fields; ``fail`` raises ``GsVqError("<what>: corrupt compressed ply
    header (<field> <why>)")``. ``version``: the file's format version (2 or 3)."""

    def __init__(self, what: str, version: int = 2):
        self.what, self.version = what, version

    def fail(self, field: str, why: str) -> None:
        raise GsVqError(f"{self.what}: corrupt compressed ply header ({field} {why})")

    def int(self, d: Mapping, key: str, lo: int, hi: int, where: str) -> int:
        v = d.get(key) if isinstance(d, dict) else None
        if type(v) is not int or not lo <= v <= hi:
            self.fail(f"{where}.{key}", f"must be an integer in [{lo}, {hi}], got {v!r}")
        return v

    def choice(self, d: Mapping, key: str, choices, where: str) -> str:
        v = d.get(key) if isinstance(d, dict) else None
        if not isinstance(v, str) or v not in choices:
            self.fail(f"{where}.{key}", f"must be one of {', '.join(choices)}, got {v!r}")
        return v

    def floats(self, d: Mapping, key: str, where: str, positive: bool = False) -> None:
        v = d.get(key)
        ok = isinstance(v, list) and len(v) == 3 and all(
            type(x) in (int, float) and math.isfinite(x) and (x > 0 or not positive) for x in v)
        if not ok:
            self.fail(f"{where}.{key}", "must be 3 finite" + (" positive" if positive else "") + " numbers")

    def shape(self, d: Mapping, where: str) -> int:
        v = d.get("shape")
        if not (isinstance(v, list) and len(v) <= 4 and all(type(x) is int and x >= 1 for x in v)):
            self.fail(f"{where}.shape", f"must be a list of up to 4 positive integers, got {v!r}")
        size = math.prod(v)
        if size > MAX_VALUES:
            self.fail(f"{where}.shape", f"holds {size} values per Gaussian (at most {MAX_VALUES})")
        return size
