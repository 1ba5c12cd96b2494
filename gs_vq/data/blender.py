"""NeRF-synthetic ("Blender") scenes: ``transforms_{train,test}.json`` + images.

Cameras: each frame's ``transform_matrix`` is camera-to-world with OpenGL axes (y up, looking
down -z); it is flipped to OpenCV and inverted into the viewmat. ``fx = fy = W / (2 tan(
camera_angle_x / 2))``, principal point at the image centre (instant-ngp style ``fl_x``, ``fl_y``,
``cx``, ``cy``, ``w``, ``h`` keys are used instead when present).

Images: kept as read (uint8); RGBA is composited on white or black (``white_background``) where
used, its alpha kept; RGB is used as is. ``-r`` as in :mod:`gs_vq.data.images` (auto: Inria's 1600
pixel cap, which NeRF-synthetic's 800x800 images never reach). Optional extras: ``masks/<file_path>.png`` (object ids, nearest-neighbour downscaled) and
``labels.json`` (returned as ``Scene.labels``).

Split: train cameras come from ``transforms_train.json`` only and test cameras from
``transforms_test.json`` always, whatever ``eval`` says (Inria 3DGS instead merges the test views
into training when ``--eval`` is off; we keep them held out so a run can always be evaluated).

Initial points: no point cloud ships with these scenes, so ``num_random_points`` points are drawn
uniformly, with random colours, in the cube the train cameras look at (``cameras.look_at_box``),
which is Inria's ``[-1.3, 1.3]^3`` for NeRF-synthetic and scales with any other setup (tabletop).
"""

import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from gs_vq.data.cameras import Camera, Scene, camera_scene_scale, check_intrinsics, look_at_box, random_points
from gs_vq.data.images import AUTO, default_cache_root, load_size, note_large_images, parallel_map, read_mask, read_sized
from gs_vq.errors import GsVqError
from gs_vq.files import read_json

# OpenGL camera axes (x right, y up, z backward) -> OpenCV (x right, y down, z forward)
GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def viewmat_from_blender(transform_matrix: Any) -> np.ndarray:
    """[4, 4] OpenCV world-to-camera from a NeRF-synthetic OpenGL camera-to-world matrix."""
    try:
        c2w = np.asarray(transform_matrix, dtype=np.float64)
    except (TypeError, ValueError):
        c2w = np.zeros(0)
    if c2w.shape == (3, 4):
        c2w = np.vstack([c2w, [0.0, 0.0, 0.0, 1.0]])
    if c2w.shape != (4, 4) or not np.isfinite(c2w).all() or abs(np.linalg.det(c2w[:3, :3])) < 1e-8:
        raise GsVqError(f"transform_matrix must be a finite, invertible 4x4 matrix, got {str(transform_matrix)[:60]}")
    return np.linalg.inv(c2w @ GL_TO_CV)


def _number(meta: Dict[str, Any], key: str, json_path: Path, default: Any = None) -> float:
    value = meta.get(key, default)
    try:
        if isinstance(value, bool):
            raise TypeError
        return float(value)
    except (TypeError, ValueError):
        raise GsVqError(f"{json_path}: {key} must be a number, got {value!r}") from None


def intrinsics(meta: Dict[str, Any], width: int, height: int, json_path: Path) -> np.ndarray:
    """[3, 3] K for an image of ``width`` x ``height`` pixels from a transforms file's metadata."""
    if "fl_x" in meta:  # instant-ngp / nerfstudio keys, in pixels of the original (w, h)
        w0, h0 = _number(meta, "w", json_path, width), _number(meta, "h", json_path, height)
        if not (w0 > 0 and h0 > 0):
            raise GsVqError(f"{json_path}: w and h must be positive, got {w0:g} x {h0:g}")
        sx, sy = width / w0, height / h0
        fx = _number(meta, "fl_x", json_path) * sx
        fy = _number(meta, "fl_y", json_path, meta["fl_x"]) * sy
        cx, cy = _number(meta, "cx", json_path, w0 / 2) * sx, _number(meta, "cy", json_path, h0 / 2) * sy
    elif "camera_angle_x" in meta:
        angle = _number(meta, "camera_angle_x", json_path)
        if not 0 < angle < math.pi:
            raise GsVqError(f"{json_path}: camera_angle_x must be a field of view in (0, pi) radians, got {angle:g}")
        fx = fy = 0.5 * width / math.tan(0.5 * angle)
        cx, cy = 0.5 * width, 0.5 * height
    else:
        raise GsVqError(f"{json_path} has neither camera_angle_x nor fl_x")
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    check_intrinsics(K, width, height, str(json_path))
    return K


