"""Camera and Scene containers shared by every loader.

Conventions (see ARCHITECTURE.md): ``viewmat`` is world-to-camera with OpenCV axes (x right,
y down, z forward), ``K`` is in pixels with pixel centres at +0.5, ``Camera.image`` is float32
``[H, W, 3]`` in [0, 1], composited on the scene's background. The loaders keep the pixels as
read, uint8 RGB or RGBA (a quarter of float32's memory); they become float32 where they are used
(:meth:`Camera.image_float`: on the training device, per batch), composited exactly as before:
``c / 255 * a / 255 + background * (1 - a / 255)``.
"""

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from gs_vq.errors import GsVqError


@dataclass(repr=False)
class Camera:
    """One posed, calibrated view with its ground-truth image.

    ``image`` and ``alpha`` are properties over the stored ``pixels``: given, ``image`` is uint8
    ``[H, W, 3|4]`` as read (RGBA composited at use on ``background``) or float32 ``[H, W, 3]``;
    read, it is always float32 ``[H, W, 3]`` in [0, 1] (on the CPU: :meth:`image_float` for a device).
    """

    name: str  # unique within the scene, e.g. "image000.png" or "train/r_0"
    image: Tensor  # see the class docstring: stored as ``pixels``
    viewmat: Tensor  # [4, 4] float32, world-to-camera, OpenCV axes
    K: Tensor  # [3, 3] float32, pixels
    width: int
    height: int
    mask: Optional[Tensor] = None  # [H, W] int64 object ids (0 = background), when the scene has masks
    alpha: Optional[Tensor] = None  # [H, W] float32 in [0, 1]: given for float images, else from RGBA pixels
    background: float = 0.0  # what RGBA pixels are composited on: 0 black, 1 white
    radial_coeffs: Optional[Tensor] = None  # [6] k1..k6 of a distorted lens kept raw (--lens raw), else None
    tangential_coeffs: Optional[Tensor] = None  # [2] p1, p2 of that lens

    def __repr__(self) -> str:
        extras = "".join(f", {k}" for k in ("mask", "alpha", "radial_coeffs") if getattr(self, k) is not None)
        return f"Camera({self.name!r}, {self.width}x{self.height}, fx={float(self.K[0, 0]):.2f}{extras})"

    def image_float(self, device: Optional[str] = None) -> Optional[Tensor]:
        """[H, W, 3] float32 in [0, 1] on ``device`` (default: where the pixels are): uint8 pixels
        move there first (asynchronously from pinned memory, :mod:`~gs_vq.data.placement`) and
        are converted and composited there."""
        pixels = self.pixels
        if device is not None and pixels is not None:  # only host-to-GPU copies may run unawaited
            pixels = pixels.to(device, non_blocking=torch.device(device).type == "cuda")
        return None if pixels is None else float_image(pixels, self.background)

    @property
    def camtoworld(self) -> Tensor:
        """[4, 4] camera-to-world (OpenCV axes)."""
        return torch.linalg.inv(self.viewmat.double()).float()

    @property
    def center(self) -> Tensor:
        """[3] camera centre in world coordinates."""
        return self.camtoworld[:3, 3]


def _set_image(camera: Camera, value: Optional[Tensor]) -> None:
    camera.pixels = value


def _get_alpha(camera: Camera) -> Optional[Tensor]:
    if camera._alpha is not None or camera.pixels is None or camera.pixels.dtype != torch.uint8:
        return camera._alpha
    return camera.pixels[..., 3].cpu().float() * (1 / 255) if camera.pixels.shape[-1] == 4 else None


def _set_alpha(camera: Camera, value: Optional[Tensor]) -> None:
    camera._alpha = value


# after the dataclass is made: its __init__ assigns image and alpha through these
Camera.image = property(lambda camera: camera.image_float("cpu"), _set_image,
                        doc="[H, W, 3] float32 in [0, 1] on the CPU (wherever the pixels are kept)")
Camera.alpha = property(_get_alpha, _set_alpha, doc="[H, W] float32 coverage in [0, 1], or None")


