"""MODEL/compressed.ply: a vector-quantized 3DGS scene in a valid, small PLY file.

Layout (``format binary_little_endian 1.0``, readable by plyfile)::

    obj_info {JSON: counts, position grid, opacity bits, attribute table, stream table}
    element codebook_<attr>_<m> K_m      one element per codebook, properties c0..c{d-1}
                                         (float, or ushort holding float16 bit patterns)
    element stream_<name> 1              one row: property list uint uchar data
        stream_means                     Morton codes of the grid positions, sorted, as gaps
        stream_opacities                 opacity bins (``opacity_bits`` each)
        stream_idx_<attr>_<m>            per-Gaussian index into codebook m, ceil(log2 K_m) bits
        stream_raw_<attr>                unquantized attributes (float16/float32), if any

Gaussians are stored in Morton order of their quantized positions. Each per-Gaussian stream is
the plain fixed-width layout or, when smaller, that layout entropy-coded (LZMA2 or DEFLATE),
and carries a CRC32 so that a damaged file fails loudly. Codebooks and indices load back
bit-exactly; positions are within ``grid.precision`` (half a grid step) of the written ones;
opacities within half an opacity bin (in sigmoid units).
"""

import json
import os
import re
import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from ..errors import GsVqError, atomic_path
from . import streams as S

FORMAT = "gs_vq.compressed"
VERSION = 1
LOSSLESS = 32  # pos_bits / opacity_bits value meaning "store float32 as is"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


def decode_codes(codebooks: Sequence[Tensor], codes: Tensor, combine: str) -> Tensor:
    """Values of coded vectors: the one decoding rule shared by the file and the VQ plugin.

    Args:
        codebooks: M tensors [K_m, d_m].
        codes: [N, M] integer indices.
        combine: "sum" (VQ, residual and additive VQ: sum_m C_m[c_m], added in order m = 0..M-1)
            or "concat" (product quantization: [C_0[c_0], ..., C_{M-1}[c_{M-1}]]).
    Returns:
        [N, d] with d = d_0 (sum) or sum_m d_m (concat).
    """
    parts = [cb.index_select(0, codes[:, m].contiguous()) for m, cb in enumerate(codebooks)]
    if combine == "concat":
        return torch.cat(parts, dim=-1)
    if combine != "sum":
        raise ValueError(f"unknown combine rule {combine!r}")
    out = parts[0]
    for p in parts[1:]:
        out = out + p
    return out


@dataclass
class CodedAttribute:
    """One per-Gaussian attribute stored as indices into codebooks."""

    name: str                    # splat key: "sh0", "shN", "scales", "quats", "features", ...
    shape: Tuple[int, ...]       # per-Gaussian shape in the splats, e.g. (1, 3) for sh0
    codebooks: List[Tensor]      # M x [K_m, d_m] float32
    codes: Tensor                # [N, M] int64
    combine: str = "sum"         # see decode_codes
    precision: str = "float32"   # codebook storage: "float32" or "float16" (values rounded)

    def decode(self) -> Tensor:
        """[N, *shape] float32 values."""
        flat = decode_codes(self.codebooks, self.codes, self.combine)
        return flat.reshape(flat.shape[0], *self.shape)


@dataclass
class CompressedScene:
    """What compressed.ply holds, decoded (Gaussians in the file's order)."""

    means: Tensor                                   # [N, 3] float32
    opacities: Tensor                               # [N] float32 logits
    attributes: List[CodedAttribute]
    raw: Dict[str, Tensor] = field(default_factory=dict)  # unquantized attributes [N, ...]
    raw_precision: str = "float16"                  # how ``raw`` is stored
    meta: Dict[str, Any] = field(default_factory=dict)    # free-form (sh_degree, ...)
    grid: Optional[S.PositionGrid] = None           # position grid (None: lossless)
    opacity_bits: int = 8

    def to_splats(self) -> Dict[str, Tensor]:
        """Decoded splat tensors with gsplat's names (``means``, ``quats``, ``sh0``, ...)."""
        out = {"means": self.means, "opacities": self.opacities}
        out.update({a.name: a.decode() for a in self.attributes})
        out.update(self.raw)
        return out


# --------------------------------------------------------------------------- writing
def _compact(codebook: Tensor, codes: Tensor) -> Tuple[Tensor, Tensor]:
    """Drop unused entries, most used first. Decoded values are unchanged."""
    counts = torch.bincount(codes, minlength=codebook.shape[0])
    used = torch.nonzero(counts).squeeze(1)
    used = used[torch.argsort(-counts[used], stable=True)]
    remap = torch.full((codebook.shape[0],), -1, dtype=torch.int64)
    remap[used] = torch.arange(len(used))
    return codebook[used], remap[codes]


