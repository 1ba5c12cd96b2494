"""Semantic codebook ablation on tabletop: k-means vs random-uniform initialisation, entropy loss on/off.

    python -m bench.semantic_ablation                                   # trains the RGB model first
    python -m bench.semantic_ablation --rgb_checkpoint output/tabletop/ckpt.pt --iterations 800

One RGB model (configs/cpu.yaml, --eval; trained here unless given) is shared by the variants;
each variant trains only the semantics on top of it, as GOI does (configs/semantic_only.yaml:
geometry frozen, rendered at the 2D maps' resolution, -r 4), then every label query and extra
query of labels.json is scored on the test views at full resolution. Time = codebook
initialisation + semantic training steps. Prints a table; writes bench/results/semantic_ablation.json.
Data: ../shared/data/tabletop (beside the project root); label maps are made with MiniLM when absent.
"""

import argparse
import os
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import torch

from gs_vq.checkpoint import load_checkpoint, save_checkpoint
from gs_vq.config import make_config
from gs_vq.data import load_scene
from gs_vq.semantics.view_queries import evaluate_queries
from gs_vq.semantics.features import compute_label_features, default_features_dir
from gs_vq.trainer import Trainer

from bench.report import markdown, write_json
from bench.scenes import SHARED

SCENE = os.path.join(SHARED, "tabletop")
VARIANTS = [  # (name, codebook_init, entropy_weight)
    ("kmeans + entropy", "kmeans", 0.1),
    ("kmeans, no entropy", "kmeans", 0.0),
    ("random + entropy", "random", 0.1),
    ("random, no entropy", "random", 0.0),
]


def rgb_splats(args, work: str) -> str:
    """Path of a checkpoint holding the RGB splats only (trained here when not given)."""
    src = args.rgb_checkpoint
    if src is None:
        src = os.path.join(work, "rgb", "ckpt.pt")
        if not os.path.isfile(src):
            cfg = make_config("cpu", {"source_path": args.scene, "eval": True, "checkpoint_every": 0})
            scene = load_scene(args.scene, eval=True, num_random_points=cfg.init_num_points)
            print(f"== training the RGB model ({cfg.iterations} steps, cpu preset)", flush=True)
            trainer = Trainer(cfg, scene, os.path.dirname(src))
            trainer.train(progress=False)
            trainer.export()
    splats = load_checkpoint(src)["splats"]  # weights_only: a checkpoint cannot run code
    splats = {k: v for k, v in splats.items() if k != "features"}  # every variant starts fresh
    out = os.path.join(work, "rgb_splats.pt")
    save_checkpoint({"splats": splats}, out)
    return out


def run_variant(args, name: str, init: str, entropy: float, start: str, features: str, eval_scene, work: str):
    sem = {"features_dir": features, "codebook_init": init, "entropy_weight": entropy, "seed": args.seed}
    cfg = make_config("semantic_only", {"source_path": args.scene, "eval": True, "resolution": args.resolution,
                                        "iterations": args.iterations, "start_checkpoint": start,
                                        "semantic": sem, "seed": args.seed})
    scene = load_scene(args.scene, resolution=args.resolution, eval=True)
    t0 = time.perf_counter()
    trainer = Trainer(cfg, scene, os.path.join(work, name.replace(" ", "_").replace(",", "")))
    init_seconds = time.perf_counter() - t0
    trainer.train(progress=False)
    plugin = trainer.plugins["semantic"]
    with torch.no_grad():
        res = evaluate_queries(dict(trainer.splats.items()), eval_scene.test_cameras, plugin.head(), eval_scene.labels,
                               trainer.background, trainer.device, backend=cfg.backend, progress=False)
    row = {"variant": name, "codebook_init": init, "entropy_weight": entropy, "iterations": args.iterations,
           "seconds": round(init_seconds + trainer.train_seconds, 1), "init_seconds": round(init_seconds, 1),
           "active_entries": int(plugin.head().active.sum()), "last_losses": plugin.state.last, **res}
    print(f"  {name:20s} mIoU {res['miou']:.3f}  extra {res['miou_extra']:.3f}  {row['seconds']:.0f} s", flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scene", default=SCENE)
    p.add_argument("--rgb_checkpoint", help="a finished RGB model's ckpt.pt (default: train one, cpu preset)")
    p.add_argument("--iterations", type=int, default=1500, help="semantic steps per variant")
    p.add_argument("-r", "--resolution", type=int, default=4, help="semantic training resolution")
    p.add_argument("--eval_resolution", type=int, default=1, help="resolution of the scored test views")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=os.path.join(ROOT, "output", "bench", "semantic_ablation"))
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "semantic_ablation.json"))
    args = p.parse_args()
    eval_scene = load_scene(args.scene, resolution=args.eval_resolution, eval=True)
    features = default_features_dir(args.scene, "labels")
    if not os.path.isfile(os.path.join(features, "meta.json")):
        compute_label_features(load_scene(args.scene, eval=True), features)
    start = rgb_splats(args, args.work)
    print(f"== semantic ablation: {args.iterations} steps at -r {args.resolution}, scored at -r {args.eval_resolution}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    rows = [run_variant(args, n, i, e, start, features, eval_scene, args.work) for n, i, e in VARIANTS]
    head = ["codebook init", "entropy loss", "mIoU labels", "mIoU extra queries", "mIoU labels, view rule",
            "mIoU labels, fixed 0.5", "time (s)"]
    print("\n" + markdown(head, [
        [r["codebook_init"], "on" if r["entropy_weight"] > 0 else "off", f"{r['miou']:.3f}", f"{r['miou_extra']:.3f}",
         f"{r['miou_by_rule']['view']['labels']:.3f}", f"{r['miou_by_rule']['lerf']['labels']:.3f}",
         f"{r['seconds']:.0f}"] for r in rows]))
    write_json(args.out, {"scene": args.scene, "resolution": args.resolution, "eval_resolution": args.eval_resolution,
                          "rgb_checkpoint": args.rgb_checkpoint, "rows": rows})
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
