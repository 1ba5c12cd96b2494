"""Scene loaders: COLMAP (fern), NeRF-synthetic (lego, tabletop), the generated demo scene, errors."""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gs_vq.data import Camera, Scene, demo, load_scene
from gs_vq.data.demo import generate_demo_scene
from gs_vq.errors import GsVqError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FERN, LEGO, TABLETOP = DATA / "fern", DATA / "lego", DATA / "tabletop"


def needs(path: Path):
    return pytest.mark.skipif(not path.is_dir(), reason=f"{path} not available")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    """One image cache for the module (downscaled images are written once, then reused)."""
    return str(tmp_path_factory.mktemp("gs_vq_cache"))


def project(cam: Camera, xyz: torch.Tensor):
    """World points [P, 3] -> (pixels [P, 2], depth [P]) with the viewmat + K convention."""
    cam_pts = xyz @ cam.viewmat[:3, :3].T + cam.viewmat[:3, 3]  # [P, 3]
    uv = cam_pts @ cam.K.T  # [P, 3]
    return uv[:, :2] / uv[:, 2:3], cam_pts[:, 2]


def inside(cam: Camera, uv: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    return (depth > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < cam.width) & (uv[:, 1] >= 0) & (uv[:, 1] < cam.height)


def assert_one_line_error(fn, *match: str):
    with pytest.raises(GsVqError) as info:
        fn()
    msg = str(info.value)
    assert msg and "\n" not in msg, msg
    for m in match:
        assert m in msg, msg
    return msg


# ---------------------------------------------------------------- COLMAP (fern)


@needs(FERN)
def test_fern_loads_and_downscales(cache):
    scene = load_scene(str(FERN), cache_dir=cache)
    assert isinstance(scene, Scene) and scene.kind == "colmap"
    assert len(scene.train_cameras) == 20 and scene.test_cameras == []
    assert scene.points.shape == (10091, 3) and scene.points_rgb.shape == (10091, 3)
    assert scene.points.dtype == torch.float32 and 0 <= scene.points_rgb.min() and scene.points_rgb.max() <= 1
    cam = scene.train_cameras[0]
    assert cam.name == "image000.png" and (cam.width, cam.height) == (504, 378)
    assert cam.image.shape == (378, 504, 3) and cam.image.dtype == torch.float32
    assert 0 <= cam.image.min() and cam.image.max() <= 1 and cam.image.std() > 0.05
    assert cam.viewmat.shape == (4, 4) and cam.K.shape == (3, 3) and cam.mask is None
    centres = torch.stack([c.center for c in scene.train_cameras]).double()
    expected = 1.1 * (centres - centres.mean(0)).norm(dim=1).max().item()
    assert scene.scene_scale == pytest.approx(expected, rel=1e-5)

    half = load_scene(str(FERN), resolution=2, cache_dir=cache)
    hc = half.train_cameras[0]
    assert (hc.width, hc.height) == (252, 189) and hc.image.shape == (189, 252, 3)
    torch.testing.assert_close(hc.K[:2], cam.K[:2] / 2)
    torch.testing.assert_close(hc.viewmat, cam.viewmat)
    # downscaled images are cached outside the data folder and reused
    cached = list(Path(cache, "images").rglob("252x189/*.png"))
    assert len(cached) == 20
    again = load_scene(str(FERN), resolution=2, cache_dir=cache)
    torch.testing.assert_close(again.train_cameras[5].image, half.train_cameras[5].image)
    assert (hc.image - torch.nn.functional.avg_pool2d(
        cam.image.permute(2, 0, 1)[None], 2, ceil_mode=True)[0].permute(1, 2, 0)[:189]).abs().mean() < 0.02


@needs(FERN)
def test_fern_eval_split(cache):
    scene = load_scene(str(FERN), eval=True, cache_dir=cache)
    assert [c.name for c in scene.test_cameras] == ["image000.png", "image008.png", "image016.png"]
    assert len(scene.train_cameras) == 17
    assert not {c.name for c in scene.train_cameras} & {c.name for c in scene.test_cameras}


@needs(FERN)
def test_fern_points_project_into_images(cache):
    scene = load_scene(str(FERN), resolution=8, cache_dir=cache)
    for cam in scene.train_cameras:
        uv, depth = project(cam, scene.points)
        assert inside(cam, uv, depth).float().mean() > 0.9, cam.name


# ---------------------------------------------------------------- NeRF-synthetic (lego, tabletop)


@needs(LEGO)
def test_lego_backgrounds_and_resolution(cache):
    white = load_scene(str(LEGO), resolution=4, white_background=True, cache_dir=cache)
    black = load_scene(str(LEGO), resolution=4, white_background=False, cache_dir=cache)
    assert white.kind == "blender" and white.white_background and not black.white_background
    assert len(white.train_cameras) == 100 and len(white.test_cameras) == 25
    w, b = white.train_cameras[0], black.train_cameras[0]
    assert (w.width, w.height) == (200, 200) and w.image.shape == (200, 200, 3)
    assert w.alpha is not None and w.alpha.shape == (200, 200)
    empty = w.alpha == 0
    assert empty.float().mean() > 0.3
    assert (w.image[empty] == 1).all() and (b.image[empty] == 0).all()
    torch.testing.assert_close(w.image - b.image, (1 - w.alpha)[..., None].expand(-1, -1, 3), atol=1e-6, rtol=0)
    fx = 0.5 * 200 / math.tan(0.5 * json.loads((LEGO / "transforms_train.json").read_text())["camera_angle_x"])
    torch.testing.assert_close(w.K, torch.tensor([[fx, 0, 100], [0, fx, 100], [0, 0, 1.0]]))
    # random init in Inria's [-1.3, 1.3]^3 box, derived from the cameras
    assert white.points.shape == (100_000, 3)
    assert white.points.abs().max() == pytest.approx(1.3, abs=0.02)
    # the lego sits at the world origin: it projects near the image centre, onto opaque pixels
    hits = []
    for cam in white.train_cameras + white.test_cameras:
        uv, depth = project(cam, torch.zeros(1, 3))
        assert inside(cam, uv, depth).all() and (uv - 100).abs().max() < 20
        hits.append(cam.alpha[int(uv[0, 1]), int(uv[0, 0])] > 0.5)
    assert np.mean(hits) > 0.8


@needs(TABLETOP)
def test_tabletop_masks_labels_and_cameras(cache):
    scene = load_scene(str(TABLETOP), cache_dir=cache)
    assert len(scene.train_cameras) == 60 and len(scene.test_cameras) == 20
    cam = scene.train_cameras[0]
    assert cam.alpha is None and cam.image.shape == (256, 256, 3)
    assert cam.mask.shape == (256, 256) and cam.mask.dtype == torch.int64
    counts = sum(torch.bincount(c.mask.flatten(), minlength=10) for c in scene.train_cameras)
    assert counts.shape == (10,) and (counts > 0).all()
    assert scene.labels["1"] == "red apple" and len(scene.labels["queries"]) == 10
    # triangulate each object from its mask centroids (train), re-project into test masks
    centre, half = scene.extra["init_box"]
    good = total = 0
    for oid in range(1, 9):
        A, b = np.zeros((3, 3)), np.zeros(3)
        for c in scene.train_cameras:
            ys, xs = np.nonzero(c.mask.numpy() == oid)
            if len(xs) < 20:
                continue
            ray = np.linalg.solve(c.K.double().numpy(), [xs.mean() + 0.5, ys.mean() + 0.5, 1.0])
            d = c.camtoworld[:3, :3].double().numpy() @ ray
            d, o = d / np.linalg.norm(d), c.center.double().numpy()
            P = np.eye(3) - np.outer(d, d)
            A, b = A + P, b + P @ o
        x = np.linalg.solve(A, b)
        assert (np.abs(x - centre) < half).all(), (oid, x)
        for c in scene.test_cameras:
            uv, depth = project(c, torch.tensor(x, dtype=torch.float32)[None])
            if inside(c, uv, depth).all():
                total += 1
                good += int(c.mask[int(uv[0, 1]), int(uv[0, 0])] == oid)
    assert total > 100 and good / total > 0.8, (good, total)


# ---------------------------------------------------------------- demo scene


def test_demo_scene_is_deterministic(tmp_path):
    a = generate_demo_scene(tmp_path / "a", n_train=3, n_test=1, size=24)
    b = generate_demo_scene(tmp_path / "b", n_train=3, n_test=1, size=24)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 2 * 4 + 3  # images + masks, two transforms files, labels.json
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_demo_scene_loads(tmp_path):
    scene = load_scene(None, cache_dir=str(tmp_path), num_random_points=5000)
    assert scene.kind == "demo" and len(scene.train_cameras) == 32 and len(scene.test_cameras) == 8
    assert scene.points.shape == (5000, 3) and scene.labels["1"] == "red ball"
    cam = scene.train_cameras[0]
    assert cam.image.shape == (128, 128, 3) and cam.alpha is not None and cam.mask is not None
    stamp = os.stat(Path(scene.source_path) / "transforms_train.json").st_mtime_ns
    again = load_scene(None, resolution=2, cache_dir=str(tmp_path))
    assert os.stat(Path(again.source_path) / "transforms_train.json").st_mtime_ns == stamp  # not regenerated
    assert again.train_cameras[0].width == 64
    # each primitive's centre projects onto its own id, unless something is in front of it
    good = total = 0
    for prim in demo.PRIMITIVES[:4]:
        pid, centre = prim.id, prim.centre
        for c in scene.train_cameras + scene.test_cameras:
            uv, depth = project(c, torch.tensor([centre], dtype=torch.float32))
            assert inside(c, uv, depth).all()
            total += 1
            good += int(c.mask[int(uv[0, 1]), int(uv[0, 0])] == pid)
    assert good / total > 0.7, (good, total)


# ---------------------------------------------------------------- errors


def test_bad_paths_and_layouts(tmp_path):
    assert_one_line_error(lambda: load_scene(str(tmp_path / "nope")), "not found", "nope")
    (tmp_path / "file.txt").write_text("x")
    assert_one_line_error(lambda: load_scene(str(tmp_path / "file.txt")), "not a folder")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(lambda: load_scene(str(tmp_path / "empty")), "unknown scene layout")
    (tmp_path / "nomodel" / "sparse" / "0").mkdir(parents=True)
    (tmp_path / "nomodel" / "images").mkdir()
    assert_one_line_error(lambda: load_scene(str(tmp_path / "nomodel")), "no COLMAP model")
    for bad in (0, 3, 15, -2, "2", 2.0, True):  # 16 and up: a target width
        assert_one_line_error(lambda: load_scene(None, resolution=bad, cache_dir=str(tmp_path)), "resolution")


def _blender_folder(root: Path) -> Path:
    (root / "train").mkdir(parents=True)
    Image.new("RGBA", (8, 8), (255, 0, 0, 128)).save(root / "train" / "r_0.png")
    frames = [{"file_path": "./train/r_0", "transform_matrix": np.eye(4).tolist()}]
    (root / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": frames}))
    return root


def test_blender_errors(tmp_path):
    root = _blender_folder(tmp_path / "b")
    scene = load_scene(str(root), white_background=True, num_random_points=10)
    pixel = scene.train_cameras[0].image[0, 0]  # red at alpha 128/255 over white
    torch.testing.assert_close(pixel, torch.tensor([1.0, 127 / 255, 127 / 255]), atol=3e-3, rtol=0)
    (root / "train" / "r_0.png").write_bytes(b"not a png")
    assert_one_line_error(lambda: load_scene(str(root)), "cannot read image", "r_0.png")
    (root / "train" / "r_0.png").unlink()
    assert_one_line_error(lambda: load_scene(str(root)), "image file not found", "r_0.png")
    (root / "transforms_train.json").write_text("{broken")
    assert_one_line_error(lambda: load_scene(str(root)), "cannot read", "transforms_train.json")
    (root / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.7}))
    assert_one_line_error(lambda: load_scene(str(root)), "frames")