def _codebook_table(cb: np.ndarray, precision: str) -> np.ndarray:
    """[K, d] float -> the stored [K, d] array: little-endian float32, or float16 bits (uint16)."""
    if precision == "float16":
        return cb.astype(np.float16).view(np.uint16).astype("<u2")
    if precision == "float32":
        return cb.astype("<f4")
    raise GsVqError(f"codebook precision must be float32 or float16, got {precision!r}")


def _codebook_element(name: str, table: np.ndarray):
    from plyfile import PlyElement

    rec = np.empty(table.shape[0], dtype=[(f"c{j}", table.dtype) for j in range(table.shape[1])])
    for j in range(table.shape[1]):
        rec[f"c{j}"] = table[:, j]
    return PlyElement.describe(rec, name)


def _stream_element(name: str, payload: bytes):
    from plyfile import PlyElement

    rec = np.empty(1, dtype=[("data", object)])
    rec["data"][0] = np.frombuffer(payload, dtype=np.uint8)
    return PlyElement.describe(rec, f"stream_{name}", len_types={"data": "u4"},
                               val_types={"data": "u1"})


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def write_compressed(
    path: str,
    scene: CompressedScene,
    pos_bits: int = 16,
    opacity_bits: int = 8,
    compact_codebooks: bool = True,
) -> Dict[str, Any]:
    """Write ``scene`` to ``path`` (atomically).

    Args:
        scene: Gaussians in any order; ``scene.grid`` (if set) fixes the position grid, else a
            grid of ``pos_bits`` bits per axis is fitted (``pos_bits=32``: float32, lossless).
        opacity_bits: bins of sigmoid(opacity) (1..16), or 32 for float32 logits (lossless).
        compact_codebooks: drop unused codebook entries (decoded values are unchanged).
    Returns:
        dict(bytes, count, order ([N] int64: file row i is input Gaussian order[i]), grid,
        bits_per_gaussian {part: bits / N}).
    """
    n = int(scene.means.shape[0])
    means = _np(scene.means).astype(np.float32).reshape(n, 3)
    if not np.isfinite(means).all() or not torch.isfinite(scene.opacities).all():
        raise GsVqError("compressed ply: means or opacities hold NaN or infinite values")
    grid = scene.grid
    if grid is None and pos_bits != LOSSLESS:
        grid = S.PositionGrid.fit(means, pos_bits)
    order_grid = grid if grid is not None else S.PositionGrid.fit(means, 21)
    morton = S.morton_encode(order_grid.quantize(means), order_grid.bits)
    order = np.argsort(morton, kind="stable")

    meta: Dict[str, Any] = {"format": FORMAT, "version": VERSION, "count": n,
                            "meta": scene.meta, "streams": {}, "attributes": [], "raw": []}
    payloads: Dict[str, bytes] = {}

    def add_stream(name: str, codec: str, bits: int, payload: bytes) -> None:
        meta["streams"][name] = {"codec": codec, "bits": bits, "bytes": len(payload),
                                 "crc32": zlib.crc32(payload)}
        payloads[name] = payload

    if grid is None:
        meta["means"] = {"lossless": True}
        codec, payload = S.encode_uints(means[order].view(np.uint32).reshape(-1), 32)
        add_stream("means", codec, 32, payload)
    else:
        meta["means"] = {"lo": list(grid.lo), "step": list(grid.step), "bits": grid.bits}
        codec, bits, payload = S.encode_deltas(morton[order])
        add_stream("means", codec, bits, payload)

    opac = _np(scene.opacities).astype(np.float32).reshape(n)[order]
    if opacity_bits == LOSSLESS:
        codec, payload = S.encode_uints(opac.view(np.uint32), 32)
    elif 1 <= opacity_bits <= 16:
        codec, payload = S.encode_uints(S.quantize_opacity(opac, opacity_bits), opacity_bits)
    else:
        raise GsVqError(f"opacity bits must be 1..16 or 32, got {opacity_bits}")
    add_stream("opacities", codec, opacity_bits, payload)
    meta["opacities"] = {"bits": opacity_bits}

    order_t = torch.from_numpy(order)
    elements = []
    for attr in scene.attributes:
        if not _NAME.match(attr.name):
            raise GsVqError(f"attribute name {attr.name!r} must be alphanumeric")
        codes = attr.codes.detach().cpu().long().reshape(n, -1)[order_t]  # [N, M]
        entry = {"name": attr.name, "shape": list(attr.shape), "combine": attr.combine,
                 "precision": attr.precision, "codebooks": []}
        for m, cb in enumerate(attr.codebooks):
            cb = cb.detach().cpu().float()
            c = codes[:, m]
            if compact_codebooks and n > 0:
                cb, c = _compact(cb, c)
            elem = f"codebook_{attr.name}_{m}"
            table = _codebook_table(_np(cb), attr.precision)  # [K, d]
            elements.append(_codebook_element(elem, table))
            bits = S.index_bits(max(1, cb.shape[0]))
            codec, payload = S.encode_uints(_np(c), bits)
            add_stream(f"idx_{attr.name}_{m}", codec, bits, payload)
            entry["codebooks"].append({"element": elem, "size": int(cb.shape[0]),
                                       "dim": int(cb.shape[1]), "index_bits": bits,
                                       "crc32": zlib.crc32(np.ascontiguousarray(table).tobytes())})
        meta["attributes"].append(entry)

    for name, value in scene.raw.items():
        value = _np(value).astype(np.float32).reshape(n, -1)[order]
        dtype = np.float16 if scene.raw_precision == "float16" else np.float32
        payload = S._xz(np.ascontiguousarray(value.astype(dtype)).tobytes())
        add_stream(f"raw_{name}", "xz", 8 * np.dtype(dtype).itemsize, payload)
        meta["raw"].append({"name": name, "shape": list(scene.raw[name].shape[1:]),
                            "precision": scene.raw_precision})

    elements += [_stream_element(k, v) for k, v in payloads.items()]
    from plyfile import PlyData

    ply = PlyData(elements, text=False, byte_order="<",
                  obj_info=[json.dumps(meta, separators=(",", ":"))])
    with atomic_path(path) as tmp:
        ply.write(tmp)
    size = os.path.getsize(path)
    return {"bytes": size, "count": n, "order": order, "grid": grid,
            "bits_per_gaussian": _bits_report(meta, elements, size)}


