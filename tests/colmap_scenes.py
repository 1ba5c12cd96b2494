"""Small COLMAP text scenes for the loader tests: cameras.txt / images.txt / points3D.txt by hand."""

from pathlib import Path
from typing import Tuple

import numpy as np
from PIL import Image

from gs_vq.data.lens_demo import write_colmap_text as write_model  # noqa: F401 (the loader tests' writer)


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
