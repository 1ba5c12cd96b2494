"""COLMAP scenes (binary or text models) through pycolmap.

Layout: ``<source>/<images>/`` (``-i/--images``, default ``images``) and a model (``cameras``,
``images``, ``points3D`` as ``.bin`` or ``.txt``) in ``<source>/sparse/0`` or ``<source>/sparse``.
Cameras: PINHOLE and SIMPLE_PINHOLE as they are; SIMPLE_RADIAL, RADIAL, OPENCV, FULL_OPENCV and
OPENCV_FISHEYE are undistorted at load (:mod:`gs_vq.data.undistort`, gsplat's way; the
undistorted images are cached like resized ones). With ``lens="raw"`` (``--lens raw``) the
perspective ones keep their images as captured and carry the lens on the camera instead, and
every render projects through it (:mod:`gs_vq.render.lens`; no resampling, the whole frame).
Other models must be undistorted first with ``colmap image_undistorter``.

Resolution: ``-r 2|4|8`` reads ``<images>_<r>/`` when the scene has it (Mip-NeRF 360 / LLFF
``images_4``, as gsplat's ``data_factor``; same file names, or the same stems), else downscales
``<images>/``; a target width or auto (-1) resizes ``<images>/`` (:mod:`gs_vq.data.images`).
Distorted images are resized first, then undistorted at that size (gsplat's order). If the image
files are a scaled copy of the model's size (e.g. ``images_8`` with a full-size model), K is
rescaled to the files, as gsplat's parser does; another aspect ratio is refused.

Split: without ``eval`` every registered image trains and there is no test set; with ``eval``
images sorted by name are held out LLFF-style, ``i % 8 == 0`` is test (Inria 3DGS, gsplat).
Initial points are points3D (xyz, rgb / 255);
a model without points gets random points in the box the cameras look at.
"""

import glob
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from gs_vq.data.cameras import Camera, Scene, camera_scene_scale, check_intrinsics, look_at_box, random_points
from gs_vq.data.colmap_bin import check_binary_model
from gs_vq.data.images import (AUTO, RESOLUTIONS, cached_image, default_cache_root, load_size, note_large_images,
                               parallel_map, read_sized, scale_K)
from gs_vq.data.undistort import Lens, camera_lens, undistortion
from gs_vq.errors import GsVqError, error_text

MODEL_FILES = ("cameras", "images", "points3D")
LLFF_HOLD = 8


def find_sparse_model(source: Path) -> Optional[Path]:
    """The folder holding the COLMAP model (``sparse/0`` preferred, then ``sparse``), or None."""
    for folder in (source / "sparse" / "0", source / "sparse"):
        for ext in (".bin", ".txt"):
            if all((folder / (name + ext)).is_file() for name in MODEL_FILES):
                return folder
    return None


def _read_model(source: Path):
    import pycolmap  # imported here: only COLMAP scenes need it

    folder = find_sparse_model(source)
    if folder is None:
        raise GsVqError(
            f"no COLMAP model in {source / 'sparse'}: expected cameras, images and points3D "
            "(.bin or .txt) in sparse/0 or sparse"
        )
    check_binary_model(folder)  # a truncated .bin file is a clear error, not focal 0 or bad_alloc
    try:
        return pycolmap.Reconstruction(str(folder))
    except Exception as e:
        raise GsVqError(f"cannot read the COLMAP model in {folder}: {error_text(e)}")


def _viewmat(image) -> np.ndarray:
    """[4, 4] world-to-camera (COLMAP's cam_from_world is already OpenCV axes)."""
    rigid = image.cam_from_world
    rigid = rigid() if callable(rigid) else rigid  # a method in pycolmap >= 3.12, a property before
    viewmat = np.eye(4)
    viewmat[:3, :4] = rigid.matrix()
    return viewmat


def image_folder(source: Path, images_dir: str, resolution: int) -> Tuple[Path, int]:
    """(folder to read, resolution to read it at): ``<images>_<r>`` at 1 for ``-r r`` in 2, 4, 8 when
    present, else ``<images>`` at ``resolution``; GsVqError naming a missing ``<images>``."""
    root = source / images_dir
    if not root.is_dir():
        raise GsVqError(f"COLMAP scene {source} has no {images_dir}/ folder (-i/--images names the image folder)")
    downscaled = source / f"{images_dir}_{resolution}"
    if resolution in RESOLUTIONS and resolution > 1 and downscaled.is_dir():
        return downscaled, 1
    return root, resolution


def image_file(folder: Path, name: str) -> Path:
    """``folder/name``, or a file of the same stem in ``folder`` (``images_4/x.png`` for ``x.JPG``)."""
    path = folder / name
    if path.is_file():
        return path
    same_stem = sorted(path.parent.glob(glob.escape(path.stem) + ".*")) if path.parent.is_dir() else []
    return same_stem[0] if len(same_stem) == 1 else path  # a missing file: read_sized names it


