"""Reader of version-1 compressed.ply files (gs-vq before the v2 format; no longer written).

Layout: ``obj_info`` JSON (counts, position grid, opacity bits, attribute and stream tables),
one PLY element per codebook (float or float16 bits), one ``stream_<name>`` element per
per-Gaussian stream (fixed-width packing, optionally LZMA/DEFLATE), each with a CRC32. The JSON
header itself has no checksum, so some header flips go unnoticed; version 2 fixes that.
"""

import zlib
from typing import Any, Dict, Tuple

import numpy as np
import torch
from torch import Tensor

from . import streams as S
from .scene import LOSSLESS, CodedAttribute, CompressedScene

VERSION = 1


def _stream(ply, meta, name: str) -> Tuple[dict, bytes]:
    info = meta["streams"][name]
    payload = np.asarray(ply[f"stream_{name}"]["data"][0], dtype=np.uint8).tobytes()
    if len(payload) != info["bytes"] or zlib.crc32(payload) != info["crc32"]:
        raise ValueError(f"stream {name} fails its checksum")
    return info, payload


def _uints(ply, meta, name: str, n: int) -> np.ndarray:
    info, payload = _stream(ply, meta, name)
    return S.decode_uints(info["codec"], payload, info["bits"], n)


def _read_codebook(ply, entry: Dict[str, Any], precision: str) -> Tensor:
    data = ply[entry["element"]].data
    cols = [f"c{j}" for j in range(entry["dim"])]
    if len(data) != entry["size"] or list(data.dtype.names) != cols:
        raise ValueError(f"codebook {entry['element']} has the wrong shape")
    dtype = "<u2" if precision == "float16" else "<f4"
    table = np.stack([data[c].astype(dtype) for c in cols], axis=1) if cols else \
        np.zeros((len(data), 0), dtype)
    if zlib.crc32(np.ascontiguousarray(table).tobytes()) != entry["crc32"]:
        raise ValueError(f"codebook {entry['element']} fails its checksum")
    if precision == "float16":
        table = table.view(np.float16)
    values = torch.from_numpy(table.astype(np.float32)).reshape(entry["size"], entry["dim"])
    if not torch.isfinite(values).all():
        raise ValueError(f"codebook {entry['element']} holds NaN or infinite values")
    return values


def decode_v1(ply, meta: Dict[str, Any]) -> CompressedScene:
    """A parsed v1 file (plyfile ``PlyData`` and its JSON header) -> CompressedScene.
    Raises ValueError/KeyError/TypeError on damage; the caller turns them into GsVqError."""
    n = int(meta["count"])
    m = meta["means"]
    grid = None
    if m.get("lossless"):
        means = _uints(ply, meta, "means", 3 * n).astype(np.uint32).view(np.float32)
    else:
        grid = S.PositionGrid.from_params(m)
        info, payload = _stream(ply, meta, "means")
        codes = S.decode_deltas(info["codec"], payload, info["bits"], n)
        if n and int(codes[-1]) >= 2 ** (3 * grid.bits):
            raise ValueError("position stream out of the grid")
        means = grid.dequantize(S.morton_decode(codes, grid.bits))
    obits = int(meta["opacities"]["bits"])
    q = _uints(ply, meta, "opacities", n)
    opac = (q.astype(np.uint32).view(np.float32) if obits == LOSSLESS
            else S.dequantize_opacity(q, obits))

    attributes = []
    for entry in meta["attributes"]:
        codebooks, codes = [], []
        for mi, cbe in enumerate(entry["codebooks"]):
            codebooks.append(_read_codebook(ply, cbe, entry["precision"]))
            c = _uints(ply, meta, f"idx_{entry['name']}_{mi}", n)
            if n and int(c.max()) >= cbe["size"]:
                raise ValueError(f"index of {entry['name']} beyond its codebook")
            codes.append(torch.from_numpy(c.astype(np.int64)))
        codes_t = torch.stack(codes, dim=1) if codes else torch.zeros(n, 0, dtype=torch.int64)
        attributes.append(CodedAttribute(entry["name"], tuple(entry["shape"]), codebooks,
                                         codes_t, entry["combine"], entry["precision"]))

    raw, raw_precision = {}, "float16"
    for entry in meta["raw"]:
        info, payload = _stream(ply, meta, f"raw_{entry['name']}")
        raw_precision = entry["precision"]
        dtype = np.float16 if raw_precision == "float16" else np.float32
        shape = (n, *entry["shape"])
        values = np.frombuffer(S._unxz(payload), dtype=dtype, count=int(np.prod(shape)))
        raw[entry["name"]] = torch.from_numpy(values.astype(np.float32).reshape(shape))

    return CompressedScene(
        means=torch.from_numpy(np.ascontiguousarray(means).reshape(n, 3)),
        opacities=torch.from_numpy(np.ascontiguousarray(opac).reshape(n)),
        attributes=attributes, raw=raw, raw_precision=raw_precision,
        meta=meta.get("meta", {}), grid=grid, opacity_bits=obits)


def bits_report_v1(meta: Dict[str, Any], elements, size: int) -> Dict[str, float]:
    """Bits per Gaussian of each part of a v1 file (``means``, ``opacities``, ``<attr>.index``,
    ``<attr>.codebook``, raw attributes, ``header``, ``total``)."""
    n = max(int(meta["count"]), 1)
    out: Dict[str, float] = {}

    def add(key: str, nbytes: int) -> None:
        out[key] = out.get(key, 0.0) + 8.0 * nbytes / n

    for name, s in meta["streams"].items():
        if name.startswith("idx_"):
            add(name[len("idx_"):].rsplit("_", 1)[0] + ".index", s["bytes"])
        else:
            add(name, s["bytes"])
    for e in elements:
        if e.name.startswith("codebook_"):
            add(e.name[len("codebook_"):].rsplit("_", 1)[0] + ".codebook",
                len(e.data) * e.data.dtype.itemsize)
    out["header"] = 8.0 * size / n - sum(out.values())
    out["total"] = 8.0 * size / n
    return {k: round(v, 4) for k, v in out.items()}
