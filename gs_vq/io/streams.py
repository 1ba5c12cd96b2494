"""Bit-level building blocks of the compressed ply: fixed-width bit packing, Morton codes,
fixed-point opacities (positions: :mod:`.grid`), and the lossless stream codecs.

Everything here is NumPy on the CPU and deterministic: the writer and the reader (and the VQ
plugin when it snaps a model to the stored precision) call the same functions, so a value that
went through ``dequantize(quantize(x))`` once comes back bit-identical the second time.
"""

import lzma
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from ..bits import bits_for as index_bits  # noqa: F401  (re-exported: the width of an index stream)
from .grid import PositionGrid  # noqa: F401  (re-exported: positions live on it)


# --------------------------------------------------------------------------- bit packing
def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Pack unsigned integers with exactly ``bits`` bits each, least significant bit first.

    Args:
        values: [N] non-negative integers < 2**bits.
        bits: 0..64 bits per value; 0 gives an empty payload.
    Returns:
        ceil(N * bits / 8) bytes.
    """
    values = np.ascontiguousarray(values, dtype=np.uint64).reshape(-1)
    if bits == 0 or values.size == 0:
        return b""
    shifts = np.arange(bits, dtype=np.uint64)
    planes = ((values[:, None] >> shifts[None, :]) & np.uint64(1)).astype(np.uint8)  # [N, bits]
    return np.packbits(planes.reshape(-1), bitorder="little").tobytes()


def unpack_bits(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``count`` values of ``bits`` bits -> [count] uint64."""
    if bits == 0 or count == 0:
        return np.zeros(count, dtype=np.uint64)
    need = (count * bits + 7) // 8
    if len(data) < need:
        raise ValueError(f"bit stream holds {len(data)} bytes, {need} needed")
    flat = np.unpackbits(np.frombuffer(data, dtype=np.uint8, count=need), bitorder="little")
    planes = flat[: count * bits].reshape(count, bits).astype(np.uint64)  # [count, bits]
    return (planes << np.arange(bits, dtype=np.uint64)[None, :]).sum(axis=1, dtype=np.uint64)


# --------------------------------------------------------------------------- Morton order
def morton_encode(q: np.ndarray, bits: int) -> np.ndarray:
    """Interleave the bits of [N, 3] grid coordinates (each < 2**bits, bits <= 21) -> [N] uint64."""
    q = q.astype(np.uint64)
    code = np.zeros(q.shape[0], dtype=np.uint64)
    one = np.uint64(1)
    for b in range(bits):
        for axis in range(3):
            code |= ((q[:, axis] >> np.uint64(b)) & one) << np.uint64(3 * b + axis)
    return code