def float_image(pixels: Tensor, background: float = 0.0) -> Tensor:
    """uint8 ``[H, W, 3|4]`` -> float32 ``[H, W, 3]`` in [0, 1], RGBA composited on ``background``
    (0 black, 1 white), on the pixels' device; a float32 ``[H, W, 3]`` image is returned as is."""
    if pixels.dtype != torch.uint8:
        return pixels
    rgb = pixels[..., :3].float() * (1 / 255)  # [H, W, 3]
    if pixels.shape[-1] == 3:
        return rgb
    alpha = pixels[..., 3:].float() * (1 / 255)  # [H, W, 1]
    rgb = rgb * alpha
    return rgb + (1.0 - alpha) if background else rgb


def image_stem(camera: Any) -> str:
    """The view's image file name without folder or extension (``train/r_0`` -> ``r_0``): the name
    its renders are written under."""
    return os.path.splitext(os.path.basename(camera.name))[0]


def camera_image(camera: Any, device: str) -> Tensor:
    """A view's [H, W, 3] float32 image on ``device``: a :class:`Camera` converts its pixels there,
    any other object with a float ``image`` (a test double) is moved as is."""
    return camera.image_float(device) if isinstance(camera, Camera) else camera.image.to(device)


@dataclass(repr=False)
class Scene:
    """Everything a trainer needs from a data set."""

    train_cameras: List[Camera]
    test_cameras: List[Camera]
    points: Tensor  # [P, 3] float32 initial point positions (world)
    points_rgb: Tensor  # [P, 3] float32 initial point colours in [0, 1]
    scene_scale: float  # world units; 1.1 * max distance of the train camera centres from their mean
    source_path: str  # absolute path of the data set (the demo scene's: its cache folder)
    kind: str  # "colmap" | "blender" | "demo"
    white_background: bool = False
    labels: Optional[Dict[str, Any]] = None  # contents of labels.json when present
    extra: Dict[str, Any] = field(default_factory=dict)  # loader-specific notes (e.g. init box)

    def __repr__(self) -> str:
        return f"Scene({self.summary()})"

    def summary(self) -> str:
        """One line describing the scene, for logs."""
        cams = self.train_cameras or self.test_cameras
        size = f"{cams[0].width}x{cams[0].height}" if cams else "-"
        return (
            f"{self.kind} scene {self.source_path}: {len(self.train_cameras)} train / "
            f"{len(self.test_cameras)} test views at {size}, "
            f"{self.points.shape[0]} initial points, scene_scale {self.scene_scale:.3f}"
        )


def background_of(scene: Any) -> Optional[List[float]]:
    """RGB background ``[3]`` in [0, 1] that the scene's images were composited on: white or black
    (``white_background``) for NeRF-synthetic, demo and gsplat-parser scenes; None for COLMAP photos,
    which are not composited (renders accumulate on black). None for no scene."""
    if scene is None or getattr(scene, "kind", None) == "colmap":
        return None
    return [1.0, 1.0, 1.0] if getattr(scene, "white_background", False) else [0.0, 0.0, 0.0]


def check_intrinsics(K: np.ndarray, width: int, height: int, where: str, margin: float = 0.25) -> None:
    """A [3, 3] pixel K must be finite, with positive focal lengths and the principal point inside
    the ``width`` x ``height`` image or within ``margin`` of its size outside; else GsVqError."""
    K = np.asarray(K, dtype=np.float64)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if not np.isfinite(K).all() or not (fx > 0 and fy > 0):
        raise GsVqError(f"{where}: bad camera intrinsics fx={fx:g}, fy={fy:g}, cx={cx:g}, cy={cy:g} "
                        "(focal lengths must be finite and positive)")
    if not (-margin * width <= cx <= (1 + margin) * width and -margin * height <= cy <= (1 + margin) * height):
        raise GsVqError(f"{where}: principal point ({cx:g}, {cy:g}) lies far outside the {width}x{height} image")


