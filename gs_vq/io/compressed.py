"""MODEL/compressed.ply: a vector-quantized 3DGS scene in a valid, small PLY file.

Versions 2 and 3 (written): a binary PLY whose header carries a JSON table of sections and a CRC32 of
the whole file (:mod:`gs_vq.io.container`); one section per part, each of a kind whose codec
(encode, decode, check, bits) is one entry of the table :data:`gs_vq.io.sections.SECTIONS`::

    means        positions on a grid, Morton-sorted, as an entropy-coded octree (or gaps)
    opacities    bins of sigmoid(opacity), range-coded (or float32)
    coded_<a>    attribute <a>: its codebook tables and one index stream per codebook (optionally
                 a row-presence flag stream first: absent rows store no indices, decode to 0)
    raw_<a>      unquantized attribute <a> (float16/float32)
    ints_<a>     per-Gaussian non-negative integers <a> (e.g. semantic labels)

Version 3 is version 2 whose position grid lies in contracted space (:mod:`gs_vq.io.grid`); a
file is written as version 3 only when its grid is contracted, so version-2 readers open the rest.
Every integer stream is stored with the smallest of range coding (per-stream frequency tables)
and the fixed-width layouts of version 1 (plain, LZMA, DEFLATE); the tag says which. Version 1
files (:mod:`gs_vq.io.compressed_v1`) are still read. Codebooks and indices load back
bit-exactly; positions are within ``grid.precision`` (half a grid step) of the written ones;
opacities within half an opacity bin (in sigmoid units).
"""

import os
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from ..errors import GsVqError
from .ply import ply_header_has
from . import container as C
from . import streams as S
from .header import validate_header
from .sections import SECTIONS, Job
from .scene import LOSSLESS, CodedAttribute, CompressedScene, decode_codes  # noqa: F401 (public)

FORMAT = "gs_vq.compressed"
VERSION = 3  # the newest version written
READS = (1, 2, 3)  # versions this reader understands
CONTAINER = (2, 3)  # versions in the checksummed container


# --------------------------------------------------------------------------- writing
def write_compressed(
    path: str,
    scene: CompressedScene,
    pos_bits: int = 16,
    opacity_bits: Optional[int] = None,
    compact_codebooks: bool = True,
) -> Dict[str, Any]:
    """Write ``scene`` to ``path`` (atomically) in format version 2 (3 with a contracted grid).

    Args:
        scene: Gaussians in any order; ``scene.grid`` (if set) fixes the position grid, else a
            grid of ``pos_bits`` bits per axis is fitted (``pos_bits=32``: float32, lossless).
        opacity_bits: bins of sigmoid(opacity) (1..16), or 32 for float32 logits (lossless);
            None: ``scene.opacity_bits`` (a loaded scene's own, 8 for a new one), so that a file
            read and written again keeps its opacities, as ``scene.grid`` keeps its positions.
        compact_codebooks: drop unused codebook entries (decoded values are unchanged).
    Returns:
        dict(bytes, count, order ([N] int64: file row i is input Gaussian order[i]), grid,
        bits_per_gaussian {part: bits / N}).
    """
    opacity_bits = scene.opacity_bits if opacity_bits is None else opacity_bits
    n = int(scene.means.shape[0])
    means = scene.means.detach().cpu().numpy().astype(np.float32).reshape(n, 3)  # [N, 3]
    opac = scene.opacities.detach().cpu().numpy().astype(np.float32).reshape(n)  # [N]
    if not np.isfinite(means).all() or not np.isfinite(opac).all():
        raise GsVqError("compressed ply: means or opacities hold NaN or infinite values")
    if not (1 <= opacity_bits <= 16 or opacity_bits == LOSSLESS):
        raise GsVqError(f"opacity bits must be 1..16 or 32, got {opacity_bits}")
    grid = scene.grid
    if grid is None and pos_bits != LOSSLESS:
        grid = S.PositionGrid.fit(means, pos_bits)
    order_grid = grid if grid is not None else S.PositionGrid.fit(means, 21)
    order = np.argsort(S.morton_encode(order_grid.quantize(means), order_grid.bits), kind="stable")
    job = Job(scene, order, means, opac, grid, opacity_bits, compact_codebooks)
    entries, payloads = [], []
    for kind, codec in SECTIONS.items():  # the table's order is the file's
        for sec in codec.encode(job):
            entries.append({"name": sec.name, "kind": kind, **sec.fields, "bytes": len(sec.payload),
                            "params": sec.params})
            payloads.append((sec.name, sec.payload))
    version = 3 if grid is not None and grid.radius > 0 else 2
    header = {"format": FORMAT, "version": version, "count": n, "meta": scene.meta, "sections": entries}
    validate_header(header, dict(payloads), path, version)  # the writer obeys the reader's rules
    size = C.write_container(path, header, payloads)
    return {"bytes": size, "count": n, "order": order, "grid": grid,
            "bits_per_gaussian": _bits_report(header, size)}