def morton_decode(code: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of :func:`morton_encode`: [N] uint64 -> [N, 3] uint64."""
    code = code.astype(np.uint64)
    q = np.zeros((code.shape[0], 3), dtype=np.uint64)
    one = np.uint64(1)
    for b in range(bits):
        for axis in range(3):
            q[:, axis] |= ((code >> np.uint64(3 * b + axis)) & one) << np.uint64(b)
    return q


# --------------------------------------------------------------------------- fixed point
def quantize_opacity(logits: np.ndarray, bits: int) -> np.ndarray:
    """Opacity logits [N] -> [N] int64 bins of ``sigmoid`` in [0, 1] with ``2**bits`` equal bins."""
    alpha = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))
    return np.clip(np.floor(alpha * 2**bits), 0, 2**bits - 1).astype(np.int64)


def dequantize_opacity(q: np.ndarray, bits: int) -> np.ndarray:
    """Bins -> float32 logits of the bin centres (never exactly 0 or 1 after ``sigmoid``)."""
    alpha = (np.asarray(q, np.float64) + 0.5) / 2**bits
    return np.log(alpha / (1.0 - alpha)).astype(np.float32)


# --------------------------------------------------------------------------- codecs
def _byte_planes(values: np.ndarray, width: int) -> bytes:
    """[N] uint -> ``width`` planes of N bytes each (lowest byte first)."""
    le = values.astype("<u8").view(np.uint8).reshape(-1, 8)[:, :width]
    return np.ascontiguousarray(le.T).tobytes()


def _from_byte_planes(data: bytes, width: int, count: int) -> np.ndarray:
    planes = np.frombuffer(data, dtype=np.uint8, count=width * count).reshape(width, count)
    out = np.zeros((count, 8), dtype=np.uint8)
    out[:, :width] = planes.T
    return out.reshape(-1).view("<u8").astype(np.uint64)


def _xz(data: bytes) -> bytes:
    # a dictionary no larger than the data: same output, far less set-up time on small streams
    lzma2 = {"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME,
             "dict_size": min(max(len(data), 4096), 64 << 20)}
    return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_NONE, filters=[lzma2])


def _unxz(data: bytes) -> bytes:
    return lzma.decompress(data, format=lzma.FORMAT_XZ)


_ENCODERS: Dict[str, Callable[[np.ndarray, int], bytes]] = {
    "packed": pack_bits,
    "packed+xz": lambda v, bits: _xz(pack_bits(v, bits)),
    "planes+xz": lambda v, bits: _xz(_byte_planes(v, max(1, (bits + 7) // 8))),
    "planes+zlib": lambda v, bits: zlib.compress(_byte_planes(v, max(1, (bits + 7) // 8)), 9),
}

_DECODERS: Dict[str, Callable[[bytes, int, int], np.ndarray]] = {
    "packed": unpack_bits,
    "packed+xz": lambda d, bits, n: unpack_bits(_unxz(d), bits, n),
    "planes+xz": lambda d, bits, n: _from_byte_planes(_unxz(d), max(1, (bits + 7) // 8), n),
    "planes+zlib": lambda d, bits, n: _from_byte_planes(
        zlib.decompress(d), max(1, (bits + 7) // 8), n),
}

CODECS = tuple(_ENCODERS)


def encode_uints(values: np.ndarray, bits: int, codecs=CODECS) -> Tuple[str, bytes]:
    """Losslessly code [N] integers < 2**bits with whichever of ``codecs`` is smallest.

    Returns:
        (codec name, payload). "packed" is the plain ``bits``-per-value layout; the others
        entropy-code it (xz = LZMA2, zlib = DEFLATE).
    """
    values = np.asarray(values).astype(np.uint64).reshape(-1)
    if bits == 0:
        return "packed", b""
    encode = lambda name: (name, _ENCODERS[name](values, bits))  # noqa: E731
    pool = _codec_pool() if values.size >= PARALLEL_MIN else None
    tried = list(pool.map(encode, codecs)) if pool is not None else [encode(name) for name in codecs]
    return min(tried, key=lambda t: len(t[1]))  # the first of equal sizes, as in codec order


# Streams of at least this many values try their codecs on threads (LZMA and DEFLATE release
# the GIL): at 1M Gaussians the writer spends most of its time here.
PARALLEL_MIN = 1 << 16
_POOL: Optional[ThreadPoolExecutor] = None


def _codec_pool() -> Optional[ThreadPoolExecutor]:
    """One pool of ``min(len(CODECS), cores)`` threads for the process (None on one core)."""
    global _POOL
    workers = min(len(_ENCODERS), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                  else os.cpu_count() or 1)
    if _POOL is None and workers > 1:
        _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gs-vq-codec")
    return _POOL


def decode_uints(codec: str, payload: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`encode_uints` -> [count] uint64. Raises ValueError on bad input."""
    if codec not in _DECODERS:
        raise ValueError(f"unknown stream codec {codec!r}")
    if bits == 0:
        return np.zeros(count, dtype=np.uint64)
    try:
        values = _DECODERS[codec](payload, bits, count)
    except (lzma.LZMAError, zlib.error, EOFError) as e:
        raise ValueError(f"undecodable {codec} stream ({e})") from None
    if values.shape != (count,):
        raise ValueError(f"{codec} stream holds {values.size} values, {count} expected")
    if bits < 64 and count and int(values.max()) >= 2**bits:
        raise ValueError(f"{codec} stream has a value out of its {bits}-bit range")
    return values


def encode_deltas(sorted_codes: np.ndarray) -> Tuple[str, int, bytes]:
    """Code an ascending [N] uint64 sequence as its first value and gaps -> (codec, bits, payload)."""
    gaps = np.diff(sorted_codes.astype(np.uint64), prepend=np.uint64(0))  # [N]
    bits = max(1, int(gaps.max()).bit_length()) if len(gaps) else 1
    codec, payload = encode_uints(gaps, bits)
    return codec, bits, payload


def decode_deltas(codec: str, payload: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`encode_deltas` -> [count] uint64."""
    gaps = decode_uints(codec, payload, bits, count)
    return np.cumsum(gaps, dtype=np.uint64)
