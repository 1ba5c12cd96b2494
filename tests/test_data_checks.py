"""Damaged or nonsensical scene input is a one-line error, never a silent wrong result: truncated COLMAP
files, bad intrinsics, stretched images, a stale image cache, 16-bit images, empty plies, unknown
query ids and colliding query folders."""

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gs_vq.data import load_scene
from gs_vq.data.blender import intrinsics
from gs_vq.data.cameras import check_intrinsics
from gs_vq.data.colmap import check_image_size
from gs_vq.data.colmap_bin import check_binary_model
from gs_vq.data.images import read_image
from gs_vq.errors import GsVqError
from gs_vq.io import load_ply, save_ply
from gs_vq.semantics.view_queries import evaluate_queries, slug

FERN = Path(__file__).resolve().parents[2] / "shared" / "data" / "fern"
needs_fern = pytest.mark.skipif(not (FERN / "sparse" / "0").is_dir(), reason="needs ../shared/data/fern")


def fern_copy(tmp_path: Path) -> Path:
    """A writable copy of fern's model with its images linked (the data folder is read-only)."""
    root = tmp_path / "fern"
    (root / "sparse" / "0").mkdir(parents=True)
    for f in (FERN / "sparse" / "0").iterdir():
        shutil.copy(f, root / "sparse" / "0" / f.name)
        os.chmod(root / "sparse" / "0" / f.name, 0o644)
    (root / "images").symlink_to(FERN / "images")
    return root


def cut(path: Path, n: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:n] if n >= 0 else data[: len(data) + n])


@needs_fern
@pytest.mark.parametrize("name,n", [("cameras.bin", 10), ("cameras.bin", 40), ("cameras.bin", 55),
                                    ("images.bin", 0), ("images.bin", 100), ("images.bin", -1000),
                                    ("points3D.bin", 0), ("points3D.bin", 4), ("points3D.bin", -100)])
def test_truncated_colmap_files(tmp_path, name, n):
    """pycolmap read these as focal 0 / a wrong principal point, "Rig with ID ... does not exist", or
    spent minutes on an empty points3D.bin before std::bad_alloc."""
    root = fern_copy(tmp_path)
    check_binary_model(root / "sparse" / "0")  # the intact copy passes
    cut(root / "sparse" / "0" / name, n)
    t0 = time.perf_counter()
    with pytest.raises(GsVqError, match=f"{name} is (truncated|corrupt)"):
        load_scene(str(root), resolution=8)
    assert time.perf_counter() - t0 < 10


def test_bad_intrinsics():
    K = np.array([[50.0, 0, 32], [0, 50, 24], [0, 0, 1]])
    check_intrinsics(K, 64, 48, "cam")
    for bad, msg in (((0, 0), "focal"), ((1, 1), "focal"), ((0, 2), "principal point")):
        K2 = K.copy()
        K2[bad] = {(0, 0): 0.0, (1, 1): float("nan"), (0, 2): 500.0}[bad]
        with pytest.raises(GsVqError, match=msg):
            check_intrinsics(K2, 64, 48, "cam")


@pytest.mark.parametrize("meta,msg", [({"camera_angle_x": 0}, r"\(0, pi\)"), ({"camera_angle_x": -0.5}, r"\(0, pi\)"),
                                      ({"camera_angle_x": "wide"}, "must be a number"),
                                      ({"camera_angle_x": None}, "must be a number"),
                                      ({"fl_x": 0}, "focal"), ({"fl_x": 100, "cx": 1e5}, "principal point"),
                                      ({"fl_x": 100, "w": 0}, "positive")])
def test_nerf_camera_metadata(meta, msg):
    with pytest.raises(GsVqError, match=msg):
        intrinsics(meta, 64, 64, Path("transforms_train.json"))
    K = intrinsics({"camera_angle_x": 0.6911}, 800, 800, Path("t.json"))
    assert abs(K[0, 0] - 1111.1) < 0.1 and K[0, 2] == 400


def test_image_of_another_aspect_ratio_is_refused():
    check_image_size(Path("a.png"), (63, 47), (504, 378), 8)  # LLFF images_8 of a full-size model
    check_image_size(Path("a.png"), (504, 378), (4032, 3024), 1)
    with pytest.raises(GsVqError, match="another aspect ratio"):
        check_image_size(Path("a.png"), (504, 504), (504, 378), 1)


def test_image_cache_follows_content_not_mtime(tmp_path):
    src = tmp_path / "img.png"
    Image.new("RGB", (16, 16), (255, 0, 0)).save(src)
    stamp = os.stat(src)
    assert tuple(read_image(src, 2, tmp_path / "cache")[0, 0]) == (255, 0, 0)
    Image.new("RGB", (16, 16), (0, 0, 255)).save(src)  # replaced, mtime kept (cp -p, rsync -a)
    os.utime(src, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert tuple(read_image(src, 2, tmp_path / "cache")[0, 0]) == (0, 0, 255)


def test_16_bit_grey_image_is_scaled_not_clipped(tmp_path):
    src = tmp_path / "grey16.png"
    Image.fromarray(np.full((8, 8), 0x8000, dtype=np.uint16)).save(src)
    px = read_image(src, 1)
    assert px.shape == (8, 8, 3) and int(px[0, 0, 0]) == 128


def test_empty_ply(tmp_path):
    empty = {k: torch.zeros((0,) + s) for k, s in
             {"means": (3,), "scales": (3,), "quats": (4,), "opacities": (), "sh0": (1, 3), "shN": (0, 3)}.items()}
    save_ply(empty, str(tmp_path / "e.ply"))
    with pytest.raises(GsVqError, match="holds no Gaussians"):
        load_ply(str(tmp_path / "e.ply"))


class _Cam:
    mask = torch.zeros(4, 4, dtype=torch.long)


def test_query_ids_must_exist():
    labels = {"0": "background", "1": "apple", "queries": [{"text": "fruit", "ids": [1, 7]}]}
    with pytest.raises(GsVqError, match="names ids \\[7\\] that no label has"):
        evaluate_queries({}, [_Cam()], None, labels, None, "cpu")


def test_query_folders_do_not_collide():
    texts = ["red apple", "red-apple", "red_apple", "Red Apple!", "a" * 80, "a" * 81]
    assert len({slug(t) for t in texts}) == len(texts)
    assert slug("red_apple") == "red_apple"
