"""Rate–distortion: gs-vq's compression presets against post-hoc codecs, on the same plain model.

    python -m bench.rd --jobs 2                       # lego -r 4, fern -r 2: cpu, --vq default, small, tiny
    python -m bench.rd --scenes lego --presets default --steps_scaler 0.2     # a quick look
    python -m bench.rd --scenes fern --jobs 2 --reuse  # add fern; keep the runs already in the JSON

Per scene the plain model (``cpu`` preset) and each row of :data:`bench.scenes.ROWS` (a compression
level of ``--vq``, a candidate the levels were chosen among, an MCMC row) train from the same seed,
side by side (``--jobs N`` pins each run to its own cores: :mod:`bench.vq_scene`). On the plain
model it then runs the post-hoc baselines of :mod:`bench.baselines`: gs-vq's codebooks without
quantization-aware training (``posthoc_<preset>``), gsplat's PngCompression (``png``) and the
SuperSplat export (``supersplat``). Every row is scored on the held-out views from its file as
loaded back (test views; ``train_psnr``, the training views' PSNR, is what settings are chosen
on). Size ratios are against the plain model's standard ply; bits per Gaussian by part
are in the JSON. LPIPS is not measured (its network weights cannot be downloaded here).

Writes bench/results/rd.json and a plot of test PSNR against file size (docs/rd.png).
"""

import argparse
import json
import os
from types import SimpleNamespace

import torch

from gs_vq.data import background_of
from gs_vq.evaluate import evaluate
from gs_vq.io.ply import load_ply

from bench import baselines
from bench.report import markdown, write_json
from bench.scenes import ROOT, ROWS, SCENES, SHARED, row_config
from bench.vq_scene import run_all, scene_of

PLAIN = "cpu"


def score(splats, scene) -> dict:
    """PSNR (dB) and SSIM of ``splats`` on the scene's test views, on its background, on the CPU."""
    with torch.no_grad():
        s = evaluate(splats, scene.test_cameras, background_of(scene), "cpu", progress=False)
    return {"psnr": round(s["psnr"], 3), "ssim": round(s["ssim"], 4)}


def posthoc_rows(name: str, plain: dict, presets: list, out_root: str) -> list:
    """The baselines on scene ``name``'s plain model (its row ``plain``)."""
    scene = scene_of(name)
    splats = load_ply(os.path.join(plain["model_path"], "point_cloud.ply"))
    n0 = int(splats["means"].shape[0])
    runs = [(f"posthoc_{p}", lambda d, p=p: baselines.posthoc_vq(
        splats, row_config(p, {"source_path": os.path.join(SHARED, name), **SCENES[name]}).vq, scene, d))
        for p in presets]
    runs += [("png", lambda d: baselines.png_compression(splats, d)),
             ("supersplat", lambda d: baselines.supersplat(splats, d))]
    rows = []
    for label, fn in runs:
        out = os.path.join(out_root, f"{name}_{label}")
        decoded, parts = fn(out)
        n = int(decoded["means"].shape[0])
        size = sum(parts.values())
        row = {"scene": name, "preset": label, "kind": "post hoc", "num_gaussians": n, "plain_gaussians": n0,
               "file_bytes": size, "compression_ratio": round(plain["ply_bytes"] / size, 3),
               "bits_per_gaussian": {k: round(8 * v / max(n, 1), 3) for k, v in parts.items()},
               **score(decoded, scene), "train_seconds": plain["train_seconds"], "model_path": out}
        row["psnr_drop"] = round(plain["psnr"] - row["psnr"], 3)
        print(f"  {name:5s} {label:17s} PSNR {row['psnr']:6.2f}  N {n:6d}  {size / 1e3:8.1f} kB  "
              f"{row['compression_ratio']:6.1f}x", flush=True)
        rows.append(row)
    return rows


def finish(rows: list) -> list:
    """Ratios and PSNR drops of the trained rows against their scene's plain run."""
    plain = {r["scene"]: r for r in rows if r["preset"] == PLAIN}
    for r in rows:
        b = plain.get(r["scene"])
        r.setdefault("kind", "trained")
        if b is None or r["kind"] != "trained":
            continue
        if r["preset"] == PLAIN:
            r["compression_ratio"], r["psnr_drop"] = 1.0, 0.0
            continue
        r["compression_ratio"] = round(b["ply_bytes"] / r["file_bytes"], 3)
        r["psnr_drop"] = round(b["psnr"] - r["psnr"], 3)
        r["extra_time"] = round(r["train_seconds"] / max(b["train_seconds"], 1e-9) - 1.0, 4)
    return rows


def table(rows: list) -> str:
    head = ["scene", "row", "Gaussians", "file (kB)", "ratio", "bits/G", "PSNR", "SSIM", "PSNR drop",
            "train (s)", "extra time"]
    body = []
    for r in rows:
        bits = r.get("bits_per_gaussian") or {}
        total = bits.get("total", 8 * r["file_bytes"] / max(r["num_gaussians"], 1))
        body.append([r["scene"], r["preset"], r["num_gaussians"], f"{r['file_bytes'] / 1e3:.1f}",
                     f"{r.get('compression_ratio', 1.0):.1f}x", f"{total:.1f}", f"{r['psnr']:.2f}",
                     f"{r['ssim']:.3f}", f"{r.get('psnr_drop', 0.0):+.2f}", f"{r['train_seconds']:.0f}",
                     f"{100 * r['extra_time']:+.1f}%" if "extra_time" in r else "-"])
    return markdown(head, body)


