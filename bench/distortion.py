"""Training on distorted captures: the demo scene through SIMPLE_RADIAL and OPENCV lenses against the
same views undistorted (PINHOLE), CPU preset, test PSNR on held-out views.

    python -m bench.distortion --jobs 2                  # PINHOLE, SIMPLE_RADIAL, OPENCV (both --lens), 2 at a time
    python -m bench.distortion --models OPENCV_FISHEYE   # any model of gs_vq.data.lens_demo.LENSES

Each scene is :func:`gs_vq.data.lens_demo.write_lens_demo`: the demo scene's views, distorted with
known coefficients and written as a COLMAP model, so ``train.py`` undistorts them at load (OpenCV,
ROI crop) exactly as it would a user's capture, or, with ``--lens raw``, keeps the images as
captured and renders through the lens (:mod:`gs_vq.render.lens`). Each is trained with ``train.py
--config cpu --eval`` (every 8th view by name held out; no setting is chosen here) and scored by the test
PSNR of train.py's summary line (``psnr``). The distorted scenes' own test views are their
undistorted, cropped images (``--lens undistort``: resampled, with less of the frame) or the
distorted images themselves (``raw``), so ``psnr`` is not comparable across rows. The comparable number is
``psnr_pinhole_views``: every model rendered (``render.py -s``) from the PINHOLE scene's test
views, the same poses and the original, sharp 128x128 images. A model trained on a distorted
capture that is undistorted correctly scores there as the PINHOLE model does, less what the
resampling blur and the cropped border cost. Prints a table; writes bench/results/distortion.json.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import queue
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.report import ROOT, markdown, write_json
from gs_vq.data import LENS_MODES
from gs_vq.data.lens_demo import LENSES, write_lens_demo

REFERENCE = "PINHOLE"


def train(model: str, lens: str, scene: Path, out: Path, shares: queue.Queue, extra: list) -> dict:
    """``train.py --config cpu --eval`` on ``scene`` pinned to a free share of the cores; its summary line as a row."""
    cores = shares.get()
    try:
        return _train(model, lens, scene, out, cores, extra)
    finally:
        shares.put(cores)


def _train(model: str, lens: str, scene: Path, out: Path, cores: list, extra: list) -> dict:
    cmd = ["taskset", "-c", ",".join(map(str, cores)), sys.executable, os.path.join(ROOT, "train.py"),
           "-s", str(scene), "-m", str(out), "--config", "cpu", "--eval", "--lens", lens, "--quiet", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(len(cores))})
    if proc.returncode != 0:
        raise SystemExit(f"error: training on {model} failed:\n{proc.stderr[-2000:]}")
    last = [line for line in proc.stdout.splitlines() if line.startswith("[gs-vq] {")][-1]
    summary = json.loads(last[len("[gs-vq] "):])  # train.py's summary line
    pinhole = scene.parent / scene.name.replace(f"scene_{model}_", f"scene_{REFERENCE}_")
    cmd = ["taskset", "-c", ",".join(map(str, cores)), sys.executable, os.path.join(ROOT, "render.py"),
           "-m", str(out), "-s", str(pinhole), "--quiet"]  # the same test poses, through the undistorted lens
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(len(cores))})
    if proc.returncode != 0:
        raise SystemExit(f"error: rendering {model} from the pinhole views failed:\n{proc.stderr[-2000:]}")
    on_pinhole = json.loads((out / "results.json").read_text())["psnr"]
    return {"model": model, "lens": lens, "psnr": summary["test_psnr"], "psnr_pinhole_views": round(on_pinhole, 3),
            "num_gaussians": summary["num_gaussians"],
            "train_seconds": summary["train_seconds"], "wall_seconds": round(time.perf_counter() - t0, 1),
            "model_path": str(out)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["SIMPLE_RADIAL", "OPENCV"], choices=sorted(set(LENSES) - {REFERENCE}),
                   help="distorted camera models (the PINHOLE reference always runs)")
    p.add_argument("--lens", nargs="+", default=list(LENS_MODES), choices=list(LENS_MODES),
                   help="train.py --lens for the distorted models: undistorted at load, or rendered through the lens")
    p.add_argument("--views", type=int, default=40, help="views per scene (every 8th is a test view)")
    p.add_argument("--size", type=int, default=128, help="image width = height before undistortion")
    p.add_argument("--jobs", type=int, default=1, help="trainings at once, each pinned to its own cores")
    p.add_argument("--work", default=os.path.join(ROOT, "output", "bench_distortion"))
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "distortion.json"))
    p.add_argument("extra", nargs=argparse.REMAINDER, help="after --: more train.py options (e.g. --iterations 600)")
    args = p.parse_args()
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    work = Path(args.work)
    models = [REFERENCE] + args.models
    scenes = {}
    for m in models:  # written once; the scene folder depends only on the model, views and size
        scenes[m] = work / f"scene_{m}_{args.views}_{args.size}"
        if not (scenes[m] / "sparse").is_dir():
            write_lens_demo(scenes[m], m, args.views, args.size, cache=work / "cache")
    cores = sorted(os.sched_getaffinity(0))
    per = max(1, len(cores) // args.jobs)
    shares = queue.Queue()
    for j in range(args.jobs):
        shares.put(cores[j * per:(j + 1) * per])
    print(f"distortion: {', '.join(models)} (--lens {' and '.join(args.lens)}); {args.views} views of {args.size} px; "
          f"{args.jobs} at a time", flush=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        runs = [(REFERENCE, "undistort")] + [(m, lens) for lens in args.lens for m in args.models]
        futures = [pool.submit(train, m, lens, scenes[m], work / f"model_{m}_{lens}", shares, extra) for m, lens in runs]
        rows = [f.result() for f in futures]
    ref = next(r for r in rows if r["model"] == REFERENCE)
    for r in rows:
        r["delta_psnr"] = round(r["psnr"] - ref["psnr"], 3)
        r["delta_pinhole_views"] = round(r["psnr_pinhole_views"] - ref["psnr_pinhole_views"], 3)
    cols = ["model", "lens", "psnr", "delta_psnr", "psnr_pinhole_views", "delta_pinhole_views", "num_gaussians",
            "train_seconds"]
    print(markdown(cols, [[r[c] for c in cols] for r in rows]))
    write_json(args.out, {"views": args.views, "size": args.size, "preset": "cpu", "extra": extra, "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