def _bits_report(meta: Dict[str, Any], elements, size: int) -> Dict[str, float]:
    """Bits per Gaussian of each part: ``means``, ``opacities``, per attribute ``<name>.index``
    (all its index streams) and ``<name>.codebook``, raw attributes, ``header`` and ``total``."""
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


# --------------------------------------------------------------------------- reading
def _read_ply(path: str):
    from plyfile import PlyData

    if not os.path.isfile(path):
        raise GsVqError(f"{path}: no such file")
    try:
        ply = PlyData.read(path)
        meta = json.loads(ply.obj_info[0]) if ply.obj_info else None
    except GsVqError:
        raise
    except Exception as e:  # plyfile / json / numpy raise many types on damaged input
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise GsVqError(f"{path}: corrupt or truncated ply ({msg})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise GsVqError(f"{path}: not a gs-vq compressed ply (no {FORMAT} header)")
    if meta.get("version") != VERSION:
        raise GsVqError(f"{path}: compressed ply version {meta.get('version')} is not supported "
                        f"(this gs-vq reads version {VERSION})")
    return ply, meta


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


def read_compressed(path: str) -> CompressedScene:
    """Load compressed.ply. Any damage (bad header, truncation, checksum, ranges) -> GsVqError."""
    ply, meta = _read_ply(path)
    try:
        return _decode(ply, meta)
    except GsVqError:
        raise
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise GsVqError(f"{path}: corrupt compressed ply ({msg})") from None


def _decode(ply, meta: Dict[str, Any]) -> CompressedScene:
    n = int(meta["count"])
    m = meta["means"]
    grid = None
    if m.get("lossless"):
        means = _uints(ply, meta, "means", 3 * n).astype(np.uint32).view(np.float32)
    else:
        grid = S.PositionGrid(tuple(m["lo"]), tuple(m["step"]), int(m["bits"]))
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


def load_compressed_splats(path: str, device: str = "cpu") -> Dict[str, Tensor]:
    """compressed.ply -> splat tensors with gsplat's names and activations-not-applied values."""
    return {k: v.to(device) for k, v in read_compressed(path).to_splats().items()}


def describe_compressed(path: str) -> Dict[str, Any]:
    """Size facts of a compressed.ply: bytes, count and bits per Gaussian of each part."""
    ply, meta = _read_ply(path)
    size = os.path.getsize(path)
    return {"bytes": size, "count": int(meta["count"]),
            "bits_per_gaussian": _bits_report(meta, ply.elements, size)}


def is_compressed_ply(path: str) -> bool:
    """True when ``path`` starts like a gs-vq compressed ply (reads the header only)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return head.startswith(b"ply") and FORMAT.encode() in head
