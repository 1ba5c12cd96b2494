"""Structural validation of a version-2 compressed.ply header before any field is used.

The checksum already rules out accidental damage; this check rules out files whose header is
well-formed JSON but inconsistent (a hand edit, a buggy writer): every field has the expected
type and range, shapes agree with the codebooks' combine rule, and every section exists with the
declared size. Each problem is a one-line :class:`GsVqError`.
"""

import math
import re
from typing import Any, Dict, Mapping

from ..errors import GsVqError
from . import streams as S
from .scene import COMBINE_RULES, PRECISIONS

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,31}$")
INT_CODECS = (*S.CODECS, "range", "same", "recent", "delta")
INDEX_CODECS = (*INT_CODECS, "range+ctx", "same+ctx")  # index columns after the first
WORD_CODECS = ("plain", "planes+xz", "planes+zlib", "planes+range")
KINDS = ("positions", "opacities", "coded", "raw", "ints")
MAX_COUNT = 1 << 28        # Gaussians (268M; far above any scene this trains)
MAX_VALUES = 1 << 16       # values per Gaussian of one attribute
MAX_TABLE = 1 << 26        # codebook entries x dims


class _Check:
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


def validate_header(meta: Dict[str, Any], sections: Mapping[str, bytes], what: str,
                    version: int = 2) -> None:
    """Raise a one-line GsVqError unless ``meta`` is a consistent version-2 (or 3) header whose
    sections are exactly those of ``sections`` (name -> payload) with the declared sizes."""
    c = _Check(what, version)
    c.int(meta, "count", 0, MAX_COUNT, "header")
    if not isinstance(meta.get("meta", {}), dict):
        c.fail("header.meta", "must be an object")
    entries = meta.get("sections")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        c.fail("header.sections", "must be a list of objects")
    kinds = [c.choice(e, "kind", KINDS, f"sections[{i}]") for i, e in enumerate(entries)]
    if kinds.count("positions") != 1 or kinds.count("opacities") != 1:
        c.fail("header.sections", "must hold one positions and one opacities section")
    names, attrs = [], set()
    for i, (e, kind) in enumerate(zip(entries, kinds)):
        where = f"sections[{i}]"
        name = e.get("name")
        if not isinstance(name, str) or name not in sections or name in names:
            c.fail(f"{where}.name", f"names no section of the file, got {name!r}")
        names.append(name)
        if c.int(e, "bytes", 0, 1 << 40, where) != len(sections[name]):
            c.fail(f"{where}.bytes", "differs from the section's size")
        p = e.get("params")
        if not isinstance(p, dict):
            c.fail(f"{where}.params", "must be an object")
        if kind in ("coded", "raw", "ints"):
            attr = e.get("attr")
            if not isinstance(attr, str) or not NAME.match(attr) or attr in attrs or \
                    attr in ("means", "opacities"):
                c.fail(f"{where}.attr", f"must be a new alphanumeric name, got {attr!r}")
            attrs.add(attr)
            size = c.shape(e, where)
        _CHECKS[kind](c, e, p, where, size if kind in ("coded", "raw", "ints") else 0)
    if set(names) != set(sections):
        c.fail("header.sections", "do not list every section of the file")


def _check_positions(c: _Check, e, p, where: str, size: int) -> None:
    codec = c.choice(p, "codec", ("float32", "octree", "gaps"), f"{where}.params")
    if codec == "float32":
        c.choice(p, "words", WORD_CODECS, f"{where}.params")
        return
    c.floats(p, "lo", f"{where}.params")
    c.floats(p, "step", f"{where}.params", positive=True)
    c.int(p, "bits", 1, 21, f"{where}.params")
    if "radius" in p or "center" in p:  # a contracted grid (version 3)
        if c.version < 3:
            c.fail(f"{where}.params", "a contracted position grid needs version 3")
        c.floats(p, "center", f"{where}.params")
        radius = p.get("radius")
        if isinstance(radius, bool) or not isinstance(radius, (int, float)) or not 0 < radius < 1e30:
            c.fail(f"{where}.params.radius", f"must be a positive number, got {radius!r}")
    if codec == "gaps":
        c.choice(p, "stream", S.CODECS, f"{where}.params")
        c.int(p, "gap_bits", 1, 64, f"{where}.params")


def _check_opacities(c: _Check, e, p, where: str, size: int) -> None:
    codec = c.choice(p, "codec", ("bins", "float32"), f"{where}.params")
    if codec == "float32":
        if p.get("bits") != 32:
            c.fail(f"{where}.params.bits", "must be 32 for float32 opacities")
        c.choice(p, "stream", WORD_CODECS, f"{where}.params")
    else:
        c.int(p, "bits", 1, 16, f"{where}.params")
        c.choice(p, "stream", INT_CODECS, f"{where}.params")


def _check_coded(c: _Check, e, p, where: str, size: int) -> None:
    combine = c.choice(e, "combine", COMBINE_RULES, where)
    c.choice(e, "precision", PRECISIONS, where)
    c.choice(p, "codec", ("vq",), f"{where}.params")
    books = p.get("codebooks")
    if not isinstance(books, list) or not 1 <= len(books) <= 64:
        c.fail(f"{where}.params.codebooks", "must be a list of 1 to 64 codebooks")
    dims, total = [], 0
    for m, b in enumerate(books):
        at = f"{where}.params.codebooks[{m}]"
        k = c.int(b, "size", 1, MAX_TABLE, at)
        dims.append(c.int(b, "dim", 1, MAX_VALUES, at))
        if k * dims[-1] > MAX_TABLE:
            c.fail(at, f"holds {k * dims[-1]} values (at most {MAX_TABLE})")
        c.choice(b, "table", WORD_CODECS, at)
        c.choice(b, "index", INDEX_CODECS if m else INT_CODECS, at)
        total += c.int(b, "table_bytes", 0, 1 << 40, at) + c.int(b, "index_bytes", 0, 1 << 40, at)
    rows = p.get("rows")
    if rows is not None:
        if not isinstance(rows, dict):
            c.fail(f"{where}.params.rows", "must be an object")
        c.choice(rows, "stream", INT_CODECS, f"{where}.params.rows")
        total += c.int(rows, "bytes", 0, 1 << 40, f"{where}.params.rows") + 4
    if total + 8 * len(books) != e["bytes"]:
        c.fail(f"{where}.params.codebooks", "sizes do not add up to the section's size")
    want = sum(dims) if combine == "concat" else dims[0]
    if (combine == "sum" and len(set(dims)) != 1) or want != size:
        c.fail(f"{where}.shape", f"does not match its codebooks under the {combine!r} rule")


def _check_raw(c: _Check, e, p, where: str, size: int) -> None:
    c.choice(p, "codec", PRECISIONS, f"{where}.params")
    c.choice(p, "stream", WORD_CODECS, f"{where}.params")


def _check_ints(c: _Check, e, p, where: str, size: int) -> None:
    c.choice(p, "codec", ("ints",), f"{where}.params")
    c.int(p, "alphabet", 1, 1 << 62, f"{where}.params")
    c.choice(p, "stream", INT_CODECS, f"{where}.params")


_CHECKS = {"positions": _check_positions, "opacities": _check_opacities, "coded": _check_coded,
           "raw": _check_raw, "ints": _check_ints}
