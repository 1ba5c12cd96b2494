"""Train real scenes on the CPU preset and report test PSNR against steps and wall time.

    python -m bench.train_scene                       # fern -r 2 and lego -r 4, configs/cpu.yaml
    python -m bench.train_scene --scenes lego --iterations 1000 --eval_every 250

Prints a table and writes bench/results/train_scene.json. Wall time counts training steps only
(evaluation excluded). Data: ../shared/data (beside the project root).
"""

import argparse
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import torch

from gs_vq.config import make_config
from gs_vq.data import load_scene
from gs_vq.evaluate import evaluate
from gs_vq.trainer import Trainer

from bench.report import markdown, write_json
from bench.scenes import SCENES, SHARED


def run_scene(name: str, preset: str, iterations: int, eval_every: int, overrides: dict) -> dict:
    opts = SCENES[name]
    cfg = make_config(preset, {"source_path": os.path.join(SHARED, name), "eval": True, "iterations": iterations,
                               "checkpoint_every": 0, **opts, **overrides})
    scene = load_scene(cfg.source_path, resolution=cfg.resolution, eval=True, white_background=cfg.white_background,
                       num_random_points=cfg.init_num_points)
    model = os.path.join(ROOT, "output", "bench", name)
    trainer = Trainer(cfg, scene, model)
    curve = []
    while trainer.step < iterations:
        trainer.train(progress=False, until=trainer.step + eval_every)
        with torch.no_grad():
            scores = evaluate(trainer.splats_to_render(), scene.test_cameras, trainer.background,
                              trainer.device, backend=cfg.backend, progress=False)
        curve.append({"step": trainer.step, "seconds": round(trainer.train_seconds, 1), "test_psnr": round(scores["psnr"], 3),
                      "test_ssim": round(scores["ssim"], 4), "num_gaussians": int(len(trainer.splats["means"]))})
        print(f"  {name:5s} step {trainer.step:5d}  {trainer.train_seconds:7.1f} s  PSNR {scores['psnr']:6.2f}  "
              f"SSIM {scores['ssim']:.4f}  N {curve[-1]['num_gaussians']}", flush=True)
    trainer.export()
    return {"scene": name, **opts, "preset": preset, "iterations": iterations, "curve": curve,
            "final": curve[-1], "model_path": model}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", nargs="+", default=["lego", "fern"], choices=sorted(SCENES))
    p.add_argument("--config", default="cpu")
    p.add_argument("--iterations", type=int, default=None, help="default: the preset's")
    p.add_argument("--eval_every", type=int, default=500)
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "train_scene.json"))
    args = p.parse_args()
    iterations = args.iterations or make_config(args.config).iterations
    results = []
    for name in args.scenes:
        print(f"== {name}: {args.config} preset, {iterations} steps, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads", flush=True)
        results.append(run_scene(name, args.config, iterations, args.eval_every, {}))
    head = ["scene", "-r", "steps", "train time (s)", "Gaussians", "test PSNR (dB)", "test SSIM"]
    print("\n" + markdown(head, [
        [r["scene"], r["resolution"], f["step"], f"{f['seconds']:.0f}", f["num_gaussians"], f"{f['test_psnr']:.2f}",
         f"{f['test_ssim']:.3f}"] for r in results for f in [r["final"]]]))
    write_json(args.out, results)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
