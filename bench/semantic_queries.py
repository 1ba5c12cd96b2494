"""Text queries on the procedural labelled scenes: label and natural-language mIoU per scene and
per query, each mask rule side by side (the old ``nearest``, ``gap`` and ``codebook`` against the
new default, ``labels``).

    python -m bench.semantic_queries                          # all ten scenes (about 50 minutes on one core)
    python -m bench.semantic_queries --scenes kitchen office --iterations 300

Per scene (:mod:`gs_vq.data.labelled_scenes`, 128x128, 24 train + 8 test views): an RGB model
trained with the cpu preset (its schedule scaled to ``--iterations``; the default 3000 is the
preset itself, about 5 minutes per scene on one core), then the training-free
semantic field lifted onto it (``python -m gs_vq.cli.lift``: label maps of MiniLM
embeddings, 16 features, 64 entries, per-Gaussian labels). Every rule is scored from the same
renders of the test views (pooled IoU, :func:`gs_vq.semantics.view_queries.evaluate_queries`), also
with the lifted decoder as it was before this change (``old lift``: copies of an entry not
sharing one entry's weight), so ``old lift + gap`` is the path before, end to end; the
colour / material queries of ``attribute_queries`` are scored apart (label-text features cannot
answer them). Each scene is marked ``validation`` (the query path's settings were chosen on it: the six
VERSION 1 rooms) or ``held-out`` (never used for choosing: workshop, bathroom, classroom, campsite). ``--tabletop`` adds ../shared/data/tabletop (used for
tuning the old rule). Models are cached in ``--work``; prints a table, writes
bench/results/semantic_queries.json.
"""

import argparse
import copy
import dataclasses
import os
import statistics
import time
from typing import Dict, List

import torch

from bench.report import ROOT, markdown, write_json
from bench.scenes import SHARED
from gs_vq.config import make_config, scale_steps
from gs_vq.data import background_of, load_scene
from gs_vq.data.labelled_scenes import ROLES, SCENES, write_labelled_scene
from gs_vq.io import load_ply
from gs_vq.semantics.lift import lift_model
from gs_vq.semantics.view_queries import evaluate_queries
from gs_vq.semantics.head import SemanticHead
from gs_vq.semantics.scoring import DEFAULT_MASK_RULE
from gs_vq.trainer import Trainer

OLD_RULES = ("nearest", "gap", "codebook")  # nearest: the default before issue 26; gap, codebook: older


def rgb_model(scene_path: str, work: str, iterations: int, seed: int) -> str:
    """A finished RGB model folder of the scene (trained here once; cpu preset scaled)."""
    folder = os.path.join(work, "rgb")
    if not os.path.isfile(os.path.join(folder, "point_cloud.ply")):
        cfg = make_config("cpu", {"source_path": scene_path, "checkpoint_every": 0, "seed": seed})
        cfg = scale_steps(cfg, iterations / cfg.iterations)
        scene = load_scene(scene_path, num_random_points=cfg.init_num_points)
        trainer = Trainer(cfg, scene, folder)
        trainer.train(progress=False)
        trainer.export()
    return folder


def semantic_model(rgb: str, work: str) -> str:
    """The lifted semantic model folder (``python -m gs_vq.cli.lift`` with its defaults, 16 features)."""
    folder = os.path.join(work, "lifted")
    if not os.path.isfile(os.path.join(folder, "semantic_head.pt")):
        lift_model(rgb, folder, map_downscale=2, feature_dim=16, num_codes=64, tau=60.0, label_method="direct")
    return folder


def old_lift(head: SemanticHead) -> SemanticHead:
    """A copy of a lifted head with a zero decoder bias: the lifted field before copies of one
    k-means entry shared one entry's weight (``- log n``, :mod:`gs_vq.semantics.lift`)."""
    codebook = copy.deepcopy(head.codebook)
    with torch.no_grad():
        codebook.decoder.bias.zero_()
    return dataclasses.replace(head, codebook=codebook)


def kinds(labels: Dict) -> Dict[str, str]:
    """Query text -> kind (``label`` for label queries, else the entry's ``kind`` or ``nl``)."""
    out = {str(labels[k]): "label" for k in labels if str(k).isdigit() and k != "0"}
    out.update({q["text"]: q.get("kind", "nl") for q in labels.get("queries", [])})
    return out


