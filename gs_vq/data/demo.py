"""A small procedural demo scene, generated on first use so ``train.py`` runs with no download.

Five labelled objects (two spheres, a rotated cube, a pillar, a checkered platform) float on a
transparent background, Z-up world. A vectorised numpy ray tracer renders them with Lambert +
Blinn-Phong shading, hard shadows from one directional light, procedural textures and 2x2
supersampling (alpha = coverage). Views orbit the scene at radius 4 with elevations 15-65 degrees;
test azimuths fall halfway between train azimuths. Masks hold the most frequent id of each pixel's
four samples.

The result is a NeRF-synthetic folder (``transforms_{train,test}.json``, RGBA PNGs, object-id
``masks/``, ``labels.json``) loaded by :mod:`gs_vq.data.blender`; it is written once under
``<cache>/demo_scene_v<VERSION>`` (atomically: built in a temp folder, then renamed) and is deterministic
(no randomness: the same numpy writes the same files). The default, 32 + 8 views at 128x128, takes
about a second of CPU (a few seconds on 2 busy cores).
"""

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from gs_vq.data.images import default_cache_root

VERSION = 2  # bump whenever the generated scene changes: old caches are then ignored
CAMERA_ANGLE_X = 0.8  # rad
RADIUS = 4.0
TARGET = np.array([0.0, 0.0, 0.25])
LIGHT = (np.array([0.45, 0.3, 0.84]) / np.linalg.norm([0.45, 0.3, 0.84])).astype(np.float32)  # towards the light

LABELS = {
    "0": "background",
    "1": "red ball",
    "2": "green cube",
    "3": "blue striped ball",
    "4": "yellow pillar",
    "5": "checkered platform",
    "queries": [
        {"text": "round objects", "ids": [1, 3]},
        {"text": "something to stand on", "ids": [5]},
        {"text": "a tall column", "ids": [4]},
    ],
}



@dataclass(frozen=True)
class Primitive:
    """One traced object: a sphere (``size`` = radius) or a box (``size`` = half-extents) rotated
    by ``angle`` rad about z, with an albedo function of its local and world points."""

    id: int  # object id written to masks/ (1..255)
    kind: str  # "sphere" | "box"
    centre: Tuple[float, float, float]
    size: object  # radius, or (hx, hy, hz) half-extents
    angle: float = 0.0
    albedo: Optional[Callable[[np.ndarray, np.ndarray], np.ndarray]] = None  # (local [R, 3], world [R, 3])
    # -> linear colour [R, 3]; None: grey
    shiny: bool = False  # a Blinn-Phong highlight (view-dependent colour)


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


def solid(colour) -> Callable:
    """Albedo: one linear colour."""
    return lambda local, world: np.broadcast_to(np.float32(colour), local.shape)


def bands(base, other, freq: float, duty: float = 0.5, axis: int = 2) -> Callable:
    """Albedo: ``other`` where ``frac(local[axis] * freq) < duty``, else ``base``."""
    return lambda local, world: np.where(_frac(local[:, axis:axis + 1] * freq) < duty, other, base)


def checker(light, dark, freq: float) -> Callable:
    """Albedo: a world-space checkerboard in x, y."""
    return lambda local, world: np.where(
        ((np.floor(world[:, 0:1] * freq) + np.floor(world[:, 1:2] * freq)) % 2 == 0), light, dark)


def _grid_lines(local, world):
    return np.where((np.min(_frac(local * 2.5 + 0.5), axis=1) < 0.12)[:, None], (0.05, 0.25, 0.05), (0.15, 0.7, 0.2))


def _sine_stripes(local, world):
    return np.where((np.sin(local[:, 2:] * 28.0) > 0), (0.08, 0.2, 0.85), (0.9, 0.9, 0.92))


