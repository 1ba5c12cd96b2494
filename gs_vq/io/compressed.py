"""MODEL/compressed.ply: a vector-quantized 3DGS scene in a valid, small PLY file.

Versions 2 and 3 (written): a binary PLY whose header carries a JSON table of sections and a CRC32 of
the whole file (:mod:`gs_vq.io.container`); one section per part, each with its own codec
(:mod:`gs_vq.io.sections`)::

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
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from ..errors import GsVqError
from .ply import ply_header_has
from . import container as C
from . import sections as X
from . import streams as S
from .header import NAME, validate_header
from .scene import LOSSLESS, CodedAttribute, CompressedScene, decode_codes  # noqa: F401 (public)

FORMAT = "gs_vq.compressed"
VERSION = 3  # the newest version written
READS = (1, 2, 3)  # versions this reader understands
CONTAINER = (2, 3)  # versions in the checksummed container


# --------------------------------------------------------------------------- writing
def _compact(codebook: Tensor, codes: Tensor, rows: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Drop unused entries, most used first (1-D codebooks: in ascending value, so that index
    slices are value ranges for the next column's context). Only ``rows`` ([N] bool, None = all)
    count as uses; the other rows get index 0. At least one entry is kept. Decoded values of the
    counted rows are unchanged."""
    counts = torch.bincount(codes if rows is None else codes[rows], minlength=codebook.shape[0])
    counts[0] += int(not counts.any())
    used = torch.nonzero(counts).squeeze(1)
    key = codebook[used, 0] if codebook.shape[1] == 1 else -counts[used].double()
    used = used[torch.argsort(key, stable=True)]
    remap = torch.full((codebook.shape[0],), -1, dtype=torch.int64)
    remap[used] = torch.arange(len(used))
    out = remap[codes]
    if rows is not None:
        out[~rows] = 0
    return codebook[used], out


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _width(value: Tensor) -> int:
    """Values per Gaussian of an [N, ...] attribute."""
    return int(np.prod(tuple(value.shape[1:])))


def _attr_name(name: str) -> str:
    if not NAME.match(name) or name in ("means", "opacities"):
        raise GsVqError(f"attribute name {name!r} must be alphanumeric (and not means/opacities)")
    return name


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
    means = _np(scene.means).astype(np.float32).reshape(n, 3)
    opac = _np(scene.opacities).astype(np.float32).reshape(n)
    if not np.isfinite(means).all() or not np.isfinite(opac).all():
        raise GsVqError("compressed ply: means or opacities hold NaN or infinite values")
    if not (1 <= opacity_bits <= 16 or opacity_bits == LOSSLESS):
        raise GsVqError(f"opacity bits must be 1..16 or 32, got {opacity_bits}")
    grid = scene.grid
    if grid is None and pos_bits != LOSSLESS:
        grid = S.PositionGrid.fit(means, pos_bits)
    order_grid = grid if grid is not None else S.PositionGrid.fit(means, 21)
    order = np.argsort(S.morton_encode(order_grid.quantize(means), order_grid.bits), kind="stable")
    order_t = torch.from_numpy(order)

    entries: List[Dict[str, Any]] = []
    payloads: List[Tuple[str, bytes]] = []

    def add(name: str, kind: str, params: Dict[str, Any], payload: bytes, **extra) -> None:
        entries.append({"name": name, "kind": kind, **extra, "bytes": len(payload), "params": params})
        payloads.append((name, payload))

    add("means", "positions", *X.encode_positions(means[order], grid))
    add("opacities", "opacities", *X.encode_opacities(opac[order], opacity_bits))
    for attr in scene.attributes:
        codes = attr.codes.detach().cpu().long().reshape(n, len(attr.codebooks))[order_t]  # [N, M]
        rows = None if attr.present is None else attr.present.detach().cpu().bool().reshape(n)[order_t]
        tables, cols = [], []
        for m, cb in enumerate(attr.codebooks):
            cb, c = cb.detach().cpu().float(), codes[:, m]
            if compact_codebooks and n > 0:
                cb, c = _compact(cb, c, rows)
            tables.append(_np(cb))
            cols.append(_np(c))
        stacked = np.stack(cols, axis=1) if cols else np.zeros((n, 0), np.int64)
        if attr.precision not in ("float32", "float16"):
            raise GsVqError(f"codebook precision must be float32 or float16, got {attr.precision!r}")
        present = None if rows is None else _np(rows)
        add(f"coded_{_attr_name(attr.name)}", "coded", *X.encode_coded(tables, stacked, attr.precision, present),
            attr=attr.name, shape=list(attr.shape), combine=attr.combine, precision=attr.precision)
    for name, value in scene.raw.items():
        values = _np(value).astype(np.float32).reshape(n, _width(value))[order]
        add(f"raw_{_attr_name(name)}", "raw", *X.encode_raw(values, scene.raw_precision),
            attr=name, shape=list(value.shape[1:]), precision=scene.raw_precision)
    for name, value in scene.ints.items():
        values = _np(value).astype(np.int64).reshape(n, _width(value))[order]
        try:
            params, payload = X.encode_int_attribute(values)
        except ValueError as e:
            raise GsVqError(f"compressed ply: integer attribute {name}: {e}") from None
        add(f"ints_{_attr_name(name)}", "ints", params, payload, attr=name, shape=list(value.shape[1:]))

    version = 3 if grid is not None and grid.radius > 0 else 2
    header = {"format": FORMAT, "version": version, "count": n, "meta": scene.meta, "sections": entries}
    validate_header(header, dict(payloads), path, version)  # the writer obeys the reader's rules
    size = C.write_container(path, header, payloads)
    return {"bytes": size, "count": n, "order": order, "grid": grid,
            "bits_per_gaussian": _bits_report(header, size)}