def load_colmap(
    source_path: str,
    resolution: int = AUTO,
    eval: bool = False,
    white_background: bool = False,
    cache_dir: Optional[str] = None,
    images_dir: str = "images",
    num_random_points: int = 100_000,
    lens: str = "undistort",
) -> Scene:
    """Load a COLMAP scene; see the module docstring for layout, cameras, resolution and split.

    Args:
        source_path: scene folder with ``<images_dir>/`` and ``sparse/[0/]``.
        resolution: ``-r``, already validated: a factor 1, 2, 4, 8, -1 (auto) or a target width.
        eval: hold out every 8th image (sorted by name) as the test set.
        white_background: background for images with an alpha channel (rare for COLMAP).
        cache_dir: gs_vq cache root for resized and undistorted images (see ``images.default_cache_root``).
        images_dir: image folder name inside ``source_path`` (``-i/--images``).
        num_random_points: only used when the model has no 3D points: that many random points in
            the box the cameras look at (``cameras.look_at_box``).
        lens: distorted cameras' images "undistort"ed at load (gsplat's way), or kept "raw" with
            the lens on the camera (``Camera.radial_coeffs``), rendered through it.
    """
    source = Path(os.path.abspath(source_path))
    rec = _read_model(source)
    lenses: Dict[int, Tuple[np.ndarray, Optional[Lens]]] = {
        cid: camera_lens(cam.model.name, cam.params, f"COLMAP camera {cid}") for cid, cam in rec.cameras.items()
    }  # checks every camera model
    raw = lens == "raw"
    if raw:
        for _, cam_lens in lenses.values():
            if cam_lens is not None:
                cam_lens.gsplat_coeffs()  # a fisheye lens is an error before any image is read
    sizes = {cid: (cam.width, cam.height) for cid, cam in rec.cameras.items()}
    posed = sorted((im for im in rec.images.values() if im.has_pose), key=lambda im: im.name)
    if not posed:
        raise GsVqError(f"the COLMAP model in {source} has no registered images")
    image_root, read_resolution = image_folder(source, images_dir, resolution)
    cache_root = default_cache_root(cache_dir)
    views = [(im.name, im.camera_id, _viewmat(im)) for im in posed]  # plain data for the loader threads

    def load_one(view: Tuple[str, int, np.ndarray]) -> Tuple[Camera, bool]:
        name, camera_id, viewmat = view
        path = image_file(image_root, name)
        width, height, rescaled = load_size(path, read_resolution)
        model_width, model_height = sizes[camera_id]
        check_image_size(path, (width, height), (model_width, model_height), resolution)
        K, lens = lenses[camera_id]
        K = scale_K(K, width / model_width, height / model_height)
        coeffs = {}
        if lens is None or raw:
            pixels = read_sized(path, (width, height), cache_root)  # [H, W, 3|4] uint8
            if lens is not None:
                coeffs = {f"{k}_coeffs": torch.tensor(v) for k, v in zip(("radial", "tangential"), lens.gsplat_coeffs())}
        else:
            remap = undistortion(lens, K, width, height)
            pixels = cached_image(path, f"{width}x{height}-{remap.tag}",
                                  lambda: remap.apply(read_sized(path, (width, height), cache_root)), cache_root)
            K, (width, height) = remap.K, remap.size
        check_intrinsics(K, width, height, f"COLMAP camera {camera_id} of image {name}")
        return Camera(
            name=name,
            image=torch.from_numpy(pixels),
            viewmat=torch.from_numpy(viewmat).float(),
            K=torch.from_numpy(K).float(),
            width=width,
            height=height,
            background=1.0 if white_background else 0.0,
            **coeffs,
        ), rescaled

    cameras, rescaled = zip(*parallel_map(load_one, views))
    note_large_images(rescaled)
    train, test = split_llff(list(cameras), eval)
    points, points_rgb = _points(rec)
    extra = {}
    if points.shape[0] == 0:  # e.g. a model from known poses without triangulation
        extra["init_box"] = look_at_box(train)
        points, points_rgb = random_points(*extra["init_box"], num_random_points)
    return Scene(
        train_cameras=train,
        test_cameras=test,
        points=points,
        points_rgb=points_rgb,
        scene_scale=camera_scene_scale(train),
        source_path=str(source),
        kind="colmap",
        white_background=white_background,
        extra=extra,
    )


def check_image_size(path: Path, size: Tuple[int, int], model_size: Tuple[int, int], factor: int) -> None:
    """An image may be a uniformly scaled version of its camera's (e.g. LLFF ``images_8``), but not
    another aspect ratio: K cannot be fitted to a stretched picture."""
    (width, height), (model_width, model_height) = size, model_size
    expected = model_height * width / model_width  # height at the model's aspect ratio
    if abs(expected - height) > 1.0 + 0.01 * height:
        raise GsVqError(f"image {path} is {width}x{height} pixels (at -r {factor}) but its "
                        f"COLMAP camera is {model_width}x{model_height}, another aspect ratio: use the images the "
                        "model was made from")


def split_llff(cameras: List[Camera], eval: bool, hold: int = LLFF_HOLD) -> Tuple[List[Camera], List[Camera]]:
    """(train, test): with ``eval`` index ``i % hold == 0`` is test (cameras sorted by name)."""
    if not eval:
        return list(cameras), []
    return (
        [c for i, c in enumerate(cameras) if i % hold != 0],
        [c for i, c in enumerate(cameras) if i % hold == 0],
    )


def _points(rec) -> Tuple[torch.Tensor, torch.Tensor]:
    """points3D as ([P, 3] float32 xyz, [P, 3] float32 rgb in [0, 1]), sorted by point id."""
    ids = sorted(rec.points3D.keys())
    if not ids:
        return torch.zeros(0, 3), torch.zeros(0, 3)
    xyz = np.stack([rec.points3D[i].xyz for i in ids]).astype(np.float32)  # [P, 3]
    rgb = np.stack([rec.points3D[i].color for i in ids]).astype(np.float32) / 255.0  # [P, 3]
    return torch.from_numpy(xyz), torch.from_numpy(rgb)
