"""The section codecs of compressed.ply version 2: one encode/decode pair per kind of section.

Each ``encode_*`` returns ``(params, payload)``: ``params`` is a small JSON-able dict stored in
the file's header (the codec tag that won, shapes, sub-stream sizes) and ``payload`` the
section's bytes. Each ``decode_*`` takes them back plus the Gaussian count (validated by the
caller) and raises ValueError on anything inconsistent. Every stream is coded with whichever
candidate codec is smallest ("best of", the tag says which), so no stream is ever stored larger
than its plain fixed-width layout plus a few bytes.

Kinds: ``positions`` (octree or Morton gaps on a grid, or float32), ``opacities`` (bins or
float32), ``coded`` (codebook tables and one index stream per codebook), ``raw`` (float16/32
values) and ``ints`` (any per-Gaussian non-negative integers, e.g. semantic labels).
"""

import lzma
import zlib
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from . import entropy as E
from . import neighbors as N
from . import octree as O
from . import streams as S

Params = Dict[str, Any]
_UINT = {1: np.uint8, 2: "<u2", 4: "<u4", 8: "<u8"}


# --------------------------------------------------------------------------- integers
Context = Optional[Tuple[np.ndarray, int]]  # ([N] ints in [0, C), C), known to the decoder
CONTEXT_BUCKETS = 8


def column_context(prev: np.ndarray, prev_size: int) -> Tuple[np.ndarray, int]:
    """Context of an index from the previous index column of the same attribute: which of
    ``CONTEXT_BUCKETS`` equal slices of its codebook that index falls in (1-D codebooks are
    stored sorted by value, so a slice is a value range; others are sorted by frequency)."""
    buckets = max(1, min(CONTEXT_BUCKETS, prev_size))
    return (np.asarray(prev, np.int64) * buckets) // max(prev_size, 1), buckets


def encode_ints(values: np.ndarray, alphabet: int, context: Context = None, ordered: bool = False,
                flag_context: Context = None) -> Tuple[str, bytes]:
    """[N] integers in [0, alphabet) -> (codec tag, payload), the smallest of: fixed-width
    packing (``packed``), packing or byte planes + LZMA/DEFLATE, range coding (``range``),
    given a ``context`` range coding with one frequency table per context (``range+ctx``), and
    for ``ordered`` per-Gaussian streams (Morton order) the previous-Gaussian transforms of
    :mod:`gs_vq.io.neighbors` (``same``, ``same+ctx`` with ``flag_context``, ``recent``,
    ``delta``)."""
    values = np.asarray(values).astype(np.uint64).reshape(-1)
    bits = S.index_bits(alphabet)
    best = S.encode_uints(values, bits) if bits else ("packed", b"")
    if bits and values.size:
        cands = [("range", E.encode_symbols(values, alphabet))]
        if context is not None:
            cands.append(("range+ctx", E.encode_symbols(values, alphabet, *context)))
        if ordered:
            cands.append(("same", N.encode_same(values, alphabet)))
            cands.append(("recent", N.encode_recent(values, alphabet)))
            if flag_context is not None:
                cands.append(("same+ctx", N.encode_same(values, alphabet, flag_context)))
            if alphabet <= 1 << 32:
                cands.append(("delta", N.encode_delta(values, alphabet)))
        best = min([best, *cands], key=lambda c: len(c[1]))
    return best


def decode_ints(codec: str, payload: bytes, alphabet: int, count: int, context: Context = None,
                flag_context: Context = None) -> np.ndarray:
    """Inverse of :func:`encode_ints` -> [count] uint64 (all < alphabet)."""
    if codec in ("range+ctx", "same+ctx") and (context if codec == "range+ctx" else flag_context) is None:
        raise ValueError(f"{codec} stream without its context")
    if codec == "range":
        return E.decode_symbols(payload, alphabet, count)
    if codec == "range+ctx":
        return E.decode_symbols(payload, alphabet, count, *context)
    if codec in ("same", "same+ctx"):
        return N.decode_same(payload, alphabet, count, flag_context if codec == "same+ctx" else None)
    if codec == "delta":
        return N.decode_delta(payload, alphabet, count)
    if codec == "recent":
        return N.decode_recent(payload, alphabet, count)
    values = S.decode_uints(codec, payload, S.index_bits(alphabet), count)
    if count and int(values.max()) >= alphabet:
        raise ValueError(f"stream value beyond its alphabet of {alphabet}")
    return values


def flag_context(prev: np.ndarray) -> Tuple[np.ndarray, int]:
    """Context of a repeat flag: whether the previous index column repeats there too."""
    return N.same_flags(prev), 2


