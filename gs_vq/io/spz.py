"""Niantic's ``.spz``: gzip-wrapped packed Gaussians (format versions 2 and 3), written and read.

Layout (nianticlabs/spz, ``load-spz.cc``; all little-endian), the whole file gzip-compressed::

    header   magic u32 0x5053474e ("NGSP"), version u32, numPoints u32,
             shDegree u8, fractionalBits u8, flags u8, reserved u8            (16 bytes)
    positions  N x 3 x 24-bit signed fixed point, ``fractionalBits`` fractional bits
    alphas     N x u8     sigmoid(opacity) * 255
    colors     N x 3 u8   f_dc * (0.15 * 255) + 127.5
    scales     N x 3 u8   (log scale + 10) * 16
    rotations  v3: N x u32 "smallest three" (2-bit index of the largest |component| of the
               xyzw quaternion, then three 10-bit sign + 9-bit magnitude / sqrt(1/2) fields,
               first component in the high bits); v2: N x 3 u8 (x, y, z) * 127.5 + 127.5, w >= 0
    sh         N x dim(shDegree) x 3 u8, coefficient-major with the colour channel inner,
               round(x * 128) + 128 snapped to buckets of 8 (degree 1) or 16 (degrees 2-3)

The format stores RUB axes (x right, y up, z back, as three.js); a 3DGS ply is RDF (OpenCV).
Writing flips y and z: positions (x, -y, -z), quaternions (w, x, -y, -z) and the SH coefficients
that are odd in y or z; reading flips back. Version 4 (zstd streams, Niantic's newest) is not
written: version 3 is what the reference loader and most web viewers read.
"""

import gzip
import os
import struct
from typing import Dict

import numpy as np
import torch
from torch import Tensor

from ..errors import GsVqError

from ..files import atomic_path
from ..splats import sh_degree_for

