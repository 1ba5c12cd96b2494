"""The ``positions`` section: Gaussian centres on a grid, as an octree or Morton gaps, or float32.

On a grid (:class:`gs_vq.io.grid.PositionGrid`, contracted in version 3) the Morton codes of the
cells are stored as an entropy-coded octree (:mod:`gs_vq.io.octree`) or as their gaps, whichever
is smaller; positions decode to the cell centres. Without a grid the float32 words are kept.
"""

from typing import List, Optional, Tuple

import numpy as np
import torch

from .. import octree as O
from .. import streams as S
from ..check import Check
from ..coding import WORD_CODECS, decode_words, encode_words
from ..grid import PositionGrid
from ..scene import CompressedScene
from .base import Entry, Job, Params, Section, SectionCodec


def encode_positions(means: np.ndarray, grid: Optional[PositionGrid]) -> Tuple[Params, bytes]:
    """[N, 3] float32 positions already in ascending Morton order of ``grid`` (None: float32)."""
    if grid is None:
        codec, payload = encode_words(np.ascontiguousarray(means, np.float32).view(np.uint32).reshape(-1))
        return {"codec": "float32", "words": codec}, payload
    codes = S.morton_encode(grid.quantize(means), grid.bits)
    gparams = grid.params()
    octree = O.encode_octree(codes, grid.bits)
    gcodec, gbits, gaps = S.encode_deltas(codes)
    if len(octree) <= len(gaps):
        return {"codec": "octree", **gparams}, octree
    return {"codec": "gaps", "stream": gcodec, "gap_bits": gbits, **gparams}, gaps


def decode_positions(params: Params, payload: bytes, n: int) -> Tuple[np.ndarray, Optional[PositionGrid]]:
    """-> ([n, 3] float32 positions, their grid or None)."""
    if params["codec"] == "float32":
        words = decode_words(params["words"], payload, 4, 3 * n)
        return words.view(np.float32).reshape(n, 3), None
    grid = PositionGrid.from_params(params)
    if params["codec"] == "octree":
        codes = O.decode_octree(payload, grid.bits, n)
    elif params["codec"] == "gaps":
        codes = S.decode_deltas(params["stream"], payload, int(params["gap_bits"]), n)
        if n and (np.any(codes[1:] < codes[:-1]) or int(codes[-1]) >= 2 ** (3 * grid.bits)):
            raise ValueError("position stream out of the grid")
    else:
        raise ValueError(f"unknown position codec {params['codec']!r}")
    return grid.dequantize(S.morton_decode(codes, grid.bits)), grid


class Positions(SectionCodec):
    kind = "positions"

    def encode(self, job: Job) -> List[Section]:
        return [Section("means", *encode_positions(job.means[job.order], job.grid))]

    def decode(self, entry: Entry, payload: bytes, n: int, scene: CompressedScene) -> None:
        means, scene.grid = decode_positions(entry["params"], payload, n)
        scene.means = torch.from_numpy(np.ascontiguousarray(means, np.float32).reshape(n, 3))

    def check(self, c: Check, entry: Entry, p: Params, where: str, size: int) -> None:
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