# --------------------------------------------------------------------------- bytes
def encode_words(words: np.ndarray) -> Tuple[str, bytes]:
    """[n] unsigned words (1, 2, 4 or 8 bytes) -> (codec, payload): the smallest of the plain
    little-endian bytes and their byte planes coded by LZMA, DEFLATE or range coding (one
    frequency table per plane)."""
    width = words.dtype.itemsize
    plain = np.ascontiguousarray(words.astype(_UINT[width])).tobytes()
    planes = np.ascontiguousarray(np.frombuffer(plain, np.uint8).reshape(-1, width).T)  # [w, n]
    flat = planes.tobytes()
    ctx = np.repeat(np.arange(width), planes.shape[1])
    cands = [("plain", plain), ("planes+xz", S._xz(flat)), ("planes+zlib", zlib.compress(flat, 9))]
    if planes.size:
        cands.append(("planes+range", E.encode_symbols(planes.reshape(-1), 256, ctx, width)))
    return min(cands, key=lambda c: len(c[1]))


def decode_words(codec: str, payload: bytes, width: int, count: int) -> np.ndarray:
    """Inverse of :func:`encode_words` -> [count] unsigned words of ``width`` bytes."""
    if codec == "plain":
        flat = payload
        if len(flat) != width * count:
            raise ValueError(f"plain stream holds {len(flat)} bytes, {width * count} expected")
        return np.frombuffer(flat, dtype=_UINT[width]).copy()
    if codec == "planes+range":
        ctx = np.repeat(np.arange(width), count)
        planes = E.decode_symbols(payload, 256, width * count, ctx, width).astype(np.uint8)
    elif codec in ("planes+xz", "planes+zlib"):
        try:
            raw = S._unxz(payload) if codec == "planes+xz" else zlib.decompress(payload)
        except (lzma.LZMAError, zlib.error, EOFError) as e:
            raise ValueError(f"undecodable {codec} stream ({e})") from None
        if len(raw) != width * count:
            raise ValueError(f"{codec} stream holds {len(raw)} bytes, {width * count} expected")
        planes = np.frombuffer(raw, np.uint8)
    else:
        raise ValueError(f"unknown byte codec {codec!r}")
    rows = np.ascontiguousarray(planes.reshape(width, count).T)  # [count, w]
    return np.frombuffer(rows.tobytes(), dtype=_UINT[width]).copy()


# --------------------------------------------------------------------------- positions
def encode_positions(means: np.ndarray, grid: Optional[S.PositionGrid]) -> Tuple[Params, bytes]:
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


def decode_positions(params: Params, payload: bytes, n: int) -> Tuple[np.ndarray, Optional[S.PositionGrid]]:
    """-> ([n, 3] float32 positions, their grid or None)."""
    if params["codec"] == "float32":
        words = decode_words(params["words"], payload, 4, 3 * n)
        return words.view(np.float32).reshape(n, 3), None
    grid = S.PositionGrid.from_params(params)
    if params["codec"] == "octree":
        codes = O.decode_octree(payload, grid.bits, n)
    elif params["codec"] == "gaps":
        codes = S.decode_deltas(params["stream"], payload, int(params["gap_bits"]), n)
        if n and (np.any(codes[1:] < codes[:-1]) or int(codes[-1]) >= 2 ** (3 * grid.bits)):
            raise ValueError("position stream out of the grid")
    else:
        raise ValueError(f"unknown position codec {params['codec']!r}")
    return grid.dequantize(S.morton_decode(codes, grid.bits)), grid


# --------------------------------------------------------------------------- opacities
def encode_opacities(logits: np.ndarray, bits: int) -> Tuple[Params, bytes]:
    """[N] logits -> ``bits`` bins of sigmoid (1..16), or float32 as is (bits = 32)."""
    if bits == 32:
        codec, payload = encode_words(np.ascontiguousarray(logits, np.float32).view(np.uint32))
        return {"codec": "float32", "bits": 32, "stream": codec}, payload
    codec, payload = encode_ints(S.quantize_opacity(logits, bits), 1 << bits, ordered=True)
    return {"codec": "bins", "bits": bits, "stream": codec}, payload


def decode_opacities(params: Params, payload: bytes, n: int) -> np.ndarray:
    bits = int(params["bits"])
    if params["codec"] == "float32":
        return decode_words(params["stream"], payload, 4, n).view(np.float32)
    return S.dequantize_opacity(decode_ints(params["stream"], payload, 1 << bits, n), bits)


# --------------------------------------------------------------------------- coded attributes
def table_words(table: np.ndarray, precision: str) -> np.ndarray:
    """[K, d] float table -> its stored words: float32 bits (uint32) or float16 bits (uint16)."""
    if precision == "float16":
        return np.ascontiguousarray(table, np.float32).astype(np.float16).view(np.uint16)
    if precision == "float32":
        return np.ascontiguousarray(table, np.float32).view(np.uint32)
    raise ValueError(f"codebook precision must be float32 or float16, got {precision!r}")


