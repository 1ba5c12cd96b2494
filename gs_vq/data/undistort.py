"""COLMAP's distorted camera models, undistorted at load time the way gsplat's COLMAP parser does.

Models: COLMAP's parameters -> the pinhole part (fx, fy, cx, cy) and OpenCV's distortion coefficients

- ``SIMPLE_PINHOLE`` (f, cx, cy), ``PINHOLE`` (fx, fy, cx, cy): none, nothing to undistort
- ``SIMPLE_RADIAL`` (f, cx, cy, k1) -> ``[k1, 0, 0, 0]``
- ``RADIAL`` (f, cx, cy, k1, k2) -> ``[k1, k2, 0, 0]``
- ``OPENCV`` (fx, fy, cx, cy, k1, k2, p1, p2) -> ``[k1, k2, p1, p2]``
- ``FULL_OPENCV`` (fx, fy, cx, cy, k1, k2, p1, p2, k3, k4, k5, k6) -> the same 8 (OpenCV's rational model)
- ``OPENCV_FISHEYE`` (fx, fy, cx, cy, k1, k2, k3, k4) -> ``cv2.fisheye``'s ``[k1, k2, k3, k4]``

Perspective models (gsplat's steps): ``cv2.getOptimalNewCameraMatrix(K, dist, (w, h), 0)`` gives the
new K and the ROI holding only valid pixels, ``cv2.initUndistortRectifyMap`` the maps; the image is
remapped (bicubic, see below) and cropped to the ROI, whose (x, y) shifts the principal point; the image size
is the ROI's. Fisheye (gsplat's layout): the new K is K, the maps come from
``cv2.fisheye.initUndistortRectifyMap``, and the crop holds the pixels whose source lies inside the
image. All-zero coefficients are a pinhole camera: no remap, no crop.

Where this differs from gsplat (v1.5.3), on purpose:

- pixel centres: our K (COLMAP's) puts pixel i's centre at i + 0.5, OpenCV's maps at i; the
  principal point is moved by -0.5 for OpenCV and back after (gsplat skips it: a sub-pixel shift
  of the distortion centre);
- fisheye maps: gsplat's own map uses theta = r instead of atan(r) and ``width // 2`` for cx, an
  approximation of the model; ``cv2.fisheye`` is COLMAP's ``OPENCV_FISHEYE`` exactly;
- fisheye crop: gsplat keeps the bounding box of the valid pixels plus a loss mask; the trainer
  here has no loss mask, so the box is trimmed until it holds valid pixels only;
- interpolation: bicubic (``INTER_CUBIC``) where gsplat remaps bilinearly. Chosen on the lens
  demo's training images (``python -m bench.resampling``, docs/resampling.json): against the same
  views traced directly through the undistorted pinhole camera, bicubic is 0.70-0.82 dB closer
  than bilinear for SIMPLE_RADIAL and OPENCV at 128 and 256 px, and as close as Lanczos or closer.
"""

import functools
import hashlib
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from gs_vq.errors import GsVqError

# model name -> number of COLMAP parameters
MODEL_PARAMS = {
    "SIMPLE_PINHOLE": 3,
    "PINHOLE": 4,
    "SIMPLE_RADIAL": 4,
    "RADIAL": 5,
    "OPENCV": 8,
    "FULL_OPENCV": 12,
    "OPENCV_FISHEYE": 8,
}
SINGLE_FOCAL = ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL")  # f, cx, cy first; the others fx, fy, cx, cy
INTERPOLATION = "INTER_CUBIC"  # cv2.remap's interpolation (gsplat: INTER_LINEAR; see the module docstring)


@dataclass(frozen=True)
class Lens:
    """A camera's distortion in OpenCV's terms (hashable: undistortion maps are cached by it)."""

    model: str  # COLMAP model name
    coeffs: Tuple[float, ...]  # OpenCV distortion coefficients: 4 (8 for FULL_OPENCV)
    fisheye: bool  # cv2.fisheye's model (OPENCV_FISHEYE) instead of cv2's perspective one

    def gsplat_coeffs(self) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
        """(radial k1..k6, tangential p1, p2): the perspective lens in ``gsplat.rasterization``'s
        terms, as :mod:`gs_vq.render.lens` projects through it."""
        if self.fisheye:
            raise GsVqError(f"--lens raw: the {self.model} lens is not a perspective lens; "
                            "train fisheye captures with --lens undistort (the default)")
        k1, k2, p1, p2, k3, k4, k5, k6 = (self.coeffs + (0.0,) * 8)[:8]
        return (k1, k2, k3, k4, k5, k6), (p1, p2)


def camera_lens(model: str, params: Sequence[float], where: str) -> Tuple[np.ndarray, Optional[Lens]]:
    """([3, 3] pixel K, Lens or None for no distortion) of a COLMAP camera; GsVqError for others.

    Args:
        model: COLMAP model name, e.g. "OPENCV".
        params: COLMAP's parameters of that model, in COLMAP's order.
        where: what to name in errors, e.g. "COLMAP camera 1".
    """
    if model not in MODEL_PARAMS:
        raise GsVqError(f"{where} uses the {model} camera model; supported: {', '.join(MODEL_PARAMS)} "
                        "(undistort the images first with `colmap image_undistorter`)")
    p = np.asarray(params, dtype=np.float64).ravel()
    if p.size != MODEL_PARAMS[model] or not np.isfinite(p).all():
        raise GsVqError(f"{where}: the {model} model needs {MODEL_PARAMS[model]} finite parameters, got {p.tolist()}")
    single = model in SINGLE_FOCAL
    fx, fy, cx, cy = (p[0], p[0], p[1], p[2]) if single else tuple(p[:4])
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    dist = p[3:] if single else p[4:]  # [0 | 1 | 2 | 4 | 8]
    if not dist.any():
        return K, None
    coeffs = np.zeros(max(4, dist.size))
    coeffs[: dist.size] = dist  # SIMPLE_RADIAL, RADIAL: k1 (, k2), zeros for the rest
    return K, Lens(model, tuple(float(c) for c in coeffs), model == "OPENCV_FISHEYE")


