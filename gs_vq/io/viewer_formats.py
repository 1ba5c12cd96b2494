"""Readers for the web viewers' formats that gsplat's exporter writes (it has no readers):

- ``.splat`` (antimatter15's viewer): 32 bytes per Gaussian, position float32 x3, scale float32 x3
  (linear, not log), RGBA uint8 (``sh0 * C0 + 0.5`` and sigmoid(opacity), times 255), rotation
  uint8 x4 (wxyz, ``q / |q| * 128 + 128``); degree-0 colour only.
- SuperSplat's compressed ply (``*.compressed.ply``): chunks of 256 Gaussians with float min/max
  bounds; per Gaussian ``packed_position`` / ``packed_scale`` (11-10-11 bits inside the chunk's
  bounds), ``packed_rotation`` (2-bit index of the dropped largest component, 3 x 10 bits scaled by
  sqrt(2)), ``packed_color`` (8-8-8-8 bits: colour inside the bounds, then opacity); an ``sh``
  element of uint8 ``f_rest_*`` decoded as ``(v / 256 - 0.5) * 8``. Decoded as PlayCanvas'
  splat-transform decodes it.

Both return raw splats with gsplat's names (log scales, logit opacities, ``sh0 [N,1,3]``,
``shN [N,K-1,3]``), the form :func:`gs_vq.io.load_splats` returns.
"""

import os
from typing import Dict

import numpy as np
import torch
from plyfile import PlyData
from torch import Tensor

from ..errors import GsVqError
from .ply import ply_header_has

SH_C0 = 0.28209479177387814
CHUNK = 256
_CHUNK_FIELDS = ["min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
                 "min_scale_x", "min_scale_y", "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z",
                 "min_r", "min_g", "min_b", "max_r", "max_g", "max_b"]
_PACKED = ["packed_position", "packed_rotation", "packed_scale", "packed_color"]


def _logit(a: np.ndarray) -> np.ndarray:
    a = np.clip(a, 0.5 / 255, 1 - 0.5 / 255)  # 8-bit alphas 0 and 255 stay finite
    return np.log(a / (1 - a))


def _tensors(d: Dict[str, np.ndarray], device: str) -> Dict[str, Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)).to(device) for k, v in d.items()}


def load_splat_file(path: str, device: str = "cpu") -> Dict[str, Tensor]:
    """Read an antimatter15 ``.splat`` file (degree-0 colour: ``shN`` is ``[N, 0, 3]``)."""
    if not os.path.isfile(path):
        raise GsVqError(f"file not found: {path}")
    raw = np.fromfile(path, dtype=np.uint8)
    if len(raw) % 32:
        raise GsVqError(f"{path}: {len(raw)} bytes is not a whole number of 32-byte .splat records")
    rec = raw.reshape(-1, 32)
    n = len(rec)
    floats = rec[:, :24].copy().view("<f4").reshape(n, 6)  # [N, 6]
    rgba = rec[:, 24:28].astype(np.float32) / 255.0  # [N, 4]
    quats = (rec[:, 28:32].astype(np.float32) - 128.0) / 128.0  # [N, 4] wxyz
    if not np.isfinite(floats).all() or (floats[:, 3:] <= 0).any():
        raise GsVqError(f"{path}: non-finite positions or non-positive scales")
    out = {
        "means": floats[:, :3],
        "scales": np.log(floats[:, 3:]),
        "quats": np.where(np.linalg.norm(quats, axis=1, keepdims=True) > 0, quats, [1, 0, 0, 0]),
        "opacities": _logit(rgba[:, 3]),
        "sh0": ((rgba[:, :3] - 0.5) / SH_C0).reshape(n, 1, 3),
        "shN": np.zeros((n, 0, 3), np.float32),
    }
    return _tensors(out, device)


def is_supersplat_ply(path: str) -> bool:
    """True when ``path`` has SuperSplat's compressed-ply header (chunk + packed vertex elements)."""
    return ply_header_has(path, b"element chunk", b"packed_position")


