"""Quantization-aware training against plain training, side by side, on real scenes.

    python -m bench.vq_scene                          # fern -r 2 and lego -r 4: cpu, --vq default and small
    python -m bench.vq_scene --scenes lego --presets default --steps_scaler 0.25   # a quick look
    python -m bench.vq_scene --scenes fern --presets default --jobs 2     # cpu and vq at once, a core each

Each scene is trained with the CPU preset (``cpu``) and with each VQ preset from the same seed.
Quality is measured on the held-out views: the plain run from its MODEL/point_cloud.ply, the VQ
runs from MODEL/compressed.ply as loaded back (so the numbers are those of the file). Sizes:
the standard ply of each model and its compressed.ply; ratio = standard / compressed (same
model). Time: training steps only (evaluation excluded); "extra" is relative to the plain run,
and "hooks" is the time spent inside the VQ plugin's k-means fits and updates. On a shared
machine the fairest timing is ``--jobs N``: N runs at once, each in its own process pinned to its
own share of the cores, so the plain and the VQ run see the same load at the same time.
Prints a table and writes bench/results/vq_scene.json. Data: ../shared/data beside the project.
"""

import argparse
import functools
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import torch

from gs_vq.config import make_config, scale_steps
from gs_vq.data import load_scene
from gs_vq.evaluate import evaluate
from gs_vq.io.compressed import load_compressed_splats
from gs_vq.io.ply import load_ply
from gs_vq.trainer import Trainer

from bench.report import markdown, write_json
from bench.scenes import SCENES, SHARED, row_config


def run(name: str, scene, preset: str, seed: int, factor: float, out_root: str) -> dict:
    opts = SCENES[name]
    model = os.path.join(out_root, f"{name}_{preset}")
    cfg = scale_steps(row_config(preset, {"source_path": os.path.join(SHARED, name), "eval": True, "seed": seed,
                                          "checkpoint_every": 0, "model_path": model, **opts}), factor)
    trainer = Trainer(cfg, scene, model)
    wall = time.perf_counter()
    trainer.train(progress=False)
    wall = time.perf_counter() - wall
    sizes = trainer.export()
    vq = cfg.vq is not None
    path = os.path.join(model, "compressed.ply" if vq else "point_cloud.ply")
    splats = load_compressed_splats(path) if vq else load_ply(path)
    with torch.no_grad():
        scores = evaluate(splats, scene.test_cameras, trainer.background, trainer.device,
                          backend=cfg.backend, progress=False)
        train = evaluate(splats, scene.train_cameras, trainer.background, trainer.device,
                         backend=cfg.backend, progress=False)  # what settings are chosen on
    plugin = trainer.plugins.get("vq")
    row = {"scene": name, **opts, "preset": preset, "iterations": cfg.iterations, "seed": seed,
           "psnr": round(scores["psnr"], 3), "ssim": round(scores["ssim"], 4),
           "train_psnr": round(train["psnr"], 3),
           "num_gaussians": int(splats["means"].shape[0]),
           "ply_bytes": os.path.getsize(os.path.join(model, "point_cloud.ply")),
           "file_bytes": os.path.getsize(path), "rendered": os.path.basename(path),
           "train_seconds": round(trainer.train_seconds, 1), "wall_seconds": round(wall, 1),
           "model_path": model}
    if vq:
        row.update(compressed_bytes=sizes["compressed_bytes"], compression_ratio=sizes["compression_ratio"],
                   bits_per_gaussian=sizes["bits_per_gaussian"], vq_pruned=sizes.get("vq_pruned"),
                   hook_seconds=round(sum(plugin.timings().values()), 1) if plugin else None,
                   vq_seconds=sizes.get("vq_seconds"))
    print(f"  {name:5s} {preset:9s} PSNR {row['psnr']:6.2f}  SSIM {row['ssim']:.4f}  N {row['num_gaussians']:6d}  "
          f"{row['file_bytes'] / 1e6:7.3f} MB  train {row['train_seconds']:7.1f} s", flush=True)
    return row


@functools.lru_cache(maxsize=1)
def scene_of(name: str):
    opts = SCENES[name]
    cfg = make_config("cpu", opts)
    return load_scene(os.path.join(SHARED, name), resolution=opts["resolution"], eval=True,
                      white_background=opts["white_background"], num_random_points=cfg.init_num_points)


def _pin(cores) -> None:
    """Worker initializer: take the next share of cores from the queue, one thread per core."""
    mine = cores.get()
    os.sched_setaffinity(0, mine)
    torch.set_num_threads(len(mine))


