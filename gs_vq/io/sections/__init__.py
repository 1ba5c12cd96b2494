"""The section kinds of compressed.ply version 2/3, as one table: :data:`SECTIONS`.

Each kind is one :class:`~gs_vq.io.sections.base.SectionCodec` with four methods, and nothing
about a kind lives anywhere else::

    encode(job)                          -> [Section]   the writer: this kind's sections of a scene
    decode(entry, payload, n, scene)                    the reader: one section into the scene
    check(c, entry, params, where, size)                the header check of its fields and params
    bits(entry, n)                       -> {part: bits per Gaussian}   the size report

The writer writes the kinds in the table's order; the reader, the header check and the size
report look a section's kind up here. A new kind of section is one module and one entry below
(files that hold it then need a new format version: older readers reject unknown kinds).

Kinds: ``positions`` (octree or Morton gaps on a grid, or float32), ``opacities`` (bins or
float32), ``coded`` (codebook tables and one index stream per codebook), ``raw`` (float16/32
values) and ``ints`` (any per-Gaussian non-negative integers, e.g. semantic labels).
"""

from typing import Dict

from .base import Job, Section, SectionCodec
from .coded import Coded
from .ints import Ints
from .opacities import Opacities
from .positions import Positions
from .raw import Raw

SECTIONS: Dict[str, SectionCodec] = {c.kind: c for c in (Positions(), Opacities(), Coded(), Raw(), Ints())}

__all__ = ["SECTIONS", "Job", "Section", "SectionCodec"]