@dataclass(frozen=True, eq=False)
class Undistortion:
    """The remap from a distorted image of one size to its undistorted, cropped version."""

    K: np.ndarray  # [3, 3] K of the undistorted image (pixels, centres at +0.5)
    roi: Tuple[int, int, int, int]  # (x, y, width, height) of the crop, in the full remapped image
    mapx: np.ndarray  # [h, w] float32 source x of each output pixel (OpenCV coordinates: centres at i)
    mapy: np.ndarray  # [h, w] float32 source y
    tag: str  # names this remap in the image cache (lens, K and size)

    @property
    def size(self) -> Tuple[int, int]:
        """(width, height) of the undistorted image."""
        return self.roi[2], self.roi[3]

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 ``[H, W, C]`` distorted pixels -> ``[h, w, C]`` undistorted (:data:`INTERPOLATION`)."""
        import cv2  # imported here: only distorted COLMAP cameras need OpenCV

        out = cv2.remap(np.ascontiguousarray(pixels), self.mapx, self.mapy, getattr(cv2, INTERPOLATION),
                        borderMode=cv2.BORDER_CONSTANT)
        return out.reshape(self.roi[3], self.roi[2], *pixels.shape[2:])  # cv2 drops a single channel axis


def undistortion(lens: Lens, K: np.ndarray, width: int, height: int) -> Undistortion:
    """The remap of ``lens`` for a ``width`` x ``height`` image with pixel intrinsics ``K`` [3, 3].

    Cached per (lens, K, size): the maps are made once per camera, not once per image.
    """
    K = np.asarray(K, dtype=np.float64)
    return _undistortion(lens, (K[0, 0], K[1, 1], K[0, 2], K[1, 2]), int(width), int(height))


@functools.lru_cache(maxsize=16)
def _undistortion(lens: Lens, intrinsics: Tuple[float, float, float, float], width: int, height: int) -> Undistortion:
    import cv2

    fx, fy, cx, cy = intrinsics
    K_cv = np.array([[fx, 0.0, cx - 0.5], [0.0, fy, cy - 0.5], [0.0, 0.0, 1.0]])  # OpenCV's pixel centres
    dist = np.array(lens.coeffs)
    if lens.fisheye:
        new_cv = K_cv.copy()
        mapx, mapy = cv2.fisheye.initUndistortRectifyMap(K_cv, dist, np.eye(3), new_cv, (width, height),
                                                         cv2.CV_32FC1)
        valid = (mapx >= 0) & (mapx <= width - 1) & (mapy >= 0) & (mapy <= height - 1)  # [H, W]
        roi = valid_rectangle(valid)
    else:
        new_cv, roi = cv2.getOptimalNewCameraMatrix(K_cv, dist, (width, height), 0)
        mapx, mapy = cv2.initUndistortRectifyMap(K_cv, dist, None, new_cv, (width, height), cv2.CV_32FC1)
    x, y, w, h = (int(v) for v in roi)
    if w < 2 or h < 2:
        raise GsVqError(f"the {lens.model} distortion {list(lens.coeffs)} leaves no valid {width}x{height} "
                        "image after undistortion: check the camera model")
    K_new = np.array(new_cv, dtype=np.float64)
    K_new[0, 2] += 0.5 - x  # back to centres at +0.5, then the crop's origin
    K_new[1, 2] += 0.5 - y
    recipe = repr((lens, intrinsics, width, height) + ((INTERPOLATION,) if INTERPOLATION != "INTER_LINEAR" else ())).encode()
    return Undistortion(K=K_new, roi=(x, y, w, h), mapx=np.ascontiguousarray(mapx[y:y + h, x:x + w]),
                        mapy=np.ascontiguousarray(mapy[y:y + h, x:x + w]),
                        tag="u" + hashlib.sha1(recipe).hexdigest()[:16])


def valid_rectangle(valid: np.ndarray) -> Tuple[int, int, int, int]:
    """(x, y, width, height) of a rectangle holding only True pixels of ``valid`` [H, W] bool.

    Rule: the bounding box of the True pixels, then, while it holds a False pixel, drop the border
    row or column with the largest share of False pixels (for the centred, convex regions lenses
    leave this is the largest such rectangle, up to a pixel).
    """
    ys, xs = np.nonzero(valid)
    if ys.size == 0:
        return 0, 0, 0, 0
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    while y1 - y0 > 0 and x1 - x0 > 0:
        box = valid[y0:y1, x0:x1]
        bad = [1 - box[0].mean(), 1 - box[-1].mean(), 1 - box[:, 0].mean(), 1 - box[:, -1].mean()]
        side = int(np.argmax(bad))
        if bad[side] == 0:
            break
        if side == 0:
            y0 += 1
        elif side == 1:
            y1 -= 1
        elif side == 2:
            x0 += 1
        else:
            x1 -= 1
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)