def _unorm(v: np.ndarray, shift: int, bits: int) -> np.ndarray:
    return ((v >> shift) & ((1 << bits) - 1)).astype(np.float32) / ((1 << bits) - 1)


def _unpack_111011(v: np.ndarray) -> np.ndarray:
    return np.stack([_unorm(v, 21, 11), _unorm(v, 11, 10), _unorm(v, 0, 11)], axis=-1)  # [N, 3] in [0, 1]


def _unpack_rotation(v: np.ndarray) -> np.ndarray:
    norm = 1.0 / (np.sqrt(2) * 0.5)
    abc = np.stack([(_unorm(v, s, 10) - 0.5) * norm for s in (20, 10, 0)], axis=-1)  # [N, 3]
    m = np.sqrt(np.clip(1.0 - (abc ** 2).sum(axis=1), 0.0, None))  # [N]
    which = (v >> 30).astype(np.int64)
    q = np.empty((len(v), 4), np.float32)
    for w in range(4):
        others = [i for i in range(4) if i != w]
        sel = which == w
        q[sel, w] = m[sel]
        q[np.ix_(sel, others)] = abc[sel]
    return q  # in the order the writer's quaternions had (gsplat: wxyz)


def load_supersplat_ply(path: str, device: str = "cpu") -> Dict[str, Tensor]:
    """Read SuperSplat's compressed ply (what ``gsplat.exporter`` writes as ``ply_compressed``)."""
    if not os.path.isfile(path):
        raise GsVqError(f"file not found: {path}")
    try:
        ply = PlyData.read(path)
        chunk, vertex = ply["chunk"], ply["vertex"]
        bounds = np.stack([np.asarray(chunk[f], np.float32) for f in _CHUNK_FIELDS], axis=1)  # [C, 18]
        packed = [np.asarray(vertex[f]).astype(np.uint32) for f in _PACKED]
        names = [p.name for p in ply["sh"].properties] if "sh" in ply else []
        rest_names = sorted((n for n in names if n.startswith("f_rest_")), key=lambda n: int(n[7:]))
        rest = np.stack([np.asarray(ply["sh"][n], np.float32) for n in rest_names], axis=1) if rest_names else None
    except Exception as e:  # plyfile raises many types on a corrupt file
        raise GsVqError(f"{path} is not a SuperSplat compressed ply: {type(e).__name__}: {e}") from None
    pos, rot, scl, col = packed
    n = len(pos)
    if len(bounds) * CHUNK < n:
        raise GsVqError(f"{path}: {len(bounds)} chunks cannot hold {n} Gaussians")
    b = bounds[np.arange(n) // CHUNK]  # [N, 18]
    lerp = lambda lo, hi, t: lo * (1 - t) + hi * t  # noqa: E731
    rgba = np.stack([_unorm(col, s, 8) for s in (24, 16, 8, 0)], axis=-1)  # [N, 4]
    rgb = lerp(b[:, 12:15], b[:, 15:18], rgba[:, :3])
    if rest is not None and rest.shape[1] % 3:
        raise GsVqError(f"{path}: {rest.shape[1]} f_rest properties is not a multiple of 3")
    shN = np.zeros((n, 0, 3), np.float32) if rest is None else \
        ((rest / 256.0 - 0.5) * 8.0).reshape(n, 3, -1).transpose(0, 2, 1)  # channel-major -> [N, K-1, 3]
    out = {
        "means": lerp(b[:, 0:3], b[:, 3:6], _unpack_111011(pos)),
        "scales": lerp(b[:, 6:9], b[:, 9:12], _unpack_111011(scl)),
        "quats": _unpack_rotation(rot),
        "opacities": _logit(rgba[:, 3]),
        "sh0": ((rgb - 0.5) / SH_C0).reshape(n, 1, 3),
        "shN": shN,
    }
    return _tensors(out, device)
