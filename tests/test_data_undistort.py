"""Distorted COLMAP cameras: the demo scene's images distorted with known coefficients, written as a
COLMAP model, loaded back undistorted; the result must match the original images and K."""

from pathlib import Path

import numpy as np
import pytest
import torch

cv2 = pytest.importorskip("cv2")
from PIL import Image  # noqa: E402

from gs_vq.data import load_scene  # noqa: E402
from gs_vq.data.demo import generate_demo_scene  # noqa: E402
from gs_vq.data.lens_demo import LENSES, distort, opencv_K, pixel_rays, sample, write_distorted_views, write_lens_demo  # noqa: E402
from gs_vq.data.undistort import camera_lens, undistortion, valid_rectangle  # noqa: E402
from gs_vq.errors import GsVqError  # noqa: E402

@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo scene's first train views (128x128), composited on black: (cameras, images [H, W, 3] uint8)."""
    root = tmp_path_factory.mktemp("demo")
    scene = load_scene(str(generate_demo_scene(root / "demo", n_train=6, n_test=1)), resolution=1,
                       cache_dir=str(root / "cache"))
    cams = scene.train_cameras[:3]
    return cams, [(c.image.numpy() * 255 + 0.5).astype(np.uint8) for c in cams]


def distorted_scene(root: Path, demo, model: str, params_of) -> Path:
    """A COLMAP scene of the demo views, distorted by ``model`` with ``params_of(K)`` (COLMAP's order)."""
    cams, images = demo
    return write_distorted_views(root, cams, images, model, params_of(cams[0].K.double().numpy()))


def undistortion_error(original: np.ndarray, K: np.ndarray, loaded: np.ndarray, K_loaded: np.ndarray) -> float:
    """Mean absolute difference (0-255) of the loaded view and the original view resampled with the
    loaded K, away from a 3-pixel border."""
    h, w = loaded.shape[:2]
    expected = sample(original, K, pixel_rays(w, h, K_loaded)).astype(np.float64)
    return float(np.abs(expected - loaded.astype(np.float64))[3:-3, 3:-3].mean())


PERSPECTIVE = {m: LENSES[m] for m in ("OPENCV", "SIMPLE_RADIAL", "FULL_OPENCV")}


@pytest.mark.parametrize("model", sorted(PERSPECTIVE))
def test_perspective_models_undistort_to_the_original(tmp_path, demo, model):
    root = distorted_scene(tmp_path / "scene", demo, model, PERSPECTIVE[model])
    scene = load_scene(str(root), resolution=1, cache_dir=str(tmp_path / "cache"))
    cams, images = demo
    K = cams[0].K.double().numpy()
    dist = np.array(camera_lens(model, PERSPECTIVE[model](K), "test")[1].coeffs)
    for original, loaded in zip(images, scene.train_cameras):
        K_loaded = loaded.K.double().numpy()
        pixels = loaded.pixels.numpy()
        assert pixels.dtype == np.uint8 and pixels.shape == (loaded.height, loaded.width, 3)
        assert loaded.width < 128 or loaded.height < 128 or model == "SIMPLE_RADIAL"  # the ROI crop
        # K: gsplat's getOptimalNewCameraMatrix (alpha 0) in our pixel convention, shifted by the ROI
        new, (x, y, w, h) = cv2.getOptimalNewCameraMatrix(opencv_K(K), dist, (128, 128), 0)
        assert (loaded.width, loaded.height) == (w, h)
        np.testing.assert_allclose(K_loaded, new + np.array([[0, 0, 0.5 - x], [0, 0, 0.5 - y], [0, 0, 0]]), atol=1e-4)
        err = undistortion_error(original, K, pixels, K_loaded)
        assert err < 2.0, err  # two resamplings (distortion, then the loader's bicubic remap) of sharp edges, on 0-255
        shifted = K_loaded + np.array([[0, 0, 1.0], [0, 0, 0], [0, 0, 0]])
        assert undistortion_error(original, K, pixels, shifted) > 1.5 * err  # the check sees a 1-pixel error
    # a second load reads the undistorted images from the cache
    cached = list((tmp_path / "cache" / "images").rglob("*-u*/*.png"))
    assert len(cached) == len(images)
    again = load_scene(str(root), resolution=1, cache_dir=str(tmp_path / "cache"))
    assert torch.equal(again.train_cameras[0].pixels, scene.train_cameras[0].pixels)


