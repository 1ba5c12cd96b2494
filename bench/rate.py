"""The ECVQ rate term on a trained model: index entropy against rendering quality, per attribute.

    python -m bench.rate --model output/lego            # a model trained with --config vq (or any)

For each single-codebook attribute (sh0, quats by default) the full-precision values of the
model's checkpoint are fitted by k-means with the preset's codebook size, then re-assigned by a few
ECVQ iterations (``gs_vq.quant.rate``) at each ``--rates`` value. Each row renders the test views
with that one attribute replaced by its quantized values (all else full precision) and reports
the index entropy (what an entropy coder approaches) against the fixed ``ceil(log2 K)`` bits.
Prints a table, writes bench/results/rate.json.
"""

import argparse
import math
import os
import time

import torch

from bench.report import ROOT, markdown, write_json
from gs_vq.model_dir import load_model_scene, model_config
from gs_vq.evaluate import evaluate
from gs_vq.quant import kmeans
from gs_vq.quant.rate import ecvq_step, entropy_bits
from gs_vq.data import background_of
from gs_vq.vq import CODES_KEY, VQConfig
from gs_vq.vq.attributes import from_vectors, to_vectors
from gs_vq.vq.fit import quantizer_spec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model folder with cfg.yaml and ckpt.pt")
    p.add_argument("--attributes", nargs="+", default=["sh0", "quats"])
    p.add_argument("--rates", nargs="+", type=float, default=[0.0, 0.05, 0.1, 0.2, 0.5, 1.0])
    p.add_argument("--steps", type=int, default=5, help="ECVQ iterations per rate")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "rate.json"))
    args = p.parse_args()
    cfg = model_config(args.model)
    vq = cfg.vq or VQConfig()
    scene = load_model_scene(args.model, cfg, eval=True)
    splats = {k: v.float() for k, v in torch.load(os.path.join(args.model, "ckpt.pt"), map_location="cpu",
                                                   weights_only=True)["splats"].items() if k != CODES_KEY}
    n = splats["means"].shape[0]
    base = evaluate(splats, scene.test_cameras, background_of(scene), "cpu", progress=False)["psnr"]
    print(f"{args.model}: {n} Gaussians, full precision {base:.3f} dB on {len(scene.test_cameras)} test views")
    rows = []
    for name in args.attributes:
        x = to_vectors(name, splats[name]).float()  # [N, d]
        k = quantizer_spec(vq, name, n, x.shape[1]).get("codebook_size", 4096)
        fit = kmeans(x, k, iters=10, seed=0)
        for rate in args.rates:
            t0 = time.perf_counter()
            c, codes = fit.centroids.clone(), fit.assignments.clone()
            for _ in range(args.steps if rate > 0 else 0):
                c, codes = ecvq_step(x, c, codes, rate)
            seconds = time.perf_counter() - t0
            q = from_vectors(c[codes], tuple(splats[name].shape[1:]))
            psnr = evaluate({**splats, name: q}, scene.test_cameras, background_of(scene), "cpu",
                            progress=False)["psnr"]
            row = {"attribute": name, "rate": rate, "codebook_size": k, "fixed_bits": math.ceil(math.log2(k)),
                   "entropy_bits": round(entropy_bits(codes, k), 3),
                   "used_codes": int(torch.unique(codes).numel()),
                   "mse": float((x - c[codes]).square().sum(dim=1).mean()), "psnr": round(psnr, 3),
                   "psnr_drop": round(base - psnr, 3), "ecvq_seconds": round(seconds, 2)}
            rows.append(row)
            print(f"  {name:6s} rate {rate:5.2f}: {row['entropy_bits']:6.3f} bits/index, "
                  f"{row['used_codes']} codes used, PSNR {psnr:.3f} ({-row['psnr_drop']:+.3f})", flush=True)
    head = ["attribute", "rate", "K", "fixed bits", "entropy bits", "codes used", "MSE", "PSNR", "vs full precision"]
    print("\n" + markdown(head, [[r["attribute"], r["rate"], r["codebook_size"], r["fixed_bits"],
                                  f"{r['entropy_bits']:.2f}", r["used_codes"], f"{r['mse']:.2e}",
                                  f"{r['psnr']:.2f}", f"{-r['psnr_drop']:+.2f}"] for r in rows]))
    write_json(args.out, {"model": args.model, "num_gaussians": n, "full_precision_psnr": base, "rows": rows})
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
