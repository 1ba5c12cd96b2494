"""The demo scene seen through a distorted lens: a COLMAP text model plus images distorted with known
coefficients, to try (and test) the undistortion at load (:mod:`gs_vq.data.undistort`).

    python -m gs_vq.data.lens_demo -o demo_opencv --model OPENCV          # then train.py -s demo_opencv --eval
    python -m gs_vq.data.lens_demo -o demo_pinhole --model PINHOLE        # the same views, undistorted

Every view of the demo scene (training and test views alike, on black) is written to ``images/``
under one camera of model ``--model``, with the poses in ``sparse/0/images.txt`` and no 3D points
(the loader then starts from random points in the box the cameras look at). Each view is traced
through the lens: every sample position goes through OpenCV's iterative undistortion to its
pinhole ray, so the distortion is exactly OpenCV's model, the one COLMAP's cameras share, and the
images are as sharp as the pinhole ones.
"""

from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from gs_vq.errors import GsVqError

CRITERIA = (3, 100, 1e-12)  # cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100 iterations, 1e-12

# model -> its COLMAP parameters for a pinhole K (COLMAP's order): the coefficients the benchmark,
# the tests and the CLI distort with (moderate barrel distortion, as phone and action cameras have)
LENSES: Dict[str, Callable[[np.ndarray], List[float]]] = {
    "PINHOLE": lambda K: [K[0, 0], K[1, 1], K[0, 2], K[1, 2]],
    "SIMPLE_RADIAL": lambda K: [K[0, 0], K[0, 2], K[1, 2], 0.12],
    "OPENCV": lambda K: [K[0, 0], K[1, 1], K[0, 2], K[1, 2], -0.18, 0.04, 0.003, -0.002],
    "FULL_OPENCV": lambda K: [K[0, 0], K[1, 1], K[0, 2], K[1, 2], -0.15, 0.03, 0.001, 0.002, 0.01, 0.02, 0.0, 0.01],
    "OPENCV_FISHEYE": lambda K: [K[0, 0], K[1, 1], K[0, 2], K[1, 2], 0.06, 0.01, -0.004, 0.001],
}


def opencv_K(K: np.ndarray) -> np.ndarray:
    """``[3, 3]``: our K (pixel centres at +0.5, COLMAP's convention) in OpenCV's (centres at integers)."""
    K = np.array(K, dtype=np.float64)
    K[:2, 2] -= 0.5
    return K


