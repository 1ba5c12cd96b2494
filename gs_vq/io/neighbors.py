"""Per-Gaussian integer streams coded against the previous Gaussian in Morton order.

Neighbours in Morton order are near in space, and after densification (a clone or split copies
its parent's values) often carry the very same code: on lego (``--config vq``) 12% to 36% of the
index streams repeat the previous Gaussian's value. Two transforms, both range-coded
(:mod:`gs_vq.io.entropy`) and both decoded without a per-Gaussian loop:

* ``same``: a flag per Gaussian (equal to the previous one?), then the values of the others;
  the flags may be conditioned on a known context (e.g. the flags of the attribute's previous
  index column: a Gaussian that repeats one code tends to repeat the next);
* ``recent``: which of the last ``WINDOW`` Gaussians holds the same value (0: none), then the
  values of the others; decoding follows the references by pointer jumping (log N passes);
* ``delta``: ``(x_i - x_{i-1}) mod K`` (for codebooks in value order, e.g. scalar grids).
"""

from typing import Optional, Tuple

import numpy as np

from . import entropy as E

Context = Optional[Tuple[np.ndarray, int]]
WINDOW = 16  # how far back ``recent`` looks


def same_flags(values: np.ndarray) -> np.ndarray:
    """[N] -> [N] int64: 1 where a value equals the previous one (never for the first)."""
    values = np.asarray(values).reshape(-1)
    flags = np.zeros(values.size, dtype=np.int64)
    flags[1:] = values[1:] == values[:-1]
    return flags


def encode_same(values: np.ndarray, alphabet: int, context: Context = None) -> bytes:
    values = np.asarray(values).astype(np.uint64).reshape(-1)
    if values.size == 0:
        return b""
    flags = same_flags(values)
    ctx = context if context is not None else (None, 1)
    return E.join_payloads(E.encode_symbols(flags, 2, *ctx),
                           E.encode_symbols(values[flags == 0], alphabet))


def decode_same(payload: bytes, alphabet: int, count: int, context: Context = None) -> np.ndarray:
    if count == 0:
        if payload:
            raise ValueError("empty stream with a payload")
        return np.zeros(0, dtype=np.uint64)
    flag_bytes, literal_bytes = E.split_payloads(payload, 2)
    ctx = context if context is not None else (None, 1)
    flags = E.decode_symbols(flag_bytes, 2, count, *ctx).astype(bool)
    if flags[0]:
        raise ValueError("the first value cannot repeat a previous one")
    literals = E.decode_symbols(literal_bytes, alphabet, int((~flags).sum()))
    source = np.maximum.accumulate(np.where(flags, 0, np.arange(count)))  # last literal row
    full = np.zeros(count, dtype=np.uint64)
    full[~flags] = literals
    return full[source]


def encode_delta(values: np.ndarray, alphabet: int) -> bytes:
    values = np.asarray(values).astype(np.int64).reshape(-1)
    deltas = np.diff(values, prepend=0) % alphabet
    return E.encode_symbols(deltas, alphabet)


def decode_delta(payload: bytes, alphabet: int, count: int) -> np.ndarray:
    if alphabet > 1 << 32:
        raise ValueError("delta streams need an alphabet of at most 2**32")
    deltas = E.decode_symbols(payload, alphabet, count)
    return (np.cumsum(deltas, dtype=np.uint64) % np.uint64(alphabet)).astype(np.uint64)


def encode_recent(values: np.ndarray, alphabet: int) -> bytes:
    values = np.asarray(values).astype(np.uint64).reshape(-1)
    if values.size == 0:
        return b""
    ref = np.zeros(values.size, dtype=np.int64)  # nearest j <= WINDOW with x[i - j] == x[i]
    for j in range(min(WINDOW, max(values.size - 1, 0)), 0, -1):
        hit = np.zeros(values.size, dtype=bool)
        hit[j:] = values[j:] == values[:-j]
        ref[hit] = j
    return E.join_payloads(E.encode_symbols(ref, WINDOW + 1),
                           E.encode_symbols(values[ref == 0], alphabet))


def decode_recent(payload: bytes, alphabet: int, count: int) -> np.ndarray:
    if count == 0:
        if payload:
            raise ValueError("empty stream with a payload")
        return np.zeros(0, dtype=np.uint64)
    ref_bytes, literal_bytes = E.split_payloads(payload, 2)
    ref = E.decode_symbols(ref_bytes, WINDOW + 1, count).astype(np.int64)
    rows = np.arange(count)
    src = rows - ref  # a literal points at itself, a reference at an earlier row
    if src.min() < 0:
        raise ValueError("a reference before the first value")
    literal = ref == 0
    full = np.zeros(count, dtype=np.uint64)
    full[literal] = E.decode_symbols(literal_bytes, alphabet, int(literal.sum()))
    for _ in range(64):  # pointer jumping: every chain ends at a literal in <= log2(N) passes
        nxt = src[src]
        if np.array_equal(nxt, src):
            break
        src = nxt
    return full[src]