def test_undistortion_at_a_downscaled_resolution(tmp_path, demo):
    root = distorted_scene(tmp_path / "scene", demo, "OPENCV", PERSPECTIVE["OPENCV"])
    full = load_scene(str(root), resolution=1, cache_dir=str(tmp_path / "cache")).train_cameras[0]
    half = load_scene(str(root), resolution=2, cache_dir=str(tmp_path / "cache")).train_cameras[0]
    assert abs(half.width - full.width / 2) <= 1 and abs(half.height - full.height / 2) <= 1
    np.testing.assert_allclose(half.K[0, 0].item(), full.K[0, 0].item() / 2, rtol=0.02)
    cams, images = demo
    small = np.asarray(Image.fromarray(images[0]).resize((64, 64), Image.BICUBIC))
    K_small = cams[0].K.double().numpy() * np.array([[0.5], [0.5], [1.0]])
    assert undistortion_error(small, K_small, half.pixels.numpy(), half.K.double().numpy()) < 3.0


def test_fisheye_round_trip(tmp_path, demo):
    params = LENSES["OPENCV_FISHEYE"]
    FISHEYE = params(np.eye(3))[4:]
    root = distorted_scene(tmp_path / "scene", demo, "OPENCV_FISHEYE", params)
    scene = load_scene(str(root), resolution=1, cache_dir=str(tmp_path / "cache"))
    cams, images = demo
    K = cams[0].K.double().numpy()
    cam = scene.train_cameras[0]
    K_loaded = cam.K.double().numpy()
    assert K_loaded[0, 0] == pytest.approx(K[0, 0]) and K_loaded[1, 1] == pytest.approx(K[1, 1])  # gsplat: K kept
    err = undistortion_error(images[0], K, cam.pixels.numpy(), K_loaded)
    assert err < 2.0, err
    # pixel level: the loader's map sends each undistorted pixel where cv2.fisheye.distortPoints does
    _, lens = camera_lens("OPENCV_FISHEYE", params(K), "test")
    remap = undistortion(lens, K, 128, 128)
    rays = pixel_rays(cam.width, cam.height, K_loaded).reshape(-1, 1, 2)
    expected = cv2.fisheye.distortPoints(rays, opencv_K(K), np.array(FISHEYE)).reshape(cam.height, cam.width, 2)
    np.testing.assert_allclose(np.stack([remap.mapx, remap.mapy], -1), expected, atol=2e-3)


def test_strong_fisheye_is_cropped_to_valid_pixels():
    K = np.array([[60.0, 0, 64], [0, 60.0, 64], [0, 0, 1]])
    _, lens = camera_lens("OPENCV_FISHEYE", [60, 60, 64, 64, 0.6, 0.2, 0, 0], "test")
    remap = undistortion(lens, K, 128, 128)
    w, h = remap.size
    assert 16 < w < 128 and 16 < h < 128
    assert (remap.mapx >= 0).all() and (remap.mapx <= 127).all() and (remap.mapy >= 0).all() and (remap.mapy <= 127).all()
    valid = np.zeros((10, 12), bool)
    valid[2:8, 3:11] = True
    valid[2, 3] = False  # one bad corner: the border column (1 of 6 bad) goes, not the row (1 of 8)
    x, y, w, h = valid_rectangle(valid)
    assert valid[y:y + h, x:x + w].all() and (x, y, w, h) == (4, 2, 7, 6)