def _bits_report(header: Dict[str, Any], size: int) -> Dict[str, float]:
    """Bits per Gaussian of each part: ``means``, ``opacities``, per coded attribute
    ``<name>.index`` (all its index streams), ``<name>.codebook`` and ``<name>.rows`` (which rows
    store indices, when some do not), ``raw_<name>`` and
    ``ints_<name>``, ``header`` (everything else: PLY/JSON header, length prefixes) and ``total``."""
    n = max(int(header["count"]), 1)
    out: Dict[str, float] = {}
    for e in header["sections"]:
        if e["kind"] == "coded":
            books = e["params"]["codebooks"]
            out[f"{e['attr']}.index"] = 8.0 * sum(b["index_bytes"] for b in books) / n
            out[f"{e['attr']}.codebook"] = 8.0 * sum(b["table_bytes"] for b in books) / n
            if "rows" in e["params"]:
                out[f"{e['attr']}.rows"] = 8.0 * e["params"]["rows"]["bytes"] / n
        else:
            out[e["name"]] = 8.0 * e["bytes"] / n  # means, opacities, raw_<a>, ints_<a>
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
        payload, p, kind = sections[e["name"]], e["params"], e["kind"]
        shape = tuple(e.get("shape", ()))
        if kind == "positions":
            means, scene.grid = X.decode_positions(p, payload, n)
            scene.means = torch.from_numpy(np.ascontiguousarray(means, np.float32).reshape(n, 3))
        elif kind == "opacities":
            scene.opacities = torch.from_numpy(np.ascontiguousarray(X.decode_opacities(p, payload, n)))
            scene.opacity_bits = int(p["bits"])
        elif kind == "coded":
            tables, codes, present = X.decode_coded(p, payload, n, e["precision"])
            scene.attributes.append(CodedAttribute(
                e["attr"], shape, [torch.from_numpy(t) for t in tables], torch.from_numpy(codes),
                e["combine"], e["precision"], None if present is None else torch.from_numpy(present)))
        elif kind == "raw":
            values = X.decode_raw(p, payload, n * int(np.prod(shape)))
            scene.raw[e["attr"]] = torch.from_numpy(values.reshape(n, *shape))
            scene.raw_precision = p["codec"]
        else:
            values = X.decode_int_attribute(p, payload, n * int(np.prod(shape)))
            scene.ints[e["attr"]] = torch.from_numpy(values.reshape(n, *shape))
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