PRIMITIVES = [
    Primitive(1, "sphere", (0.55, 0.45, 0.35), 0.35, 0.0, solid([0.8, 0.08, 0.06]), shiny=True),
    Primitive(2, "box", (-0.55, 0.4, 0.3), (0.3, 0.3, 0.3), 0.5, _grid_lines),
    Primitive(3, "sphere", (-0.15, -0.6, 0.3), 0.3, 0.0, _sine_stripes, shiny=True),
    Primitive(4, "box", (0.65, -0.5, 0.45), (0.14, 0.14, 0.45), 0.3,
              bands((0.95, 0.85, 0.1), (0.9, 0.45, 0.05), 3.0, 0.25)),
    Primitive(5, "box", (0.0, 0.0, -0.06), (1.2, 1.2, 0.06), 0.0, checker((0.8, 0.78, 0.72), (0.3, 0.28, 0.3), 2.5)),
]


def _mul(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``x @ m`` for x [R, 3], m [3, 3] or [3] (einsum: much faster than BLAS for thin matrices)."""
    return np.einsum("ri,ij->rj" if m.ndim == 2 else "ri,i->r", x, m)


def _rot_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)


def _hit_sphere(o: np.ndarray, d: np.ndarray, centre, radius, normals: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Ray-sphere: (t [R] (inf on miss), unit normal [R, 3] or None)."""
    oc = o - np.asarray(centre, np.float32)  # [R, 3]
    b = np.einsum("ri,ri->r", oc, d)
    disc = b * b - (np.einsum("ri,ri->r", oc, oc) - radius * radius)
    sq = np.sqrt(np.maximum(disc, 0.0))
    t = np.where(-b - sq > 1e-6, -b - sq, -b + sq)
    t = np.where((disc >= 0) & (t > 1e-6), t, np.inf)
    if not normals:
        return t, None
    return t, (oc + d * np.where(np.isfinite(t), t, 0.0)[:, None]) / radius


def _hit_box(o: np.ndarray, d: np.ndarray, centre, half, angle) -> Tuple[np.ndarray, np.ndarray]:
    """Ray vs box rotated about z (slab test): (t [R], unit normal [R, 3])."""
    R = _rot_z(angle)
    ol, dl = _mul(o - np.asarray(centre, np.float32), R), _mul(d, R)  # local frame, [R, 3]
    dl = np.where(np.abs(dl) < 1e-12, 1e-12, dl)
    t0, t1 = (-np.asarray(half, np.float32) - ol) / dl, (np.asarray(half, np.float32) - ol) / dl
    tnear, tfar = np.minimum(t0, t1), np.maximum(t0, t1)  # [R, 3]
    tn, tf = tnear.max(axis=1), tfar.min(axis=1)
    t = np.where((tn <= tf) & (tf > 1e-6), np.where(tn > 1e-6, tn, tf), np.inf)
    axis = np.where(tn > 1e-6, tnear.argmax(axis=1), tfar.argmin(axis=1))
    nl = np.zeros_like(ol)
    nl[np.arange(len(o)), axis] = -np.sign(dl[np.arange(len(o)), axis])
    return t, _mul(nl, R.T)


def _intersect(o: np.ndarray, d: np.ndarray, prims: Sequence[Primitive]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hit over ``prims``: (t [R], object id [R] (0 = miss), normal [R, 3])."""
    t_best = np.full(len(o), np.inf, dtype=d.dtype)
    ids = np.zeros(len(o), dtype=np.int64)
    normals = np.zeros(d.shape, dtype=d.dtype)
    for prim in prims:
        if prim.kind == "sphere":
            idx, (t, n) = np.arange(len(d)), _hit_sphere(o, d, prim.centre, prim.size)
        else:  # exact test only for rays through the bounding sphere
            reach = float(np.linalg.norm(prim.size))
            idx = np.nonzero(np.isfinite(_hit_sphere(o, d, prim.centre, reach, False)[0]))[0]
            t, n = _hit_box(o[idx], d[idx], prim.centre, prim.size, prim.angle)
        closer = t < t_best[idx]
        sel = idx[closer]
        t_best[sel], ids[sel], normals[sel] = t[closer], prim.id, n[closer]
    return t_best, ids, normals


def _albedo(ids: np.ndarray, p: np.ndarray, prims: Sequence[Primitive]) -> np.ndarray:
    """Texture colours [R, 3] (linear) at world points ``p`` [R, 3] of objects ``ids``."""
    out = np.zeros_like(p)
    for prim in prims:
        sel = ids == prim.id
        q = p[sel]  # world points on this object
        albedo = prim.albedo or solid((0.5, 0.5, 0.5))
        out[sel] = albedo(_mul(q - np.asarray(prim.centre, np.float32), _rot_z(prim.angle)), q)
    return out


def _shade(o: np.ndarray, d: np.ndarray, prims: Sequence[Primitive]) -> Tuple[np.ndarray, np.ndarray]:
    """Trace rays: (linear colour [R, 3], object id [R])."""
    t, ids, n = _intersect(o, d, prims)
    hit = ids > 0
    p = o + d * np.where(hit, t, 0.0)[:, None]
    ndl = np.clip(_mul(n, LIGHT), 0.0, None)
    lit = hit & (ndl > 0)
    shadow_t, _, _ = _intersect(p[lit] + n[lit] * 1e-3, np.broadcast_to(LIGHT, (int(lit.sum()), 3)), prims)
    lit[lit] = np.isinf(shadow_t)  # shadow rays only where a surface faces the light
    lit = lit.astype(o.dtype)
    ndl = ndl * lit
    h = LIGHT[None] - d
    h /= np.linalg.norm(h, axis=1, keepdims=True)
    shiny = np.isin(ids, [p.id for p in prims if p.shiny]) * lit  # a highlight: view-dependent colour
    spec = 0.5 * shiny * np.clip(np.einsum("ri,ri->r", n, h), 0.0, None) ** 40
    colour = _albedo(ids, p, prims) * (0.25 + 0.8 * ndl)[:, None] + spec[:, None]
    return np.where(hit[:, None], colour, 0.0), ids


def _camera(azimuth: float, elevation: float) -> np.ndarray:
    """[4, 4] OpenGL camera-to-world looking at TARGET from the orbit."""
    eye = TARGET + RADIUS * np.array(
        [math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth), math.sin(elevation)]
    )
    z = (eye - TARGET) / np.linalg.norm(eye - TARGET)  # OpenGL: the camera looks down -z
    x = np.cross([0.0, 0.0, 1.0], z)
    x /= np.linalg.norm(x)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
    c2w[:3, 3] = eye
    return c2w


Lens = Callable[[np.ndarray], np.ndarray]  # [M, 2] pixel positions (centres at +0.5) -> [M, 2] pinhole coords


def _render(c2w: np.ndarray, size: int, prims: Sequence[Primitive],
            lens: Optional[Lens] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(RGBA uint8 [S, S, 4] with straight alpha, ids uint8 [S, S]: the most frequent sample id).
    ``lens`` maps the sample positions to normalized pinhole coordinates (a distorted camera traced
    directly, with no resampling); None is the pinhole camera of ``camera_intrinsics``."""
    f = 0.5 * size / math.tan(0.5 * CAMERA_ANGLE_X)
    rot = c2w[:3, :3] @ np.diag([1.0, -1.0, -1.0])  # OpenCV ray directions -> world

    def rays(offsets: List[Tuple[float, float]]) -> Tuple[np.ndarray, np.ndarray]:
        j, i = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32), indexing="ij")
        pix = np.concatenate([np.stack([i + ox, j + oy], -1).reshape(-1, 2) for ox, oy in offsets])  # [M, 2]
        xy = (pix - size / 2) / f if lens is None else lens(pix.astype(np.float64)).astype(np.float32)  # [M, 2]
        dirs = np.concatenate([xy, np.ones_like(xy[:, :1])], axis=1)  # [M, 3]
        dirs = _mul(dirs, rot.T.astype(np.float32))  # [S*S*len(offsets), 3]
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        return np.broadcast_to(c2w[:3, 3].astype(np.float32), dirs.shape), dirs

    colour, ids = _shade(*rays([(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)]), prims)
    colour, cover = colour.reshape(4, size, size, 3), (ids > 0).reshape(4, size, size)
    alpha = cover.mean(axis=0)  # [S, S]
    rgb = colour.sum(axis=0) / np.maximum(cover.sum(axis=0), 1)[..., None]  # straight (un-premultiplied)
    srgb = np.clip(rgb, 0.0, 1.0) ** (1.0 / 2.2)
    rgba = np.concatenate([srgb, alpha[..., None]], axis=-1)
    samples = ids.reshape(4, size, size)
    votes = (samples[:, None] == samples[None, :]).sum(axis=1)  # [4, S, S]: how often each id occurs
    mask = np.take_along_axis(samples, votes.argmax(axis=0)[None], axis=0)[0]  # most frequent id
    return np.round(rgba * 255).astype(np.uint8), mask.astype(np.uint8)