def test_camera_models_and_their_errors():
    K, lens = camera_lens("RADIAL", [100, 50, 40, 0.1, -0.02], "cam")
    assert lens.coeffs == (0.1, -0.02, 0.0, 0.0) and not lens.fisheye and K[0, 0] == K[1, 1] == 100
    _, lens = camera_lens("SIMPLE_RADIAL", [100, 50, 40, 0.0], "cam")
    assert lens is None  # no distortion: a pinhole camera, no remap
    _, lens = camera_lens("FULL_OPENCV", [100, 90, 50, 40, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], "cam")
    assert lens.coeffs == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    with pytest.raises(GsVqError, match="THIN_PRISM_FISHEYE camera model; supported: SIMPLE_PINHOLE.*OPENCV_FISHEYE"):
        camera_lens("THIN_PRISM_FISHEYE", [1.0] * 12, "COLMAP camera 3")
    with pytest.raises(GsVqError, match="needs 8 finite parameters"):
        camera_lens("OPENCV", [100, 90, 50, 40, 0.1], "cam")


def test_lens_demo_writes_a_distorted_colmap_scene(tmp_path):
    out = write_lens_demo(tmp_path / "lens", "SIMPLE_RADIAL", n_views=9, size=48, cache=tmp_path / "cache")
    assert sorted(p.name for p in (out / "sparse" / "0").iterdir()) == ["cameras.txt", "images.txt", "points3D.txt"]
    assert "SIMPLE_RADIAL 48 48" in (out / "sparse" / "0" / "cameras.txt").read_text()
    scene = load_scene(str(out), resolution=1, eval=True, cache_dir=str(tmp_path / "cache"))
    assert (len(scene.train_cameras), len(scene.test_cameras)) == (7, 2)  # every 8th image by name is a test view
    assert all(c.width < 48 or c.height < 48 for c in scene.train_cameras)  # undistorted, ROI-cropped
    assert not any(p.name.startswith(".tmp-lens") for p in tmp_path.iterdir())
    # traced through the lens = the pinhole view distorted by resampling, up to that resampling's
    # blur: closest with the lens centred where the loader puts it, not a pixel to either side
    traced = write_lens_demo(tmp_path / "opencv96", "OPENCV", n_views=9, size=96, cache=tmp_path / "cache")
    pin = write_lens_demo(tmp_path / "pin96", "PINHOLE", n_views=9, size=96, cache=tmp_path / "cache")
    K = load_scene(str(pin), resolution=1, cache_dir=str(tmp_path / "cache")).train_cameras[0].K.double().numpy()
    dist = np.array(camera_lens("OPENCV", LENSES["OPENCV"](K), "test")[1].coeffs)

    def error(dx: float) -> float:
        Kx = K + np.array([[0, 0, dx], [0, 0, 0], [0, 0, 0]])
        return sum(np.abs(np.asarray(Image.open(traced / "images" / n), np.float64) -
                          distort(np.asarray(Image.open(pin / "images" / n)), Kx, dist, False))[3:-3, 3:-3].mean()
                   for n in ("train_r_1.png", "train_r_4.png"))

    assert error(0.0) < 2 * 2.5 and error(0.0) < min(error(-1.0), error(1.0))
    with pytest.raises(GsVqError, match="exists"):
        write_lens_demo(out, "OPENCV")
    with pytest.raises(GsVqError, match="unknown camera model"):
        write_lens_demo(tmp_path / "other", "EQUIRECTANGULAR")


def test_the_interpolation_names_the_cached_images(monkeypatch):
    """Images undistorted with another interpolation are never read back from the cache."""
    from gs_vq.data import undistort as U

    lens = U.camera_lens("SIMPLE_RADIAL", [100.0, 64.0, 64.0, 0.1], "test")[1]
    K = np.array([[100.0, 0, 64], [0, 100.0, 64], [0, 0, 1]])
    tags = {}
    for interp in ("INTER_LINEAR", "INTER_CUBIC"):
        monkeypatch.setattr(U, "INTERPOLATION", interp)
        U._undistortion.cache_clear()
        tags[interp] = U.undistortion(lens, K, 128, 128).tag
    U._undistortion.cache_clear()
    assert tags["INTER_LINEAR"] != tags["INTER_CUBIC"]