def camera_scene_scale(cameras: List[Camera]) -> float:
    """Scene scale as gsplat's simple_trainer / Inria 3DGS compute it (world units).

    ``1.1 * max_i ||c_i - mean(c)||`` over the camera centres ``c`` (gsplat's parser gives the
    max distance and simple_trainer multiplies by 1.1; Inria's ``cameras_extent`` is the same).
    Falls back to 1.0 for a single camera or coincident centres.
    """
    centres = np.stack([c.center.numpy().astype(np.float64) for c in cameras])  # [C, 3]
    dists = np.linalg.norm(centres - centres.mean(axis=0), axis=1)  # [C]
    radius = float(dists.max()) if len(dists) else 0.0
    return 1.1 * radius if radius > 1e-8 else 1.0


def look_at_box(cameras: List[Camera], margin: float = 0.9) -> Tuple[np.ndarray, float]:
    """The cube the cameras look at, as (centre [3], half-extent), world units.

    Rule: the centre is the least-squares point closest to every optical axis; the half-extent is
    ``margin * median distance(camera, centre) * tan(fov_x / 2)``, i.e. 90% of the half-width of
    the median view's frustum at the centre. For NeRF-synthetic (cameras at radius 4.03,
    fov_x 0.691 rad) this is the origin and 1.30, Inria 3DGS's ``[-1.3, 1.3]^3``, and it follows
    any other camera radius or lens (e.g. the tabletop scene). If the optical axes are nearly
    parallel (forward-facing captures) the centre is 1 scene scale in front of the mean camera
    and the half-extent the scene scale.
    """
    c2w = np.stack([c.camtoworld.numpy().astype(np.float64) for c in cameras])  # [C, 4, 4]
    origins, dirs = c2w[:, :3, 3], c2w[:, :3, 2]  # [C, 3], [C, 3] (OpenCV +z looks forward)
    proj = np.eye(3)[None] - dirs[:, :, None] * dirs[:, None, :]  # [C, 3, 3]
    A, b = proj.sum(axis=0), np.einsum("cij,cj->i", proj, origins)
    centre = np.linalg.lstsq(A, b, rcond=None)[0] if np.linalg.eigvalsh(A)[0] > 0.05 * len(cameras) else None
    if centre is None or np.median(np.einsum("ci,ci->c", centre - origins, dirs)) <= 0:
        scale = camera_scene_scale(cameras)
        return origins.mean(axis=0) + scale * dirs.mean(axis=0), scale
    dist = float(np.median(np.linalg.norm(origins - centre, axis=1)))
    half = float(np.median([0.5 * c.width / float(c.K[0, 0]) for c in cameras]))  # tan(fov_x / 2)
    return centre, margin * dist * half


def random_points(centre: np.ndarray, half_extent: float, n: int, seed: int = 0) -> Tuple[Tensor, Tensor]:
    """``n`` deterministic uniform points in the cube, with uniform random colours.

    Returns ([n, 3] float32 positions, [n, 3] float32 colours in [0, 1]).
    """
    g = torch.Generator().manual_seed(seed)
    xyz = (torch.rand(n, 3, generator=g, dtype=torch.float64) * 2 - 1) * half_extent
    xyz += torch.as_tensor(centre, dtype=torch.float64)
    return xyz.float(), torch.rand(n, 3, generator=g)


def camera_lens_batch(cameras: List, device: str) -> Dict[str, Tensor]:
    """``radial_coeffs [C, 6]`` and ``tangential_coeffs [C, 2]`` of cameras kept with their lens
    (``--lens raw``; zeros for pinhole ones) as :func:`gs_vq.splats.render_splats` keywords; ``{}`` when none is."""
    if all(getattr(c, "radial_coeffs", None) is None for c in cameras):  # any camera-like object
        return {}
    zeros = {"radial_coeffs": torch.zeros(6), "tangential_coeffs": torch.zeros(2)}
    return {k: torch.stack([z if getattr(c, k, None) is None else getattr(c, k) for c in cameras]).float().to(device)
            for k, z in zeros.items()}