def _job(name: str, preset: str, seed: int, factor: float, out_root: str) -> dict:
    row = run(name, scene_of(name), preset, seed, factor, out_root)
    row["cores"] = sorted(os.sched_getaffinity(0))
    return row


def build_kernels() -> None:
    """Compile (or load) the C++ kernels before any run is timed, so no timed fit includes a build."""
    from gs_vq.quant.ext import KERNEL as nearest
    from gs_vq.render.ext import KERNEL as rasterize

    for kernel in (nearest, rasterize):
        kernel.load()


def run_all(jobs: list, args) -> list:
    """Run ``jobs`` [(scene, preset)] in order, or ``args.jobs`` at a time on disjoint cores."""
    rows = []
    build_kernels()

    def save(row):
        rows.append(row)
        compare(rows)
        write_json(args.out, {"steps_scaler": args.steps_scaler, "jobs": args.jobs, "rows": rows})  # partial ones too

    if args.jobs <= 1:
        for name, preset in jobs:
            save(run(name, scene_of(name), preset, args.seed, args.steps_scaler, args.models))
        return rows
    cores = sorted(os.sched_getaffinity(0))
    per = len(cores) // args.jobs
    if per < 1:
        raise SystemExit(f"--jobs {args.jobs}: only {len(cores)} cores")
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    for j in range(args.jobs):
        queue.put(set(cores[j * per:(j + 1) * per]))
    with ProcessPoolExecutor(args.jobs, mp_context=ctx, initializer=_pin, initargs=(queue,)) as pool:
        futures = [pool.submit(_job, name, preset, args.seed, args.steps_scaler, args.models)
                   for name, preset in jobs]
        for f in futures:
            save(f.result())
    return rows


def compare(rows: list) -> list:
    """Add, to every VQ row, its differences to the plain run of the same scene."""
    base = {r["scene"]: r for r in rows if r["preset"] == "cpu"}
    for r in rows:
        b = base.get(r["scene"])
        if r["preset"] != "cpu" and b is not None:
            r["psnr_drop"] = round(b["psnr"] - r["psnr"], 3)
            r["extra_time"] = round(r["train_seconds"] / max(b["train_seconds"], 1e-9) - 1.0, 4)
            if r.get("hook_seconds") is not None:
                r["hook_share"] = round(r["hook_seconds"] / max(b["train_seconds"], 1e-9), 4)
    return rows


def table(rows: list) -> str:
    head = ["scene", "preset", "PSNR", "SSIM", "Gaussians", "std ply (MB)", "compressed (kB)", "ratio",
            "train (s)", "extra time", "VQ hooks", "PSNR drop"]
    body = []
    for r in rows:
        vq = r.get("compressed_bytes") is not None
        cells = [r["scene"], r["preset"], f"{r['psnr']:.2f}", f"{r['ssim']:.3f}", str(r["num_gaussians"]),
                 f"{r['ply_bytes'] / 1e6:.2f}",
                 f"{r['compressed_bytes'] / 1e3:.1f}" if vq else "-",
                 f"{r['compression_ratio']:.1f}x" if vq else "-",
                 f"{r['train_seconds']:.0f}",
                 f"{100 * r['extra_time']:+.1f}%" if "extra_time" in r else "-",
                 f"{100 * r['hook_share']:.1f}%" if "hook_share" in r else "-",
                 f"{r['psnr_drop']:+.2f}" if "psnr_drop" in r else "-"]
        body.append(cells)
    return markdown(head, body)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", nargs="+", default=["fern", "lego"], choices=sorted(SCENES))
    p.add_argument("--presets", nargs="+", default=["default", "small"],
                   help="rows of bench.scenes.ROWS to compare with cpu: VQ ones are scored from compressed.ply")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps_scaler", type=float, default=1.0, help="shorten every schedule by this factor")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs at once, each pinned to its own len(cores) // jobs cores")
    p.add_argument("--models", default=os.path.join(ROOT, "output", "bench_vq"))
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "vq_scene.json"))
    args = p.parse_args()
    print(f"cpu vs {', '.join(args.presets)} on {', '.join(args.scenes)}, seed {args.seed}, "
          f"torch {torch.__version__}, {args.jobs} at a time", flush=True)
    rows = run_all([(name, preset) for name in args.scenes for preset in ["cpu"] + args.presets], args)
    print("\n" + table(rows))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
