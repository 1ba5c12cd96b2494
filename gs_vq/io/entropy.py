"""Range coding of integer streams with per-stream frequency tables (``constriction``).

A stream of ``N`` integers in ``[0, alphabet)`` is coded in two parts:

* its frequency table, one byte per symbol per context: 0 for an unused symbol, else
  ``q = 1 + round(10 * log2(count))`` (a relative error of at most 3.5%, which costs well under
  0.001 bits per symbol), DEFLATE-compressed;
* the symbols, range-coded (``constriction.stream.queue.RangeEncoder``) with a categorical model
  built from that table.

The table's probabilities are computed with integer arithmetic only, so encoder and decoder
build bit-identical models on any machine. Alphabets above ``2**DIGIT_BITS`` are split into
base-``2**DIGIT_BITS`` digits, each with its own table. An optional per-symbol ``context``
([N] ints in ``[0, C)``, known to the decoder before it decodes this stream, e.g. the value of
another stream) selects one table per context: symbols are coded context by context, so both
directions stay vectorised.
"""

import struct
import zlib
from typing import List, Optional, Tuple

import numpy as np

DIGIT_BITS = 12  # largest alphabet coded as one symbol: 4096
_LOG_SCALE = 10  # q-count resolution: 10 steps per doubling
# round(1024 * 2**(i / 10)), i = 0..9: the mantissas of the q-count weights (exact integers)
_MANTISSA = (1024, 1097, 1176, 1261, 1351, 1448, 1552, 1663, 1783, 1911)


def quantize_counts(counts: np.ndarray) -> np.ndarray:
    """[K] symbol counts -> [K] uint8 log-scale q-counts (0 only for unused symbols)."""
    counts = np.asarray(counts, dtype=np.float64)
    q = np.zeros(counts.shape, dtype=np.int64)
    used = counts > 0
    if used.any():  # scale the largest count below 2**25 (q <= 251) to keep the ratios
        top = float(counts.max())
        scaled = np.maximum(counts[used] / 2.0 ** max(0, int(np.ceil(np.log2(top))) - 25), 1.0)
        q[used] = 1 + np.rint(_LOG_SCALE * np.log2(scaled)).astype(np.int64)
    return np.clip(q, 0, 255).astype(np.uint8)


def count_weights(q: np.ndarray) -> np.ndarray:
    """[K] uint8 q-counts -> [K] float64 weights (integers, so exact), computed without floats."""
    q = np.asarray(q, dtype=np.int64)
    e, i = np.divmod(np.maximum(q - 1, 0), _LOG_SCALE)
    w = np.asarray(_MANTISSA, dtype=np.int64)[i] << e  # < 2**36
    return np.where(q > 0, w, 0).astype(np.float64)