def encode_coded(tables: List[np.ndarray], codes: np.ndarray, precision: str,
                 present: Optional[np.ndarray] = None) -> Tuple[Params, bytes]:
    """M codebook tables [K_m, d_m] and [N, M] indices -> params {codebooks: [{size, dim,
    table, table_bytes, index, index_bytes}]} and the payload (tables, then index streams).

    With ``present`` ([N] bool) only those rows' indices are stored; a flag stream (params
    ``rows: {stream, bytes}``) goes first in the payload, and the other rows decode to zeros.
    """
    entries, parts = [], []
    extra: Params = {}
    if present is not None:
        flags = np.asarray(present, bool).reshape(-1)
        rcodec, rpayload = encode_ints(flags.astype(np.uint64), 2, ordered=True)
        extra["rows"] = {"stream": rcodec, "bytes": len(rpayload)}
        parts.append(rpayload)
        codes = codes[flags]
    for m, table in enumerate(tables):
        tcodec, tpayload = encode_words(table_words(table, precision).reshape(-1))
        ctx = column_context(codes[:, m - 1], tables[m - 1].shape[0]) if m else None
        fctx = flag_context(codes[:, m - 1]) if m else None
        icodec, ipayload = encode_ints(codes[:, m], max(1, table.shape[0]), ctx, True, fctx)
        entries.append({"size": int(table.shape[0]), "dim": int(table.shape[1]),
                        "table": tcodec, "table_bytes": len(tpayload),
                        "index": icodec, "index_bytes": len(ipayload)})
        parts += [tpayload, ipayload]
    return {"codec": "vq", "codebooks": entries, **extra}, E.join_payloads(*parts)


def decode_coded(params: Params, payload: bytes, n: int,
                 precision: str) -> Tuple[List[np.ndarray], np.ndarray, Optional[np.ndarray]]:
    """-> (M float32 tables [K_m, d_m], [n, M] int64 indices (0 in absent rows), [n] bool rows
    present or None when all are)."""
    entries, rows = params["codebooks"], params.get("rows")
    parts = list(E.split_payloads(payload, 2 * len(entries) + (rows is not None)))
    present = None
    if rows is not None:
        present = decode_ints(rows["stream"], parts.pop(0), 2, n).astype(bool)
    count = n if present is None else int(present.sum())
    width = 2 if precision == "float16" else 4
    tables, codes = [], np.zeros((count, len(entries)), dtype=np.int64)
    for m, e in enumerate(entries):
        k, d = int(e["size"]), int(e["dim"])
        words = decode_words(e["table"], parts[2 * m], width, k * d).reshape(k, d)
        table = (words.view(np.float16) if width == 2 else words.view(np.float32)).astype(np.float32)
        if not np.isfinite(table).all():
            raise ValueError(f"codebook {m} holds NaN or infinite values")
        tables.append(table)
        ctx = column_context(codes[:, m - 1], tables[m - 1].shape[0]) if m else None
        fctx = flag_context(codes[:, m - 1]) if m else None
        codes[:, m] = decode_ints(e["index"], parts[2 * m + 1], k, count, ctx, fctx).astype(np.int64)
    if present is not None:
        full = np.zeros((n, len(entries)), dtype=np.int64)
        full[present] = codes
        codes = full
    return tables, codes, present


# --------------------------------------------------------------------------- raw / ints
def encode_raw(values: np.ndarray, precision: str) -> Tuple[Params, bytes]:
    """[N, ...] floats stored as float16 or float32 words."""
    dtype, view = (np.float16, np.uint16) if precision == "float16" else (np.float32, np.uint32)
    codec, payload = encode_words(np.ascontiguousarray(values.astype(dtype)).view(view).reshape(-1))
    return {"codec": precision, "stream": codec}, payload


def decode_raw(params: Params, payload: bytes, count: int) -> np.ndarray:
    """-> [count] float32 values (the caller reshapes)."""
    half = params["codec"] == "float16"
    words = decode_words(params["stream"], payload, 2 if half else 4, count)
    return words.view(np.float16 if half else np.float32).astype(np.float32)


def encode_int_attribute(values: np.ndarray) -> Tuple[Params, bytes]:
    """[N, ...] non-negative integers (labels, ids) -> params {alphabet, stream} and payload."""
    flat = np.asarray(values).reshape(-1)
    if flat.size and (flat.min() < 0 or flat.max() >= 2**62):
        raise ValueError("integer attributes must be in [0, 2**62)")
    alphabet = int(flat.max()) + 1 if flat.size else 1
    codec, payload = encode_ints(flat, alphabet, ordered=values.ndim == 1 or values.shape[1] == 1)
    return {"codec": "ints", "alphabet": alphabet, "stream": codec}, payload


def decode_int_attribute(params: Params, payload: bytes, count: int) -> np.ndarray:
    return decode_ints(params["stream"], payload, int(params["alphabet"]), count).astype(np.int64)