def pixel_rays(width: int, height: int, K: np.ndarray) -> np.ndarray:
    """``[H, W, 2]`` normalized pinhole coordinates of every pixel centre for our K."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    return np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1]], -1)


def sample(image: np.ndarray, K: np.ndarray, rays: np.ndarray) -> np.ndarray:
    """``image`` (a pinhole view with our K, ``[H, W, C]``) bilinearly sampled along ``rays`` ``[h, w, 2]``."""
    import cv2

    mapx = (K[0, 0] * rays[..., 0] + K[0, 2] - 0.5).astype(np.float32)
    mapy = (K[1, 1] * rays[..., 1] + K[1, 2] - 0.5).astype(np.float32)
    return cv2.remap(image, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def undistort_points(pts: np.ndarray, K: np.ndarray, dist: np.ndarray, fisheye: bool) -> np.ndarray:
    """``[M, 2]`` pixel positions of the distorted camera (our convention: centres at +0.5) ->
    ``[M, 2]`` normalized pinhole coordinates (cv2's iterative undistortion)."""
    import cv2

    pts = (np.asarray(pts, np.float64) - 0.5).reshape(-1, 1, 2)  # OpenCV pixel coordinates
    if fisheye:
        rays = cv2.fisheye.undistortPoints(pts, opencv_K(K), dist, criteria=CRITERIA)
    elif hasattr(cv2, "undistortPointsIter"):  # OpenCV 4
        rays = cv2.undistortPointsIter(pts, opencv_K(K), dist, None, None, CRITERIA)
    else:  # OpenCV 5 folded the criteria into undistortPoints
        rays = cv2.undistortPoints(pts, opencv_K(K), dist, criteria=CRITERIA)
    return rays.reshape(-1, 2)


def distort(image: np.ndarray, K: np.ndarray, dist: np.ndarray, fisheye: bool) -> np.ndarray:
    """The view ``image`` (pinhole, K; ``[H, W, C]``) as the distorted camera (K, OpenCV's ``dist``)
    sees it: every distorted pixel looks up where it comes from (a bilinear resampling)."""
    h, w = image.shape[:2]
    v, u = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    rays = undistort_points(np.stack([u, v], -1).reshape(-1, 2), K, dist, fisheye)
    return sample(image, K, rays.reshape(h, w, 2))


def write_colmap_text(root: Path, cameras: Iterable[Tuple[int, str, int, int, Sequence[float]]],
                      images: Iterable[Tuple[str, int, np.ndarray]]) -> Path:
    """Write ``root/sparse/0/{cameras,images,points3D}.txt`` and return ``root``.

    Args:
        cameras: (camera id, COLMAP model name, width, height, params in COLMAP's order).
        images: (file name, camera id, [4, 4] world-to-camera, OpenCV axes); no 3D points.
    """
    import pycolmap

    model = Path(root) / "sparse" / "0"
    model.mkdir(parents=True, exist_ok=True)
    lines = [f"{cid} {name} {w} {h} " + " ".join(repr(float(p)) for p in params) for cid, name, w, h, params in cameras]
    (model / "cameras.txt").write_text("\n".join(lines) + "\n")
    lines = []
    for image_id, (name, cid, viewmat) in enumerate(images, start=1):
        x, y, z, w = (float(q) for q in pycolmap.Rotation3d(np.asarray(viewmat[:3, :3], np.float64)).quat)  # xyzw
        t = [float(v) for v in viewmat[:3, 3]]
        lines += [f"{image_id} {w!r} {x!r} {y!r} {z!r} {t[0]!r} {t[1]!r} {t[2]!r} {cid} {name}", ""]
    (model / "images.txt").write_text("\n".join(lines) + "\n")
    (model / "points3D.txt").write_text("# no points\n")
    return Path(root)


def write_distorted_views(root: Path, cameras: Sequence, images: Sequence[np.ndarray], model: str,
                          params: Sequence[float], distorted: bool = False) -> Path:
    """Distort ``images`` (``[H, W, 3]`` uint8 pinhole views of ``cameras``, one K) by COLMAP camera
    ``model`` with ``params`` (or, with ``distorted``, take them as that camera's views already)
    and write them with their poses as a COLMAP scene at ``root``."""
    from PIL import Image

    from gs_vq.data.undistort import camera_lens

    root = Path(root)
    (root / "images").mkdir(parents=True)
    K = cameras[0].K.double().numpy()
    _, lens = camera_lens(model, params, "lens demo camera")
    names = [f"{c.name.replace('/', '_')}.png" for c in cameras]
    for name, image in zip(names, images):
        out = image if lens is None or distorted else distort(image, K, np.array(lens.coeffs), lens.fisheye)
        Image.fromarray(out).save(root / "images" / name)
    return write_colmap_text(root, [(1, model, cameras[0].width, cameras[0].height, params)],
                             [(n, 1, c.viewmat.double().numpy()) for n, c in zip(names, cameras)])


def write_lens_demo(out: Path, model: str, n_views: int = 40, size: int = 128,
                    cache: Optional[Path] = None) -> Path:
    """The demo scene's ``n_views`` views (``size`` px, on black) as a COLMAP scene at ``out`` whose
    camera is ``model`` with the coefficients of :data:`LENSES`: every view is ray-traced through
    that lens (no resampling, so the only resampling is the loader's undistortion). Written in a
    temporary folder, then renamed; an existing ``out`` is an error."""
    import shutil
    import tempfile

    from gs_vq.data import load_scene
    from gs_vq.data.demo import CAMERA_ANGLE_X, generate_demo_scene
    from gs_vq.data.undistort import camera_lens

    if model not in LENSES:
        raise GsVqError(f"lens demo: unknown camera model {model}; one of {', '.join(LENSES)}")
    out = Path(out)
    if out.exists():
        raise GsVqError(f"{out} exists: choose a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-lens-", dir=out.parent))
    try:
        f = 0.5 * size / np.tan(0.5 * CAMERA_ANGLE_X)
        K = np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]])  # the demo camera's
        params = LENSES[model](K)
        _, lens = camera_lens(model, params, "lens demo camera")
        trace = None if lens is None else lambda pix: undistort_points(pix, K, np.array(lens.coeffs), lens.fisheye)
        demo = generate_demo_scene(tmp / "demo", n_train=n_views, n_test=1, size=size, lens=trace)
        cams = load_scene(str(demo), resolution=1, cache_dir=str(cache or tmp / "cache")).train_cameras
        np.testing.assert_allclose(cams[0].K.double().numpy(), K, rtol=1e-5)
        images = [(c.image.numpy() * 255 + 0.5).astype(np.uint8) for c in cams]  # [H, W, 3] on black
        write_distorted_views(tmp / "scene", cams, images, model, params, distorted=True)
        (tmp / "scene").rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: Optional[Sequence[str]] = None) -> None:
    from gs_vq.console import OneLineParser, guarded

    p = OneLineParser(prog="python -m gs_vq.data.lens_demo", description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--out", required=True, help="new folder for the COLMAP scene")
    p.add_argument("--model", default="OPENCV", choices=list(LENSES), help="COLMAP camera model")
    p.add_argument("--views", type=int, default=40, help="number of views (with --eval every 8th is a test view)")
    p.add_argument("--size", type=int, default=128, help="image width = height in pixels")

    @guarded
    def run(argv):
        args = p.parse_args(argv)
        if args.views < 1 or args.size < 16:
            raise GsVqError(f"bad sizes: --views {args.views} (>= 1), --size {args.size} (>= 16)")
        print(write_lens_demo(Path(args.out), args.model, args.views, args.size))

    run(argv)


if __name__ == "__main__":
    main()