@needs(FERN)
def test_colmap_text_model_and_errors(tmp_path, cache):
    pycolmap = pytest.importorskip("pycolmap")
    rec = pycolmap.Reconstruction(str(FERN / "sparse" / "0"))
    root = tmp_path / "scene"
    (root / "sparse" / "0").mkdir(parents=True)
    (root / "images").mkdir()
    rec.write_text(str(root / "sparse" / "0"))
    for p in sorted((FERN / "images").iterdir()):  # links, not copies, to the read-only data
        os.symlink(p, root / "images" / p.name)
    scene = load_scene(str(root), resolution=8, cache_dir=cache)  # text model reads like the binary one
    assert len(scene.train_cameras) == 20 and scene.points.shape == (10091, 3)

    os.unlink(root / "images" / "image005.png")
    assert_one_line_error(lambda: load_scene(str(root), cache_dir=cache), "image file not found", "image005.png")
    os.rename(root / "images", root / "pictures")
    assert_one_line_error(lambda: load_scene(str(root), cache_dir=cache), "images/")

    cam = rec.cameras[1]  # SIMPLE_RADIAL ... FULL_OPENCV load (tests/test_data_undistort.py), this one does not
    cam.model = pycolmap.CameraModelId.THIN_PRISM_FISHEYE
    cam.params = [cam.params[0], cam.params[0], cam.params[1], cam.params[2]] + [0.01] * 8
    rec.write_text(str(root / "sparse" / "0"))
    os.rename(root / "pictures", root / "images")
    assert_one_line_error(lambda: load_scene(str(root), cache_dir=cache), "THIN_PRISM_FISHEYE", "OPENCV_FISHEYE",
                          "colmap image_undistorter")
