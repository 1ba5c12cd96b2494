"""Scene loading: :func:`load_scene` picks the loader from the folder's layout.

- ``<source>/sparse/0`` or ``<source>/sparse`` -> COLMAP (:mod:`gs_vq.data.colmap`)
- ``<source>/transforms_train.json`` -> NeRF-synthetic (:mod:`gs_vq.data.blender`)
- ``source_path=None`` -> the generated demo scene (:mod:`gs_vq.data.demo`), no download needed
"""

from pathlib import Path
from typing import Optional

from gs_vq.data.blender import load_blender
from gs_vq.data.cameras import Camera, Scene, background_of, camera_scene_scale, look_at_box, random_points
from gs_vq.data.colmap import load_colmap
from gs_vq.data.demo import demo_scene_path, generate_demo_scene
from gs_vq.data.gsplat_parser import scene_from_gsplat
from gs_vq.data.images import AUTO, check_resolution, default_cache_root
from gs_vq.errors import GsVqError

LENS_MODES = ("undistort", "raw")  # --lens: what load_scene does with COLMAP's distorted cameras

__all__ = [
    "Camera",
    "Scene",
    "background_of",
    "load_scene",
    "load_colmap",
    "load_blender",
    "scene_from_gsplat",
    "detect_format",
    "demo_scene_path",
    "generate_demo_scene",
    "camera_scene_scale",
    "look_at_box",
    "random_points",
    "check_resolution",
    "default_cache_root",
]


def detect_format(source_path: str) -> str:
    """"colmap" or "blender" from the folder's layout; GsVqError for a missing folder or other layout."""
    source = Path(source_path).expanduser()
    if not source.exists():
        raise GsVqError(f"source folder not found: {source}")
    if not source.is_dir():
        raise GsVqError(f"source path is not a folder: {source}")
    if (source / "sparse").is_dir():
        return "colmap"
    if (source / "transforms_train.json").is_file():
        return "blender"
    raise GsVqError(
        f"unknown scene layout in {source}: expected sparse/ (COLMAP) or transforms_train.json (NeRF-synthetic)"
    )


def load_scene(
    source_path: Optional[str],
    resolution: int = AUTO,
    eval: bool = False,
    white_background: bool = False,
    cache_dir: Optional[str] = None,
    num_random_points: int = 100_000,
    images: str = "images",
    lens: str = "undistort",
) -> Scene:
    """Load a scene for training and evaluation.

    Args:
        source_path: COLMAP or NeRF-synthetic folder; None for the generated demo scene.
        resolution: ``-r`` as Inria 3DGS: a downscale factor 1, 2, 4 or 8, -1 (auto: at most 1600
            pixels wide) or a target width in pixels (>= 16); K is scaled to match.
        eval: COLMAP: hold out every 8th image (LLFF). NeRF-synthetic always keeps its test split
            held out, so ``eval`` does not change it.
        white_background: composite transparent images on white (else black).
        cache_dir: gs_vq cache root (downscaled images, demo scene); default ``~/.cache/gs_vq``.
        num_random_points: random initial points for scenes without a point cloud.
        images: COLMAP: the image folder inside ``source_path`` (``-i/--images``; with ``-r 2|4|8``
            its ``<images>_<r>`` copy when present). NeRF-synthetic scenes name their files in
            transforms_*.json and ignore it.
        lens: COLMAP's distorted cameras: "undistort" at load (gsplat's way) or keep them "raw",
            rendered through the lens (``--lens``; CPU backends).

    Returns:
        Scene with train/test cameras, initial points and scene scale.
    """
    resolution = check_resolution(resolution)
    if lens not in LENS_MODES:
        raise GsVqError(f"lens must be one of {', '.join(LENS_MODES)}, got {lens!r}")
    if num_random_points < 1:
        raise GsVqError(f"num_random_points must be positive, got {num_random_points}")
    if source_path is None:
        path = generate_demo_scene(demo_scene_path(cache_dir))
        return load_blender(str(path), resolution, white_background, cache_dir, num_random_points, kind="demo")
    kind = detect_format(source_path)
    source = str(Path(source_path).expanduser())
    if kind == "colmap":
        return load_colmap(source, resolution, eval, white_background, cache_dir, images_dir=images,
                           num_random_points=num_random_points, lens=lens)
    return load_blender(source, resolution, white_background, cache_dir, num_random_points)
