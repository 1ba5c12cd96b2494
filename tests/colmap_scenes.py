"""Small COLMAP text scenes for the loader tests: cameras.txt / images.txt / points3D.txt by hand."""

from pathlib import Path
from typing import Iterable, Sequence, Tuple

import numpy as np
import pycolmap
from PIL import Image


def write_model(root: Path, cameras: Iterable[Tuple[int, str, int, int, Sequence[float]]],
                images: Iterable[Tuple[str, int, np.ndarray]]) -> Path:
    """Write ``root/sparse/0/{cameras,images,points3D}.txt`` and return ``root``.

    Args:
        cameras: (camera id, COLMAP model name, width, height, params in COLMAP's order).
        images: (file name, camera id, [4, 4] world-to-camera, OpenCV axes); no 3D points.
    """
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


def flat_scene(root: Path, size: Tuple[int, int] = (32, 24), n: int = 2, colour=(200, 40, 40)) -> Path:
    """A PINHOLE scene of ``n`` plain images of ``size`` = (W, H) in ``root/images``, cameras on a line."""
    (Path(root) / "images").mkdir(parents=True, exist_ok=True)
    w, h = size
    views = []
    for i in range(n):
        Image.new("RGB", size, colour).save(Path(root) / "images" / f"v{i}.png")
        viewmat = np.eye(4)
        viewmat[0, 3] = -0.5 * i
        views.append((f"v{i}.png", 1, viewmat))
    return write_model(root, [(1, "PINHOLE", w, h, [0.8 * w, 0.8 * w, w / 2, h / 2])], views)