MAGIC = 0x5053474E
VERSION = 3
FRACTIONAL_BITS = 12
COLOR_SCALE = 0.15
SQRT1_2 = 0.7071067811865476
HEADER = struct.Struct("<IIIBBBB")
# sign of each SH coefficient (bands 1-3, gsplat's order) under the y/z flip RDF <-> RUB
SH_FLIP = np.array([-1, -1, 1, -1, 1, 1, -1, 1, -1, 1, -1, -1, 1, -1, 1], dtype=np.float32)
POS_FLIP = np.array([1, -1, -1], dtype=np.float32)
SPLAT_KEYS = ("means", "scales", "quats", "opacities", "sh0", "shN")


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _quantize_sh(x: np.ndarray, bucket: int) -> np.ndarray:
    q = np.round(x * 128.0).astype(np.int64) + 128
    q = np.fix((q + bucket // 2) / bucket).astype(np.int64) * bucket  # C integer division
    return np.clip(q, 0, 255).astype(np.uint8)


def _pack_smallest_three(q: np.ndarray) -> np.ndarray:
    """Unit quaternions ``[N, 4]`` (xyzw) -> ``[N]`` uint32 smallest-three codes."""
    n = len(q)
    largest = np.abs(q).argmax(axis=1)  # [N]
    negate = q[np.arange(n), largest] < 0
    comp = largest.astype(np.uint32)
    for i in range(4):
        keep = largest != i
        negbit = ((q[:, i] < 0) ^ negate).astype(np.uint32)
        mag = (511.0 * (np.abs(q[:, i]) / SQRT1_2) + 0.5).astype(np.uint32)
        comp = np.where(keep, (comp << 10) | (negbit << 9) | np.minimum(mag, 511), comp)
    return comp.astype("<u4")


def _unpack_smallest_three(comp: np.ndarray) -> np.ndarray:
    """``[N]`` uint32 codes -> ``[N, 4]`` xyzw unit quaternions."""
    comp = comp.astype(np.uint32).copy()
    largest = (comp >> 30).astype(np.int64)
    q = np.zeros((len(comp), 4), dtype=np.float32)
    for i in range(3, -1, -1):
        take = largest != i
        mag = (comp & 511).astype(np.float32)
        sign = np.where((comp >> 9) & 1, -1.0, 1.0).astype(np.float32)
        q[:, i] = np.where(take, sign * SQRT1_2 * mag / 511.0, 0.0)
        comp = np.where(take, comp >> 10, comp)
    rows = np.arange(len(comp))
    q[rows, largest] = np.sqrt(np.clip(1.0 - (q ** 2).sum(axis=1), 0.0, None))
    return q


def splats_to_spz(splats: Dict[str, Tensor], sh1_bits: int = 5, sh_rest_bits: int = 4, sort: bool = True) -> bytes:
    """Raw splats (gsplat names, activations not applied) -> ``.spz`` bytes (version 3).

    With ``sort`` the Gaussians are written in Morton order of their centres (gsplat's
    ``sort_centers``, as its .splat and SuperSplat writers do): neighbours then sit side by side
    and gzip finds more repeats.
    """
    if sort and len(splats["means"]):
        from gsplat.exporter import sort_centers

        means = splats["means"].detach().float().cpu()
        order = sort_centers(means, torch.arange(len(means)))
        splats = {k: v.detach().cpu()[order] for k, v in splats.items() if k in SPLAT_KEYS}
    means = splats["means"].detach().float().cpu().numpy() * POS_FLIP  # [N, 3] RUB
    n = len(means)
    limit = (1 << 23) / (1 << FRACTIONAL_BITS)
    if n and np.abs(means).max() >= limit:
        raise GsVqError(f".spz stores positions within +-{limit:g} units; this scene reaches {np.abs(means).max():.1f}")
    shN = splats["shN"].detach().float().cpu().numpy() if "shN" in splats else np.zeros((n, 0, 3), np.float32)
    degree = sh_degree_for(shN.shape[1])
    if degree is None or degree > 3:
        raise GsVqError(f".spz: {shN.shape[1]} SH coefficients per channel is not a degree 0-3 set")
    fixed = np.round(means * (1 << FRACTIONAL_BITS)).astype(np.int32)  # [N, 3]
    positions = np.stack([(fixed >> s) & 0xFF for s in (0, 8, 16)], axis=-1).astype(np.uint8)  # [N, 3, 3]
    alphas = _u8(torch.sigmoid(splats["opacities"].detach().float().cpu()).numpy() * 255.0)  # [N]
    colors = _u8(splats["sh0"].detach().float().cpu().numpy().reshape(n, 3) * (COLOR_SCALE * 255) + 127.5)
    scales = _u8((splats["scales"].detach().float().cpu().numpy() + 10.0) * 16.0)  # [N, 3]
    q = splats["quats"].detach().float().cpu().numpy()  # [N, 4] wxyz
    q = q / np.linalg.norm(q, axis=1, keepdims=True).clip(1e-12)
    xyzw = np.stack([q[:, 1], -q[:, 2], -q[:, 3], q[:, 0]], axis=1)  # RDF -> RUB: (x, -y, -z, w)
    rotations = _pack_smallest_three(xyzw)  # [N]
    sh = shN * SH_FLIP[: shN.shape[1], None]  # [N, K-1, 3]
    sh_bytes = np.empty(sh.shape, dtype=np.uint8)
    if degree:
        sh_bytes[:, :3] = _quantize_sh(sh[:, :3], 1 << (8 - sh1_bits))
        sh_bytes[:, 3:] = _quantize_sh(sh[:, 3:], 1 << (8 - sh_rest_bits))
    body = b"".join([HEADER.pack(MAGIC, VERSION, n, degree, FRACTIONAL_BITS, 0, 0), positions.tobytes(),
                     alphas.tobytes(), colors.tobytes(), scales.tobytes(), rotations.tobytes(), sh_bytes.tobytes()])
    return gzip.compress(body, compresslevel=9, mtime=0)


def save_spz(splats: Dict[str, Tensor], path: str) -> int:
    """Write ``splats`` as ``.spz`` (atomically). Returns the file size in bytes."""
    data = splats_to_spz(splats)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return os.path.getsize(path)


def _logit(a: np.ndarray) -> np.ndarray:
    a = np.clip(a, 0.5 / 255, 1 - 0.5 / 255)  # u8 alphas 0 and 255 stay finite
    return np.log(a / (1 - a))


def spz_to_splats(data: bytes, name: str = ".spz") -> Dict[str, Tensor]:
    """``.spz`` bytes (versions 2 and 3) -> raw splats (``means``, ``scales``, ``quats`` wxyz,
    ``opacities``, ``sh0 [N,1,3]``, ``shN [N,K-1,3]``) in the ply's RDF axes."""
    if data[:4] == b"NGSP":
        raise GsVqError(f"{name}: spz version 4 (zstd streams) is not supported; versions 2 and 3 are")
    try:
        raw = gzip.decompress(data)
    except (OSError, EOFError, ValueError) as e:
        raise GsVqError(f"{name} is not a gzip-compressed .spz: {e}") from None
    if len(raw) < HEADER.size:
        raise GsVqError(f"{name}: truncated .spz header")
    magic, version, n, degree, frac, _flags, _ = HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise GsVqError(f"{name}: not an .spz file (bad magic)")
    if version not in (2, 3) or degree > 3:
        raise GsVqError(f"{name}: unsupported .spz version {version} / SH degree {degree}")
    dim = (degree + 1) ** 2 - 1
    rot_bytes = 4 if version >= 3 else 3
    sizes = [9 * n, n, 3 * n, 3 * n, rot_bytes * n, 3 * dim * n]
    if len(raw) < HEADER.size + sum(sizes):
        raise GsVqError(f"{name}: {len(raw)} bytes cannot hold {n} Gaussians")
    parts, at = [], HEADER.size
    for size in sizes:
        parts.append(np.frombuffer(raw, dtype=np.uint8, count=size, offset=at))
        at += size
    pos, alpha, color, scale, rot, sh = parts
    p = pos.reshape(n, 3, 3).astype(np.int32)
    fixed = p[..., 0] | (p[..., 1] << 8) | (p[..., 2] << 16)
    fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)  # sign extension
    means = fixed.astype(np.float32) / (1 << frac) * POS_FLIP  # [N, 3]
    if version >= 3:
        xyzw = _unpack_smallest_three(rot.view("<u4"))
    else:
        xyz = rot.reshape(n, 3).astype(np.float32) / 127.5 - 1.0
        xyzw = np.concatenate([xyz, np.sqrt(np.clip(1 - (xyz ** 2).sum(1, keepdims=True), 0, None))], axis=1)
    quats = np.stack([xyzw[:, 3], xyzw[:, 0], -xyzw[:, 1], -xyzw[:, 2]], axis=1)  # RUB -> RDF, wxyz
    shN = (sh.reshape(n, dim, 3).astype(np.float32) - 128.0) / 128.0 * SH_FLIP[:dim, None]
    out = {
        "means": means,
        "scales": scale.reshape(n, 3).astype(np.float32) / 16.0 - 10.0,
        "quats": quats,
        "opacities": _logit(alpha.astype(np.float32) / 255.0),
        "sh0": ((color.reshape(n, 1, 3).astype(np.float32) / 255.0) - 0.5) / COLOR_SCALE,
        "shN": shN,
    }
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in out.items()}


def load_spz(path: str, device: str = "cpu") -> Dict[str, Tensor]:
    """Read a ``.spz`` file into raw splat tensors (see :func:`spz_to_splats`)."""
    if not os.path.isfile(path):
        raise GsVqError(f"file not found: {path}")
    with open(path, "rb") as f:
        data = f.read()
    return {k: v.to(device) for k, v in spz_to_splats(data, path).items()}