def test_raw_lens_keeps_the_captured_images_and_the_lens(tmp_path, demo):
    """--lens raw: the files as they are, COLMAP's K, and the lens in gsplat's order on the camera."""
    params = LENSES["FULL_OPENCV"]
    root = distorted_scene(tmp_path / "scene", demo, "FULL_OPENCV", params)
    scene = load_scene(str(root), resolution=1, cache_dir=str(tmp_path / "cache"), lens="raw")
    cams, _ = demo
    K = cams[0].K.double().numpy()
    k1, k2, p1, p2, k3, k4, k5, k6 = params(K)[4:]
    for cam in scene.train_cameras:
        assert (cam.width, cam.height) == (128, 128)  # the whole frame, no crop
        np.testing.assert_array_equal(cam.pixels.numpy(), np.asarray(Image.open(root / "images" / cam.name)))
        np.testing.assert_allclose(cam.K.double().numpy(), K, atol=1e-4)
        np.testing.assert_allclose(cam.radial_coeffs.numpy(), [k1, k2, k3, k4, k5, k6])
        np.testing.assert_allclose(cam.tangential_coeffs.numpy(), [p1, p2])
    assert not (tmp_path / "cache" / "images").exists() or not list((tmp_path / "cache" / "images").rglob("*-u*"))
    pinhole = distorted_scene(tmp_path / "pinhole", demo, "PINHOLE", LENSES["PINHOLE"])
    assert load_scene(str(pinhole), resolution=1, cache_dir=str(tmp_path / "cache"),
                      lens="raw").train_cameras[0].radial_coeffs is None


def test_raw_lens_refuses_fisheye_and_unknown_modes(tmp_path, demo):
    root = distorted_scene(tmp_path / "scene", demo, "OPENCV_FISHEYE", LENSES["OPENCV_FISHEYE"])
    with pytest.raises(GsVqError, match="OPENCV_FISHEYE lens is not a perspective lens"):
        load_scene(str(root), resolution=1, cache_dir=str(tmp_path / "cache"), lens="raw")
    with pytest.raises(GsVqError, match="lens must be one of undistort, raw"):
        load_scene(str(root), lens="rectify")


def test_rendering_through_the_lens_is_the_distorted_pinhole_render():
    """A smooth scene rendered straight into the OPENCV camera equals its pinhole render distorted by
    OpenCV's own point undistortion (lens_demo.distort), up to that resampling."""
    from gs_vq.data.undistort import camera_lens
    from gs_vq.render import rasterize
    from gs_vq.render.synthetic import random_scene

    s = random_scene(400, width=96, height=96, sh_degree=0, sigma_px=(2.0, 5.0), seed=3)
    args = (s["means"], s["quats"], s["scales"], s["opacities"], s["colors"], s["viewmats"], s["Ks"], 96, 96)
    K = s["Ks"][0].double().numpy()
    lens = camera_lens("OPENCV", LENSES["OPENCV"](K), "test")[1]
    radial, tangential = (torch.tensor([c], dtype=torch.float32) for c in lens.gsplat_coeffs())
    pin, _, _ = rasterize(*args, sh_degree=0)
    raw, _, _ = rasterize(*args, sh_degree=0, radial_coeffs=radial, tangential_coeffs=tangential)
    expected = distort(pin[0].numpy(), K, np.array(lens.coeffs), False)  # [H, W, 3]
    inner = (slice(6, -6), slice(6, -6))  # the resampling replicates the border
    err = np.abs(raw[0].numpy() - expected)[inner].mean()
    assert err < 0.005, err  # 0.003 (0-1 scale)
    assert np.abs(pin[0].numpy() - raw[0].numpy())[inner].mean() > 4 * err  # the lens is not a no-op (0.021)