def score_scene(name: str, path: str, role: str, args) -> Dict:
    work = os.path.join(args.work, os.path.basename(path))
    t0 = time.perf_counter()
    model = semantic_model(rgb_model(path, work, args.iterations, args.seed), work)
    build_s = time.perf_counter() - t0
    scene = load_scene(path)
    splats = load_ply(os.path.join(model, "point_cloud.ply"))
    head = SemanticHead.load(model)
    cams = scene.test_cameras
    res = evaluate_queries(splats, cams, head, scene.labels, background_of(scene), "cpu", progress=False)
    row = {"scene": name, "role": role, "path": path, "model": model, "build_seconds": round(build_s, 1),
           "num_gaussians": int(splats["means"].shape[0]), "miou_by_rule": res["miou_by_rule"],
           "iou_by_rule": res["iou_by_rule"], "kinds": kinds(scene.labels)}
    old = old_lift(head)  # the lifted head as it was before copies shared one entry's weight
    was = evaluate_queries(splats, cams, old, scene.labels, background_of(scene), "cpu", progress=False)
    row["old_lift_miou_by_rule"], row["old_lift_iou_by_rule"] = was["miou_by_rule"], was["iou_by_rule"]
    attributes = scene.labels.get("attribute_queries")
    if attributes:
        only = {k: v for k, v in scene.labels.items() if str(k).isdigit()}
        att = evaluate_queries(splats, cams, head, {**only, "queries": attributes}, background_of(scene), "cpu",
                               progress=False)
        row["attribute_iou_by_rule"] = {r: v["extra"] for r, v in att["iou_by_rule"].items()}
        row["kinds"].update({q["text"]: q["kind"] for q in attributes})
    return row


def mean(values: List[float]) -> float:
    vals = [v for v in values if v is not None]
    return round(statistics.mean(vals), 4) if vals else float("nan")


def print_tables(rows: List[Dict], rules: List[str]) -> None:
    head = ["scene", "role"] + [f"{kind} {r}" for kind in ("label", "NL") for r in ["old lift + gap"] + rules]
    print(markdown(head, [[r["scene"], r["role"]] + [f"{v:.3f}" for k in ("labels", "extra") for v in
                                                    [r["old_lift_miou_by_rule"]["gap"][k]] +
                                                    [r["miou_by_rule"][rule][k] for rule in rules]] for r in rows]))
    for role in ("validation", "held-out"):
        sel = [r for r in rows if r["role"] == role]
        if sel:
            print(f"{role}: old lift + gap label {mean([x['old_lift_miou_by_rule']['gap']['labels'] for x in sel]):.3f} "
                  f"NL {mean([x['old_lift_miou_by_rule']['gap']['extra'] for x in sel]):.3f}; " + ", ".join(f"{r} label {mean([x['miou_by_rule'][r]['labels'] for x in sel]):.3f} "
                                          f"NL {mean([x['miou_by_rule'][r]['extra'] for x in sel]):.3f}"
                                          for r in rules))
    print()
    qrows = []
    for r in rows:
        for part, key in (("labels", "iou_by_rule"), ("extra", "iou_by_rule"), (None, "attribute_iou_by_rule")):
            table = r.get(key) or {}
            texts = table[rules[0]][part] if part else table.get(rules[0], {})
            for text in texts:
                vals = [(table[rule][part] if part else table[rule])[text] for rule in rules]
                qrows.append([r["scene"], r["role"], r["kinds"].get(text, "?"), text] +
                             ["-" if v is None else f"{v:.2f}" for v in vals])
    print(markdown(["scene", "role", "kind", "query"] + list(rules), qrows))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", nargs="+", default=list(SCENES), choices=list(SCENES))
    p.add_argument("--tabletop", action="store_true", help="also ../shared/data/tabletop (tuned on by the old rule)")
    p.add_argument("--iterations", type=int, default=3000,
                   help="RGB training steps per scene (default: the cpu preset's own 3000, as train.py trains)")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=os.path.join(ROOT, "output", "bench", "semantic_queries"))
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "semantic_queries.json"))
    args = p.parse_args()
    torch.set_num_threads(1)
    rules = [DEFAULT_MASK_RULE] + [r for r in OLD_RULES if r != DEFAULT_MASK_RULE]
    scenes = [(n, str(write_labelled_scene(n, os.path.join(args.work, "scenes"), args.seed, args.size)), ROLES[n])
              for n in args.scenes]
    if args.tabletop:
        scenes.append(("tabletop", os.path.join(SHARED, "tabletop"), "tabletop (tuned the old rule)"))
    rows = []
    for name, path, role in scenes:
        rows.append(score_scene(name, path, role, args))
        r = rows[-1]
        print(f"  {name:12s} {role:10s} " + "  ".join(
            f"{rule}: label {r['miou_by_rule'][rule]['labels']:.3f} NL {r['miou_by_rule'][rule]['extra']:.3f}"
            for rule in rules) + f"  ({r['build_seconds']:.0f} s)", flush=True)
    print()
    print_tables(rows, rules)
    write_json(args.out, {"iterations": args.iterations, "size": args.size, "seed": args.seed, "rules": rules,
                          "default_rule": DEFAULT_MASK_RULE, "torch": torch.__version__, "rows": rows})
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
