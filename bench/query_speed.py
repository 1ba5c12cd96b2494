"""Text-query latency on CPU: the text embedding once, then per view (render + decode + mask).

    python -m bench.query_speed -m MODEL [--sizes 256,800] [--views 5] [--threads 1]

MODEL is a semantic model folder (trained with --semantic, or lifted with
``python -m gs_vq.semantics.lift``). For each size, the first ``--views`` test cameras (train
cameras when the model has none) are rescaled to ``size x size`` pixels (intrinsics scaled, the
aspect ratio forced square) and timed: ``render`` (rasterizing the per-Gaussian features),
``decode`` (features -> codebook weights) and ``mask`` (one query's pixel scores and mask, the
``K``-vector product per pixel). The text embedding is timed once per query (the encoder loaded
before). Medians over views, in ms; JSON in bench/results/query_speed.json.
"""

import argparse
import os
import statistics
import time

from bench import report
import torch

from gs_vq.config import load_config
from gs_vq.data import load_scene
from gs_vq.io import load_splats
from gs_vq.render import rasterize
from gs_vq.render.contribution import scaled_intrinsics
from gs_vq.semantics.encoders import encode_texts, load_text_encoder
from gs_vq.semantics.query import HEAD_NAME, SemanticHead, query_mask


def ms(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, 1000.0 * (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-m", "--model_path", required=True)
    p.add_argument("--ply", help="default: MODEL/point_cloud.ply")
    p.add_argument("--query", default="red apple")
    p.add_argument("--sizes", default="256,800")
    p.add_argument("--views", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rule", default="codebook")
    p.add_argument("--out", default=os.path.join(report.ROOT, "bench", "results", "query_speed.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(os.path.join(args.model_path, "cfg.yaml"))
    scene = load_scene(cfg.source_path, resolution=cfg.resolution, eval=cfg.eval)
    cams = (scene.test_cameras or scene.train_cameras)[: args.views]
    splats = load_splats(args.ply or os.path.join(args.model_path, "point_cloud.ply"))
    head = SemanticHead.load(os.path.join(args.model_path, HEAD_NAME))
    encoder = load_text_encoder(head.encoder)
    encode_texts(encoder, ["warm-up"])
    _, embed_ms = ms(lambda: encode_texts(encoder, [args.query]))
    scores, scores_ms = ms(lambda: head.entry_scores([args.query], args.rule, encoder=encoder))
    e = scores[0]
    feats = splats["features"]
    geo = (splats["means"], splats["quats"], torch.exp(splats["scales"]), torch.sigmoid(splats["opacities"]))
    rows, out = [], {"model": os.path.abspath(args.model_path), "num_gaussians": int(feats.shape[0]),
                     "feature_dim": int(feats.shape[1]), "num_codes": head.codebook.num_codes,
                     "threads": args.threads, "embed_ms": round(embed_ms, 2),
                     "entry_scores_ms": round(scores_ms, 2), "sizes": {}}
    with torch.no_grad():
        for size in [int(s) for s in args.sizes.split(",")]:
            t = {"render": [], "decode": [], "mask": []}
            for cam in cams:
                K = scaled_intrinsics(cam.K, cam.width, cam.height, size, size)
                r, t_r = ms(lambda: rasterize(*geo, feats, cam.viewmat[None], K[None], size, size)[0][0])
                w, t_d = ms(lambda: head.weights(r))
                _, t_m = ms(lambda: query_mask(w, e, args.rule))
                for k, v in (("render", t_r), ("decode", t_d), ("mask", t_m)):
                    t[k].append(v)
            med = {k: round(statistics.median(v), 2) for k, v in t.items()}
            med["total"] = round(sum(med.values()), 2)
            out["sizes"][size] = med
            rows.append([f"{size}x{size}", len(cams), med["render"], med["decode"], med["mask"], med["total"]])
    print(f"{out['num_gaussians']} Gaussians, F={out['feature_dim']}, K={out['num_codes']}, {args.threads} thread(s); "
          f"text embedding {out['embed_ms']} ms, entry scores {out['entry_scores_ms']} ms (once per query)")
    print(report.markdown(["size", "views", "render ms", "decode ms", "mask ms", "per view ms"], rows))
    report.write_json(args.out, out)


if __name__ == "__main__":
    main()
