"""Text-query latency on CPU: the text embedding once, then per view (render + decode + mask).

    python -m bench.query_speed -m MODEL [--sizes 256,800] [--views 5] [--threads 1]

MODEL is a semantic model folder (trained with --semantic, or lifted with
``python -m gs_vq.cli.lift``). For each size, the first ``--views`` test cameras (train
cameras when the model has none) are rescaled to ``size x size`` pixels (intrinsics scaled, the
aspect ratio forced square) and timed: ``render`` (rasterizing the per-Gaussian features),
``decode`` (features -> codebook weights) and ``mask`` (one query's pixel scores and mask, the
``K``-vector product per pixel). The text embedding is timed once per query (the encoder loaded
before). Beside it, the label path of models that store per-Gaussian labels
(:func:`gs_vq.semantics.select.label_scores`): ``select`` (the query's entries -> a 0/1 channel
per Gaussian, once per query) and, per view, ``render 1ch`` (that channel rasterized, thresholded
at 0.5). ``mask IoU`` / ``pixels differing`` compare the two paths' masks. Medians over views,
in ms; JSON in bench/results/query_speed.json.
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
from gs_vq.semantics.labels import stored_labels
from gs_vq.semantics.head import HEAD_NAME, SemanticHead
from gs_vq.semantics.scoring import DEFAULT_MASK_RULE, iou_counts, query_mask
from gs_vq.semantics.label_render import label_scores
from gs_vq.semantics.select import selection_channels


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
    p.add_argument("--rule", default=DEFAULT_MASK_RULE)
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
    stored = stored_labels(splats)
    if stored is None:
        raise SystemExit("error: the model stores no per-Gaussian labels (lift it, or write labels with labelfiles)")
    channels, select_ms = ms(lambda: selection_channels(stored[0], scores))  # [N, 1]
    feats = splats["features"]
    geo = (splats["means"], splats["quats"], torch.exp(splats["scales"]), torch.sigmoid(splats["opacities"]))
    rows, out = [], {"model": os.path.abspath(args.model_path), "num_gaussians": int(feats.shape[0]),
                     "feature_dim": int(feats.shape[1]), "num_codes": head.codebook.num_codes,
                     "threads": args.threads, "embed_ms": round(embed_ms, 2),
                     "entry_scores_ms": round(scores_ms, 2), "select_ms": round(select_ms, 2),
                     "selected_gaussians": int(channels.sum()), "query": args.query, "rule": args.rule, "sizes": {}}
    with torch.no_grad():
        for size in [int(s) for s in args.sizes.split(",")]:
            t = {"render": [], "decode": [], "mask": [], "render_1ch": []}
            inter = union = differ = 0
            for cam in cams:
                K = scaled_intrinsics(cam.K, cam.width, cam.height, size, size)
                r, t_r = ms(lambda: rasterize(*geo, feats, cam.viewmat[None], K[None], size, size)[0][0])
                w, t_d = ms(lambda: head.weights(r))
                (_, old), t_m = ms(lambda: query_mask(w, e, args.rule))
                new, t_1 = ms(lambda: label_scores(splats, channels, cam.viewmat, K, size, size)[..., 0] > 0.5)
                for k, v in (("render", t_r), ("decode", t_d), ("mask", t_m), ("render_1ch", t_1)):
                    t[k].append(v)
                i, u = iou_counts(new, old)
                inter, union, differ = inter + i, union + u, differ + int((new != old).sum())
            med = {k: round(statistics.median(v), 2) for k, v in t.items()}
            med["total"] = round(med["render"] + med["decode"] + med["mask"], 2)
            med["speedup"] = round(med["total"] / med["render_1ch"], 1)
            med["mask_iou"] = round(inter / max(union, 1), 4)
            med["pixels_differing"] = round(differ / (len(cams) * size * size), 5)
            out["sizes"][size] = med
            rows.append([f"{size}x{size}", len(cams), med["render"], med["decode"], med["mask"], med["total"],
                         med["render_1ch"], f"{med['speedup']}x", med["mask_iou"], med["pixels_differing"]])
    print(f"{out['num_gaussians']} Gaussians, F={out['feature_dim']}, K={out['num_codes']}, {args.threads} thread(s); "
          f"text embedding {out['embed_ms']} ms, entry scores {out['entry_scores_ms']} ms, label select "
          f"{out['select_ms']} ms (once per query; {out['selected_gaussians']} Gaussians selected)")
    print(report.markdown(["size", "views", "render ms", "decode ms", "mask ms", "feature path ms", "label path ms",
                           "speed-up", "mask IoU", "pixels differing"], rows))
    report.write_json(args.out, out)


if __name__ == "__main__":
    main()