def _image_path(source: Path, rel: Path) -> Path:
    path = source / rel
    return path if path.suffix.lower() in IMAGE_SUFFIXES else path.with_name(path.name + ".png")


def load_split(
    source: Path,
    split: str,
    resolution: int,
    white_background: bool,
    cache_root: Path,
    required: bool,
) -> List[Camera]:
    """Cameras of ``transforms_<split>.json`` (empty if absent and not ``required``)."""
    json_path = source / f"transforms_{split}.json"
    if not json_path.is_file():
        if required:
            raise GsVqError(f"{source} has no transforms_{split}.json")
        return []
    meta = read_json(json_path)
    frames = meta.get("frames") if isinstance(meta, dict) else None
    if not isinstance(frames, list) or not frames or not all(isinstance(f, dict) and "file_path" in f for f in frames):
        raise GsVqError(f"{json_path} needs a non-empty 'frames' list with file_path and transform_matrix")
    has_masks = (source / "masks").is_dir()

    def load_one(frame: Dict[str, Any]) -> Tuple[Camera, bool]:
        rel = Path(os.path.normpath(str(frame["file_path"])))  # e.g. train/r_0
        if "transform_matrix" not in frame:
            raise GsVqError(f"{json_path}: frame {rel} has no transform_matrix")
        path = _image_path(source, rel)
        width, height, rescaled = load_size(path, resolution)
        pixels = read_sized(path, (width, height), cache_root)  # [H, W, 3|4] uint8
        mask = read_mask(source / "masks" / rel.with_suffix(".png"), (width, height)) if has_masks else None
        name = (rel.with_suffix("") if rel.suffix.lower() in IMAGE_SUFFIXES else rel).as_posix()
        return Camera(
            name=name,
            image=torch.from_numpy(pixels),
            viewmat=torch.from_numpy(viewmat_from_blender(frame["transform_matrix"])).float(),
            K=torch.from_numpy(intrinsics(meta, width, height, json_path)).float(),
            width=width,
            height=height,
            mask=mask,
            background=1.0 if white_background else 0.0,
        ), rescaled

    cameras, rescaled = zip(*parallel_map(load_one, frames))
    note_large_images(rescaled)
    return list(cameras)


def load_blender(
    source_path: str,
    resolution: int = AUTO,
    white_background: bool = False,
    cache_dir: Optional[str] = None,
    num_random_points: int = 100_000,
    seed: int = 0,
    kind: str = "blender",
) -> Scene:
    """Load a NeRF-synthetic scene; see the module docstring for cameras, split and points.

    Args:
        source_path: folder with ``transforms_train.json`` (and usually ``transforms_test.json``).
        resolution: ``-r``, already validated: a factor 1, 2, 4, 8, -1 (auto) or a target width.
        white_background: composite RGBA images on white instead of black.
        cache_dir: gs_vq cache root for downscaled images.
        num_random_points: number of random initial points.
        seed: seed of the random initial points (deterministic by default).
        kind: recorded in ``Scene.kind`` ("blender", or "demo" for the generated scene).
    """
    source = Path(os.path.abspath(source_path))
    cache_root = default_cache_root(cache_dir)
    train = load_split(source, "train", resolution, white_background, cache_root, required=True)
    test = load_split(source, "test", resolution, white_background, cache_root, required=False)
    labels_path = source / "labels.json"
    labels = read_json(labels_path) if labels_path.is_file() else None
    if labels is not None and not isinstance(labels, dict):
        raise GsVqError(f"{labels_path} must hold a JSON object (id -> label text)")
    centre, half = look_at_box(train)
    points, points_rgb = random_points(centre, half, num_random_points, seed)
    return Scene(
        train_cameras=train,
        test_cameras=test,
        points=points,
        points_rgb=points_rgb,
        scene_scale=camera_scene_scale(train),
        source_path=str(source),
        kind=kind,
        white_background=white_background,
        labels=labels,
        extra={"init_box": (centre, half)},
    )
