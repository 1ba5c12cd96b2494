"""Structural validation of a version-2 compressed.ply header before any field is used.

The checksum already rules out accidental damage; this check rules out files whose header is
well-formed JSON but inconsistent (a hand edit, a buggy writer): every field has the expected
type and range, shapes agree with the codebooks' combine rule, and every section exists with the
declared size. The fields every section has are checked here, each kind's own by its codec
(:data:`gs_vq.io.sections.SECTIONS`). Each problem is a one-line :class:`GsVqError`.
"""

from typing import Any, Dict, Mapping

from .check import MAX_COUNT, NAME, RESERVED, Check
from .sections import SECTIONS


def validate_header(meta: Dict[str, Any], sections: Mapping[str, bytes], what: str,
                    version: int = 2) -> None:
    """Raise a one-line GsVqError unless ``meta`` is a consistent version-2 (or 3) header whose
    sections are exactly those of ``sections`` (name -> payload) with the declared sizes."""
    c = Check(what, version)
    c.int(meta, "count", 0, MAX_COUNT, "header")
    if not isinstance(meta.get("meta", {}), dict):
        c.fail("header.meta", "must be an object")
    entries = meta.get("sections")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        c.fail("header.sections", "must be a list of objects")
    kinds = [c.choice(e, "kind", tuple(SECTIONS), f"sections[{i}]") for i, e in enumerate(entries)]
    single = [k for k, codec in SECTIONS.items() if codec.prefix is None]
    if any(kinds.count(k) != 1 for k in single):
        c.fail("header.sections", "must hold " + " and ".join(f"one {k}" for k in single) + " section")
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
        size = 0
        if SECTIONS[kind].prefix is not None:  # a per-attribute section
            attr = e.get("attr")
            if not isinstance(attr, str) or not NAME.match(attr) or attr in attrs or attr in RESERVED:
                c.fail(f"{where}.attr", f"must be a new alphanumeric name, got {attr!r}")
            attrs.add(attr)
            size = c.shape(e, where)
        SECTIONS[kind].check(c, e, p, where, size)
    if set(names) != set(sections):
        c.fail("header.sections", "do not list every section of the file")
