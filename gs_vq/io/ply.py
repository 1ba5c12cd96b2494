"""The standard 3DGS ``.ply`` layout of the original Inria code, read and written with plyfile.

One ``vertex`` element, float32 properties, in this order::

    x y z  nx ny nz  f_dc_0..2  f_rest_0..3*(K-1)-1  opacity  scale_0..2  rot_0..3  [sem_0..F-1]

``f_rest`` is channel-major (all coefficients of R, then G, then B), ``opacity`` is a logit,
``scale_*`` are logs and ``rot_*`` a (w, x, y, z) quaternion: exactly the raw values of gsplat's
splat ``ParameterDict``, so saving and loading is lossless. ``sem_*`` (optional) hold per-Gaussian
semantic features, ``labels`` / ``labelconf`` (optional) a per-Gaussian semantic codebook index
and its confidence (:mod:`gs_vq.semantics.labels`); viewers ignore properties they do not know.
"""

import os
from typing import Dict

import numpy as np
import torch
from plyfile import PlyData, PlyElement
from torch import Tensor

from ..errors import GsVqError

from ..files import atomic_path, existing_file

# per-Gaussian semantic label (codebook entry, [N] int64) and its confidence ([N] float in [0, 1]): one
# name each for the splat key, the ply property and the compressed.ply attribute (whose names are
# alphanumeric only, hence no underscore)
LABEL_KEY, CONF_KEY = "labels", "labelconf"
OLD_LABEL_PROPERTIES = {LABEL_KEY: "label", CONF_KEY: "label_conf"}  # what plys written before called them; still read


def ply_header_has(path: str, *markers: bytes) -> bool:
    """True when ``path`` starts like a PLY file and its first 4 KiB hold every one of ``markers``
    (how each ply flavour is recognised without parsing it); False for unreadable files."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return head.startswith(b"ply") and all(m in head for m in markers)


def _numbered(names, prefix: str):
    found = sorted((n for n in names if n.startswith(prefix)), key=lambda n: int(n[len(prefix):]))
    return found


def splats_to_arrays(splats: Dict[str, Tensor]) -> Dict[str, np.ndarray]:
    """Raw splat tensors -> name -> float32 ``[N]`` arrays in the standard property order."""
    means = splats["means"].detach().float().cpu()  # [N, 3]
    N = means.shape[0]
    sh0 = splats["sh0"].detach().float().cpu().reshape(N, 3)  # [N, 3]
    shN = splats.get("shN")
    rest = (
        shN.detach().float().cpu().transpose(1, 2).reshape(N, -1)  # [N, 3*(K-1)]
        if shN is not None and shN.numel() > 0
        else torch.zeros(N, 0)
    )
    columns = {"x": means[:, 0], "y": means[:, 1], "z": means[:, 2]}
    columns.update({n: torch.zeros(N) for n in ("nx", "ny", "nz")})
    columns.update({f"f_dc_{i}": sh0[:, i] for i in range(3)})
    columns.update({f"f_rest_{i}": rest[:, i] for i in range(rest.shape[1])})
    columns["opacity"] = splats["opacities"].detach().float().cpu().reshape(N)
    scales = splats["scales"].detach().float().cpu()  # [N, 3]
    quats = splats["quats"].detach().float().cpu()  # [N, 4]
    columns.update({f"scale_{i}": scales[:, i] for i in range(3)})
    columns.update({f"rot_{i}": quats[:, i] for i in range(4)})
    if "features" in splats:
        feats = splats["features"].detach().float().cpu()  # [N, F]
        columns.update({f"sem_{i}": feats[:, i] for i in range(feats.shape[1])})
    for key in (LABEL_KEY, CONF_KEY):  # per-Gaussian semantic label and its confidence
        if key in splats:
            columns[key] = splats[key].detach().float().cpu().reshape(N)
    return {k: v.numpy().astype(np.float32) for k, v in columns.items()}


def save_ply(splats: Dict[str, Tensor], path: str) -> int:
    """Write ``splats`` as a standard 3DGS ply (atomically). Returns the file size in bytes."""
    columns = splats_to_arrays(splats)
    N = len(columns["x"])
    vertex = np.empty(N, dtype=[(name, "f4") for name in columns])
    for name, values in columns.items():
        vertex[name] = values
    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(vertex, "vertex")]).write(tmp)
    return os.path.getsize(path)


def load_ply(path: str, device: str = "cpu") -> Dict[str, Tensor]:
    """Read a standard 3DGS ply into raw splat tensors (``means``, ``scales``, ``quats``,
    ``opacities``, ``sh0 [N,1,3]``, ``shN [N,K-1,3]``, optional ``features``)."""
    existing_file(path, "ply file")
    try:
        ply = PlyData.read(path)
        v = ply["vertex"]
        names = [p.name for p in v.properties]
        col = lambda n: torch.from_numpy(np.asarray(v[n], dtype=np.float32))  # noqa: E731
        needed = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
        needed += [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)]
        missing = [n for n in needed if n not in names]
        if missing:
            raise GsVqError(f"{path} is not a 3DGS ply: missing properties {', '.join(missing)}")
        N = len(v["x"])
        if N == 0:
            raise GsVqError(f"{path} holds no Gaussians (0 vertices)")
        stack = lambda ns: torch.stack([col(n) for n in ns], dim=-1) if ns else torch.zeros(N, 0)  # noqa: E731
        rest_names = _numbered(names, "f_rest_")
        if len(rest_names) % 3:
            raise GsVqError(f"{path}: number of f_rest properties ({len(rest_names)}) is not a multiple of 3")
        rest = stack(rest_names)  # [N, 3*(K-1)]
        splats = {
            "means": stack(["x", "y", "z"]),  # [N, 3]
            "scales": stack([f"scale_{i}" for i in range(3)]),  # [N, 3]
            "quats": stack([f"rot_{i}" for i in range(4)]),  # [N, 4]
            "opacities": col("opacity"),  # [N]
            "sh0": stack([f"f_dc_{i}" for i in range(3)]).reshape(N, 1, 3),  # [N, 1, 3]
            "shN": rest.reshape(N, 3, -1).transpose(1, 2).contiguous(),  # [N, K-1, 3]
        }
        sem = _numbered(names, "sem_")
        if sem:
            splats["features"] = stack(sem)  # [N, F]
        for key, old in OLD_LABEL_PROPERTIES.items():
            prop = key if key in names else old
            if prop in names:
                splats[key] = col(prop).long() if key == LABEL_KEY else col(prop)  # [N]
    except GsVqError:
        raise
    except Exception as e:  # plyfile raises many types on corrupt input
        raise GsVqError(f"cannot read ply {path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    for name, t in splats.items():
        if not torch.isfinite(t).all():
            raise GsVqError(f"{path}: property '{name}' holds NaN or infinite values")
    return {k: t.to(device) for k, t in splats.items()}
