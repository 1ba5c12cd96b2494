"""Best-of coding of one stream: per-Gaussian integers and fixed-width words.

The building blocks every section of compressed.ply (:mod:`gs_vq.io.sections`) codes its
streams with. Each ``encode_*`` tries several candidate codecs and keeps whichever payload is
smallest, returning its tag; the matching ``decode_*`` takes the tag back and raises ValueError on
anything inconsistent. So no stream is ever stored larger than its plain fixed-width layout.
The tags a header may name are :data:`INT_CODECS`, :data:`INDEX_CODECS` and :data:`WORD_CODECS`.
"""

import lzma
import zlib
from typing import Optional, Tuple

import numpy as np

from . import entropy as E
from . import neighbors as N
from . import streams as S

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


INT_CODECS = (*S.CODECS, "range", "same", "recent", "delta")  # what encode_ints may choose
INDEX_CODECS = (*INT_CODECS, "range+ctx", "same+ctx")  # with a context: index columns after the first
WORD_CODECS = ("plain", "planes+xz", "planes+zlib", "planes+range")  # what encode_words may choose