def _views(n_train: int, n_test: int) -> Dict[str, List[Tuple[float, float]]]:
    """(azimuth, elevation) in rad per split.

    Train azimuths are evenly spaced, test azimuths fall halfway between two train azimuths;
    elevations (15-65 degrees) follow a golden-ratio sequence, so views cover the upper hemisphere.
    """
    step_az = 2 * math.pi / n_train

    def view(a: float, k: float) -> Tuple[float, float]:
        return a * step_az, math.radians(15.0 + 50.0 * ((k * 0.618034) % 1.0))

    stride = n_train / max(n_test, 1)
    return {
        "train": [view(k, k) for k in range(n_train)],
        "test": [view(math.floor(k * stride) + 0.5, k * stride + 0.5) for k in range(n_test)],
    }


def demo_scene_path(cache_dir: Optional[str] = None) -> Path:
    """Where the demo scene lives: ``<cache>/demo_scene_v<VERSION>``."""
    return default_cache_root(cache_dir) / f"demo_scene_v{VERSION}"


def write_scene(path: Path, prims: Sequence[Primitive], labels: Dict, n_train: int = 32, n_test: int = 8,
                size: int = 128, force: bool = False, lens: Optional[Lens] = None) -> Path:
    """Trace ``prims`` into a NeRF-synthetic folder at ``path`` (RGBA views, object-id ``masks/``,
    ``labels.json`` = ``labels``), once: built in a temp folder, then renamed. Returns ``path``.
    ``lens``: trace every view through this distorted lens (see :func:`_render`)."""
    path = Path(path)
    if (path / "transforms_train.json").is_file() and not force:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-demo-", dir=path.parent))
    try:
        for split, views in _views(n_train, n_test).items():
            (tmp / split).mkdir()
            (tmp / "masks" / split).mkdir(parents=True)
            frames = []
            for k, (azimuth, elevation) in enumerate(views):
                c2w = _camera(azimuth, elevation)
                rgba, ids = _render(c2w, size, prims, lens)
                Image.fromarray(rgba, "RGBA").save(tmp / split / f"r_{k}.png")
                Image.fromarray(ids, "L").save(tmp / "masks" / split / f"r_{k}.png")
                frames.append({"file_path": f"./{split}/r_{k}", "transform_matrix": c2w.tolist()})
            with open(tmp / f"transforms_{split}.json", "w") as f:
                json.dump({"camera_angle_x": CAMERA_ANGLE_X, "frames": frames}, f, indent=1)
        with open(tmp / "labels.json", "w") as f:
            json.dump(labels, f, indent=1)
        if force and path.exists():
            shutil.rmtree(path)
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide the scene from other users of the cache
        try:
            os.rename(tmp, path)
        except OSError:
            if not (path / "transforms_train.json").is_file():  # not a concurrent writer's result
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return path


def generate_demo_scene(path: Path, n_train: int = 32, n_test: int = 8, size: int = 128, force: bool = False,
                        lens: Optional[Lens] = None) -> Path:
    """Write the demo scene as a NeRF-synthetic folder at ``path`` (once) and return ``path``
    (``lens``: traced through a distorted lens, :func:`_render`)."""
    return write_scene(path, PRIMITIVES, LABELS, n_train, n_test, size, force, lens)