def _digit_alphabets(alphabet: int) -> List[int]:
    """Alphabet sizes of the base-2**DIGIT_BITS digits of values < ``alphabet``, top digit first."""
    if alphabet <= 1:
        return []
    digits = 1
    while alphabet > (1 << (DIGIT_BITS * digits)):
        digits += 1
    low = [1 << DIGIT_BITS] * (digits - 1)
    top = -(-alphabet // (1 << (DIGIT_BITS * (digits - 1))))
    return [top] + low


def _digits(values: np.ndarray, alphabets: List[int]) -> List[np.ndarray]:
    out = []
    for d in range(len(alphabets)):
        shift = np.uint64(DIGIT_BITS * (len(alphabets) - 1 - d))
        out.append(((values >> shift) & np.uint64((1 << DIGIT_BITS) - 1)).astype(np.int32))
    return out


def _model(q: np.ndarray):
    import constriction  # native module: submodules are attributes, not importable

    return constriction.stream.model.Categorical(count_weights(q), perfect=False)


def _groups(contexts: Optional[np.ndarray], n: int, num_contexts: int) -> List[np.ndarray]:
    """Row indices of each context, in stream order."""
    if contexts is None:
        return [np.arange(n)]
    contexts = np.asarray(contexts, dtype=np.int64).reshape(-1)
    if contexts.shape != (n,) or (n and (contexts.min() < 0 or contexts.max() >= num_contexts)):
        raise ValueError(f"contexts must be {n} ints in [0, {num_contexts})")
    order = np.argsort(contexts, kind="stable")
    bounds = np.searchsorted(contexts[order], np.arange(num_contexts + 1))
    return [order[bounds[c]:bounds[c + 1]] for c in range(num_contexts)]


def encode_symbols(values: np.ndarray, alphabet: int, contexts: Optional[np.ndarray] = None,
                   num_contexts: int = 1) -> bytes:
    """Range-code [N] integers in ``[0, alphabet)`` (optionally one table per context) -> bytes.

    Payload: uint32 length of the compressed table block, the block (DEFLATE of the q-counts of
    every digit and context), then the range coder's uint32 words (little endian).
    """
    import constriction

    values = np.asarray(values).astype(np.uint64).reshape(-1)
    n = values.size
    if n and int(values.max()) >= alphabet:
        raise ValueError(f"value {int(values.max())} outside the alphabet [0, {alphabet})")
    alphabets = _digit_alphabets(alphabet)
    if n == 0 or not alphabets:
        return b""
    groups = _groups(contexts, n, num_contexts)
    tables, encoder = [], constriction.stream.queue.RangeEncoder()
    for size, digit in zip(alphabets, _digits(values, alphabets)):
        for rows in groups:
            q = quantize_counts(np.bincount(digit[rows], minlength=size))
            tables.append(q)
            if rows.size:
                encoder.encode(digit[rows], _model(q))
    block = zlib.compress(np.concatenate(tables).tobytes(), 9)
    words = encoder.get_compressed().astype("<u4").tobytes()
    return struct.pack("<I", len(block)) + block + words


def decode_symbols(payload: bytes, alphabet: int, count: int,
                   contexts: Optional[np.ndarray] = None, num_contexts: int = 1) -> np.ndarray:
    """Inverse of :func:`encode_symbols` -> [count] uint64. Raises ValueError on bad input."""
    import constriction

    alphabets = _digit_alphabets(alphabet)
    if count == 0 or not alphabets:
        if payload:
            raise ValueError("range-coded stream of no symbols has a payload")
        return np.zeros(count, dtype=np.uint64)
    groups = _groups(contexts, count, num_contexts)
    if len(payload) < 4:
        raise ValueError("range-coded stream too short")
    (tlen,) = struct.unpack_from("<I", payload)
    try:
        table_bytes = zlib.decompress(payload[4:4 + tlen])
    except zlib.error as e:
        raise ValueError(f"undecodable frequency tables ({e})") from None
    need = sum(alphabets) * len(groups)
    words = payload[4 + tlen:]
    if len(table_bytes) != need or len(payload) < 4 + tlen or len(words) % 4:
        raise ValueError("range-coded stream has malformed frequency tables")
    tables = np.frombuffer(table_bytes, dtype=np.uint8)
    decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(words, dtype="<u4").astype(np.uint32))
    out = np.zeros(count, dtype=np.uint64)
    t = 0
    for d, size in enumerate(alphabets):
        shift = np.uint64(DIGIT_BITS * (len(alphabets) - 1 - d))
        for rows in groups:
            q = tables[t:t + size]
            t += size
            if rows.size:
                digit = np.asarray(decoder.decode(_model(q), int(rows.size)), dtype=np.uint64)
                out[rows] |= digit << shift
    if int(out.max()) >= alphabet:
        raise ValueError(f"range-coded stream decodes outside its alphabet [0, {alphabet})")
    return out


def entropy_bits(values: np.ndarray) -> float:
    """Empirical order-0 entropy of ``values`` in bits per symbol (for reports and choices)."""
    values = np.asarray(values).reshape(-1)
    if values.size == 0:
        return 0.0
    _, counts = np.unique(values, return_counts=True)
    p = counts / values.size
    return float(-(p * np.log2(p)).sum())


def split_payloads(blob: bytes, parts: int) -> Tuple[bytes, ...]:
    """Inverse of :func:`join_payloads`: ``parts`` length-prefixed byte strings."""
    out, at = [], 0
    for _ in range(parts):
        if at + 4 > len(blob):
            raise ValueError("truncated multi-part payload")
        (size,) = struct.unpack_from("<I", blob, at)
        if at + 4 + size > len(blob):
            raise ValueError("truncated multi-part payload")
        out.append(blob[at + 4:at + 4 + size])
        at += 4 + size
    if at != len(blob):
        raise ValueError("multi-part payload has trailing bytes")
    return tuple(out)


def join_payloads(*parts: bytes) -> bytes:
    """Length-prefixed concatenation of byte strings."""
    return b"".join(struct.pack("<I", len(p)) + p for p in parts)