def plot(rows: list, path: str) -> None:
    """Test PSNR against file size (log scale), one panel per scene."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gs_vq.files import atomic_path

    scenes = sorted({r["scene"] for r in rows})
    fig, axes = plt.subplots(1, len(scenes), figsize=(6 * len(scenes), 4.5), squeeze=False)
    for ax, name in zip(axes[0], scenes):
        mine = sorted([r for r in rows if r["scene"] == name and r["kind"] == "trained" and r["preset"] != PLAIN],
                      key=lambda r: r["file_bytes"])
        ax.plot([r["file_bytes"] / 1e3 for r in mine], [r["psnr"] for r in mine], "o-", color="C0",
                label="gs-vq (trained presets)")
        for r in mine:
            ax.annotate(r["preset"], (r["file_bytes"] / 1e3, r["psnr"]), textcoords="offset points", xytext=(4, 4))
        style = {"posthoc": ("s", "C1", "gs-vq codebooks, post hoc"), "png": ("^", "C2", "gsplat PngCompression"),
                 "supersplat": ("D", "C3", "SuperSplat export (gsplat)"), PLAIN: ("*", "k", "plain ply")}
        seen = set()
        for r in rows:
            if r["scene"] != name or r in mine:
                continue
            key = r["preset"].split("_")[0] if r["preset"] != PLAIN else PLAIN
            marker, color, label = style.get(key, ("x", "C4", r["preset"]))
            size = r["ply_bytes"] if r["preset"] == PLAIN else r["file_bytes"]
            ax.scatter([size / 1e3], [r["psnr"]], marker=marker, color=color, s=60,
                       label=None if key in seen else label)
            seen.add(key)
        ax.set_xscale("log")
        ax.set_xlabel("file size (kB, log scale)")
        ax.set_ylabel("test PSNR (dB)")
        ax.set_title(f"{name} ({'-r 4' if name == 'lego' else '-r 2'}, CPU preset)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", nargs="+", default=["lego", "fern"], choices=sorted(SCENES))
    p.add_argument("--presets", nargs="+", default=["default", "small", "tiny"], choices=sorted(ROWS),
                   help="rows (bench.scenes.ROWS): compression levels, their candidates, MCMC rows")
    p.add_argument("--posthoc", nargs="+", default=["default", "small"], choices=sorted(ROWS),
                   help="levels whose codebooks are also fitted post hoc on the plain model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps_scaler", type=float, default=1.0)
    p.add_argument("--jobs", type=int, default=1, help="trainings at once, each on its own cores")
    p.add_argument("--reuse", action="store_true",
                   help="keep the rows of --out whose model folders exist instead of training them again")
    p.add_argument("--models", default=os.path.join(ROOT, "output", "bench_rd"))
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "rd.json"))
    p.add_argument("--plot", default=os.path.join(ROOT, "docs", "rd.png"))
    args = p.parse_args()
    old = []
    source = next((f for f in (args.out, args.out + ".partial") if os.path.isfile(f)), None) if args.reuse else None
    if source:  # the finished JSON, or the rows a stopped run had saved so far
        with open(source) as fh:
            old = [r for r in json.load(fh)["rows"] if os.path.isdir(r.get("model_path", ""))]
    have = {(r["scene"], r["preset"]) for r in old if r.get("kind", "trained") == "trained"}
    jobs = [(s, pr) for s in args.scenes for pr in [PLAIN] + args.presets if (s, pr) not in have]
    print(f"rate–distortion on {', '.join(args.scenes)}: {PLAIN} + {', '.join(args.presets)} "
          f"({len(jobs)} to train, {args.jobs} at a time), seed {args.seed}", flush=True)
    ns = SimpleNamespace(jobs=args.jobs, seed=args.seed, steps_scaler=args.steps_scaler, models=args.models,
                         out=args.out + ".partial")
    trained = run_all(jobs, ns) if jobs else []
    rows = [r for r in old if r.get("kind", "trained") == "trained"] + trained
    rows = [r for r in rows if r["scene"] in args.scenes or (r["scene"], r["preset"]) in have]
    for name in args.scenes:
        plain = next(r for r in rows if r["scene"] == name and r["preset"] == PLAIN)
        rows = [r for r in rows if not (r["scene"] == name and r.get("kind") == "post hoc")]
        rows += posthoc_rows(name, plain, args.posthoc, args.models)
    rows += [r for r in old if r.get("kind") == "post hoc" and r["scene"] not in args.scenes]
    rows = finish(sorted(rows, key=lambda r: (r["scene"], r.get("kind", "trained") != "trained")))
    print("\n" + table(rows))
    write_json(args.out, {"steps_scaler": args.steps_scaler, "jobs": args.jobs, "seed": args.seed, "rows": rows})
    if os.path.isfile(ns.out):  # the finished JSON now holds every row
        os.remove(ns.out)
    plot(rows, args.plot)
    print(f"\nwrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
