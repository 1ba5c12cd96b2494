"""What the loader's undistortion costs the training images themselves, per interpolation.

    python -m bench.resampling                        # 128 and 256 px, SIMPLE_RADIAL and OPENCV
    python -m bench.resampling --sizes 128 --views 4

Each lens demo view (:func:`gs_vq.data.lens_demo.write_lens_demo`: the demo scene ray-traced
through a known lens) is undistorted with the loader's maps (:mod:`gs_vq.data.undistort`), once per
``cv2.remap`` interpolation, and compared with the same view traced directly by a pinhole camera
with the undistorted K, cropped to the same ROI: the image the loader should have produced. The
PSNR between the two is the ceiling of what a model trained on the undistorted views can reach on
sharp ground truth, from the one resampling alone. Training views only: no test view is used, so
the interpolation chosen from this table (:data:`gs_vq.data.undistort.INTERPOLATION`) is not
chosen on what bench.distortion reports. Prints a table; writes docs/resampling.json.
"""

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from bench.report import ROOT, markdown, write_json
from gs_vq.data import load_scene
from gs_vq.data.demo import CAMERA_ANGLE_X, generate_demo_scene
from gs_vq.data.lens_demo import LENSES, write_lens_demo
from gs_vq.data.undistort import camera_lens, undistortion

INTERPOLATIONS = ("INTER_LINEAR", "INTER_CUBIC", "INTER_LANCZOS4")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2) / 255.0 ** 2
    return float(-10.0 * np.log10(max(mse, 1e-12)))


def floor(model: str, size: int, views: int, work: Path) -> dict:
    """Mean PSNR (dB) over the ``views`` training views of ``model``'s lens at ``size`` px, per
    interpolation, of the undistorted view against the directly traced pinhole view."""
    import cv2
    from PIL import Image

    f = 0.5 * size / np.tan(0.5 * CAMERA_ANGLE_X)
    K = np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]])  # the demo camera's
    scene = write_lens_demo(work / f"{model}_{size}", model, n_views=views, size=size, cache=work / "cache")
    _, lens = camera_lens(model, LENSES[model](K), "lens demo camera")
    und = undistortion(lens, K, size, size)
    x, y, w, h = und.roi
    fx, fy, cx, cy = und.K[0, 0], und.K[1, 1], und.K[0, 2] + x, und.K[1, 2] + y  # before the crop

    def pinhole(pix: np.ndarray) -> np.ndarray:  # [M, 2] pixels -> normalized rays of the new K
        return np.stack([(pix[:, 0] - cx) / fx, (pix[:, 1] - cy) / fy], -1)

    traced = generate_demo_scene(work / f"{model}_{size}_traced", n_train=views, n_test=1, size=size, lens=pinhole)
    ideal = {Path(c.name).name: (c.image.numpy() * 255 + 0.5).astype(np.uint8)[y:y + h, x:x + w]
             for c in load_scene(str(traced), resolution=1, cache_dir=str(work / "cache")).train_cameras}
    row = {"model": model, "size": size, "views": len(ideal), "roi": [x, y, w, h],
           "focal": [round(float(f), 2), round(float(fx), 2)]}
    for interp in INTERPOLATIONS:
        scores = []
        for path in sorted((scene / "images").iterdir()):
            ref = ideal.get(path.stem.removeprefix("train_"))  # train_r_0.png is view train/r_0
            if ref is None:
                continue
            out = cv2.remap(np.array(Image.open(path).convert("RGB")), und.mapx, und.mapy,
                            getattr(cv2, interp), borderMode=cv2.BORDER_CONSTANT)
            scores.append(_psnr(out, ref))
        if not scores:
            raise SystemExit(f"error: no traced view matches the {model} scene's images")
        row[interp] = round(float(np.mean(scores)), 2)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["SIMPLE_RADIAL", "OPENCV"],
                   choices=sorted(set(LENSES) - {"PINHOLE", "OPENCV_FISHEYE"}))
    p.add_argument("--sizes", nargs="+", type=int, default=[128, 256])
    p.add_argument("--views", type=int, default=8, help="training views per scene")
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "resampling.json"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [floor(m, s, args.views, Path(tmp)) for s in args.sizes for m in args.models]
    cols = ["model", "size", "focal", *INTERPOLATIONS]
    print(markdown(cols, [[r[c] for c in cols] for r in rows]))
    write_json(args.out, {"views": args.views, "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