def _bits_report(header: Dict[str, Any], size: int) -> Dict[str, float]:
    """Bits per Gaussian of each part, as each section's kind counts it (``means``, ``opacities``,
    per coded attribute ``<name>.index``, ``<name>.codebook`` and ``<name>.rows``, ``raw_<name>``,
    ``ints_<name>``), then ``header`` (everything else: PLY/JSON header, length prefixes) and
    ``total``."""
    n = max(int(header["count"]), 1)
    out: Dict[str, float] = {}
    for e in header["sections"]:
        out.update(SECTIONS[e["kind"]].bits(e, n))
    out["header"] = 8.0 * size / n - sum(out.values())
    out["total"] = 8.0 * size / n
    return {k: round(v, 4) for k, v in out.items()}


# --------------------------------------------------------------------------- reading
def _read_bytes(path: str) -> bytes:
    if not os.path.isfile(path):
        raise GsVqError(f"{path}: no such file")
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as e:
        raise GsVqError(f"{path}: cannot read ({e.strerror})") from None


def _open(path: str) -> Tuple[int, Dict[str, Any], Any]:
    """-> (version, JSON header, v1: plyfile PlyData / v2: {section: payload}), checked."""
    data = _read_bytes(path)
    head, _ = C.split_header(data, path)
    if C.has_checksum(head):
        meta, sections = C.read_container(data, path)
    else:
        meta, sections = C.header_json(head, path), None
    if meta.get("format") != FORMAT:
        raise GsVqError(f"{path}: not a gs-vq compressed ply (no {FORMAT} header)")
    version = meta.get("version")
    if version not in READS or (version in CONTAINER) != (sections is not None):
        raise GsVqError(f"{path}: compressed ply version {version!r} is not supported "
                        f"(this gs-vq reads versions {', '.join(map(str, READS))})")
    if version in CONTAINER:
        validate_header(meta, sections, path, version)
        return version, meta, sections
    return version, meta, _plyfile(data, path)


def _plyfile(data: bytes, path: str):
    import io

    from plyfile import PlyData

    try:
        return PlyData.read(io.BytesIO(data))
    except Exception as e:  # plyfile / numpy raise many types on damaged input
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise GsVqError(f"{path}: corrupt or truncated ply ({msg})") from None


def read_compressed(path: str) -> CompressedScene:
    """Load compressed.ply (version 1, 2 or 3). Any damage -> one-line GsVqError."""
    version, meta, body = _open(path)
    try:
        if version == 1:
            from .compressed_v1 import decode_v1

            return decode_v1(body, meta)
        return _decode_v2(meta, body)
    except GsVqError:
        raise
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise GsVqError(f"{path}: corrupt compressed ply ({msg})") from None


def _decode_v2(meta: Dict[str, Any], sections: Dict[str, bytes]) -> CompressedScene:
    n = int(meta["count"])
    scene = CompressedScene(means=torch.zeros(n, 3), opacities=torch.zeros(n), attributes=[],
                            meta=meta.get("meta", {}))
    for e in meta["sections"]:
        SECTIONS[e["kind"]].decode(e, sections[e["name"]], n, scene)
    return scene


def load_compressed_splats(path: str, device: str = "cpu") -> Dict[str, Tensor]:
    """compressed.ply -> splat tensors with gsplat's names and activations-not-applied values."""
    return {k: v.to(device) for k, v in read_compressed(path).to_splats().items()}


def describe_compressed(path: str) -> Dict[str, Any]:
    """Size facts of a compressed.ply: bytes, count, version and bits per Gaussian of each part."""
    version, meta, body = _open(path)
    size = os.path.getsize(path)
    if version == 1:
        from .compressed_v1 import bits_report_v1

        bits = bits_report_v1(meta, body.elements, size)
    else:
        bits = _bits_report(meta, size)
    return {"bytes": size, "count": int(meta["count"]), "version": version, "bits_per_gaussian": bits}


def is_compressed_ply(path: str) -> bool:
    """True when ``path`` starts like a gs-vq compressed ply (reads the header only)."""
    return ply_header_has(path, FORMAT.encode())


__all__ = ["FORMAT", "VERSION", "READS", "LOSSLESS", "CodedAttribute", "CompressedScene",
           "decode_codes", "write_compressed", "read_compressed", "load_compressed_splats",
           "describe_compressed", "is_compressed_ply"]
