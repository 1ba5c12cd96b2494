"""Choosing the text-query path on the VALIDATION labelled scenes only.

    python -m bench.semantic_tuning                     # text level (a perfect field), validation scenes
    python -m bench.semantic_tuning --end-to-end        # rendered masks of the lifted validation models

``--end-to-end`` (how the ``labels`` rule was chosen, issue 26): each validation scene's lifted model
(:mod:`bench.semantic_queries`' recipe: 500 RGB steps at 128x128, then the training-free lift) is
rendered once in its test views; every candidate turns each query into entry scores, and its
masks are scored against the ground truth (pooled IoU, as ``bench.semantic_queries``). The
candidates: the old rules (``nearest``, ``gap``, ``codebook``) and label-level selections (entries
take their nearest label's decision, the background label excluded) over prompt ensembles
(:data:`TEMPLATE_CHOICES`, the same for labels and queries: a label query must stay its label) x the
first words that mark a one-object query x the selection for other queries (``within`` a cosine
of the best, or the ``nearest`` rule over labels with margin 0 or 0.05) x its window x the fewest
labels it keeps. Ranked by the mean NL mIoU over the validation scenes, with each scene's value
and the worst one beside it; writes bench/results/semantic_tuning_e2e.json. Never runs a
held-out scene.

Each candidate (prompt templates x entry-selection rule) turns every query of a scene into a set
of labels; its score is the IoU that set would reach with a perfect field: pixel areas of the
test masks, pooled over views (area of selected & wanted labels / area of either). Label queries
and natural-language (NL) queries are averaged apart, NL also split into single- and
several-object queries. The end-to-end check of the chosen candidate (rendered masks of lifted
fields) is ``python -m bench.semantic_queries``. Prints a table; writes
bench/results/semantic_tuning.json.
"""

import argparse
import functools
import itertools
import os
from typing import Dict, List, Sequence

import numpy as np
import torch
from PIL import Image

from bench.report import ROOT, markdown, write_json
from gs_vq.data.labelled_scenes import ROLES, scene_labels, write_labelled_scene
from gs_vq.semantics.encoders import MINILM_NAME, EncoderSpec, encode_texts, load_text_encoder
from gs_vq.semantics.labels_json import label_table
from gs_vq.semantics.scoring import (BACKGROUND_TEXTS, CANONICAL_NEGATIVES, LABEL_TEMPLATES, ONE_OBJECT_WORDS, TEMPLATES,
                                     entry_gap_match, entry_scores, select_entries)

TEMPLATE_SETS = {"none": ("{}",), "photo": ("a photo of {}",), "ensemble": TEMPLATES}


def area_iou(selected: Sequence[int], wanted: Sequence[int], area: np.ndarray) -> float:
    s, w = set(selected), set(wanted)
    return float(area[sorted(s & w)].sum() / max(area[sorted(s | w)].sum(), 1))


def candidates() -> Dict[str, callable]:
    """name -> rule(similarities [L], label-label similarities [L, L], negatives' similarities [L, M]) -> ids."""
    top1 = lambda s, ll, neg: [int(s.argmax())]  # noqa: E731

    def gap(window):
        return lambda s, ll, neg: torch.nonzero(entry_gap_match(torch.eye(len(s)), s, window=window) > 0.5).flatten().tolist()

    def delta(d):
        return lambda s, ll, neg: torch.nonzero(s >= s.max() - d).flatten().tolist()

    def nearest_label(margin, window):
        return lambda s, ll, neg: torch.nonzero(select_entries(s, ll, margin, window)).flatten().tolist()

    out = {"top-1": top1}
    out.update({f"gap w={w}": gap(w) for w in (0.05, 0.1, 0.15)})
    out.update({f"within d={d}": delta(d) for d in (0.03, 0.05, 0.1)})
    out.update({f"nearer than its nearest label m={m} w={w}": nearest_label(m, w)
                for m in (0.0, 0.05) for w in (0.1, 0.15, 0.2, 1.0)})
    return out


TEMPLATE_CHOICES = [("none", ("{}",)), ("ensemble", TEMPLATES), ("ensemble + picture", LABEL_TEMPLATES)] + [
    (f"ensemble + '{t}'", TEMPLATES + (t,)) for t in ("a rendering of {}", "a photo of the {}", "there is {} in the scene")] + [
    ("'{}' + 'an image of {}'", ("{}", "an image of {}")), ("'{}' + 'a photo of {}'", ("{}", "a photo of {}"))]
ARTICLES = ("a", "an", "the", "one", "something", "somewhere", "someone", "somebody")  # the shorter word list


def label_candidate(templates, one_words, plural: str, window: float, several_min: int, embed):
    """(label texts, query) -> selected label indices: the label-level candidates of ``--end-to-end``."""
    def select(texts: Sequence[str], query: str):
        keep = [j for j, t in enumerate(texts) if t.strip().lower() not in BACKGROUND_TEXTS]
        L = torch.stack([embed(templates, texts[j]) for j in keep])  # [L', D]
        s = L @ embed(templates, query)  # [L']
        order = s.argsort(descending=True).tolist()
        words = query.lower().split()
        if float(s.max()) >= 0.95 or (words and words[0] in one_words):
            return {keep[order[0]]}
        if plural == "within":
            chosen = set(torch.nonzero(s >= s.max() - window).flatten().tolist())
        else:
            chosen = set(torch.nonzero(select_entries(s, L @ L.T, 0.0 if plural == "nearest m=0" else 0.05,
                                                      window)).flatten().tolist())
        return {keep[j] for j in chosen | set(order[:several_min])}
    return select


def end_to_end(args, enc, embed) -> None:
    from bench.semantic_queries import rgb_model, semantic_model
    from gs_vq.data import background_of, load_scene
    from gs_vq.io import load_ply
    from gs_vq.semantics.head import SemanticHead
    from gs_vq.semantics.view_queries import view_weights

    torch.set_num_threads(1)
    scenes = []
    for name in [n for n, r in ROLES.items() if r == "validation"]:  # never the held-out scenes
        path = str(write_labelled_scene(name, os.path.join(args.work, "scenes"), 0, args.size))
        work = os.path.join(args.work, os.path.basename(path))
        model = semantic_model(rgb_model(path, work, args.iterations, 0), work)
        scene, head = load_scene(path), SemanticHead.load(model)
        splats = load_ply(os.path.join(model, "point_cloud.ply"))
        views = list(view_weights(splats, scene.test_cameras, head, background_of(scene), "cpu"))
        w = torch.stack([v[2] for v in views])  # [V, H, W, K]
        gt = torch.stack([v[0].mask for v in views])  # [V, H, W]
        ids, texts = label_table(scene.labels)
        raw = encode_texts(enc, texts)  # [L, D]
        owner = (head.codebook.unit_codes().detach() @ raw.T).argmax(dim=1)  # [K] each entry's label
        queries = [(t, [i], "label") for i, t in zip(ids, texts) if i] + \
                  [(q["text"], q["ids"], "several" if len(q["ids"]) > 1 else "single") for q in scene.labels["queries"]]
        masks = [torch.isin(gt, torch.as_tensor(want)) for _, want, _ in queries]
        old = {r: entry_scores(head, [q[0] for q in queries], r, enc) for r in ("nearest", "gap", "codebook")}
        scenes.append((name, texts, owner, queries, w, masks, old))
        print(f"  rendered {name}", flush=True)

    def score(cand) -> Dict:
        per: Dict = {}
        for name, texts, owner, queries, w, masks, old in scenes:
            for q, (text, _, kind) in enumerate(queries):
                e = old[cand][q] if isinstance(cand, str) else \
                    torch.isin(owner, torch.as_tensor(sorted(cand(texts, text)))).float()  # [K]
                pred = (w @ e) > 0.5
                per.setdefault((name, kind), []).append(float((pred & masks[q]).sum()) / max(float((pred | masks[q]).sum()), 1))
        names = [s[0] for s in scenes]
        nl = {n: round(float(np.mean(per[(n, "single")] + per.get((n, "several"), []))), 4) for n in names}
        return {"nl": round(float(np.mean(list(nl.values()))), 4), "nl_min": min(nl.values()),
                "label": round(float(np.mean([np.mean(per[(n, "label")]) for n in names])), 4),
                "several": round(float(np.mean(sum([v for (n, k), v in per.items() if k == "several"], []))), 4),
                "nl_by_scene": nl}

    out = [{"candidate": f"old rule {r}", **score(r)} for r in ("nearest", "gap", "codebook")]
    for (tname, templates), (wname, words), plural, window, smin in itertools.product(
            TEMPLATE_CHOICES, [("articles", ARTICLES), ("one-object words", ONE_OBJECT_WORDS)],
            ("within", "nearest m=0", "nearest m=0.05"), (0.05, 0.1, 0.2), (1, 2)):
        name = f"labels: {tname}, {wname}, several: {plural} w={window}, at least {smin}"
        out.append({"candidate": name, **score(label_candidate(templates, words, plural, window, smin, embed))})
    out.sort(key=lambda r: -r["nl"])
    print(markdown(["candidate", "NL mean", "NL worst scene", "label", "NL several"] + [s[0] for s in scenes],
                   [[r["candidate"], r["nl"], r["nl_min"], r["label"], r["several"]] + list(r["nl_by_scene"].values())
                    for r in out]))
    write_json(args.out.replace(".json", "_e2e.json"), {"scenes": [s[0] for s in scenes], "rows": out,
                                                         "iterations": args.iterations, "size": args.size})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=os.path.join(ROOT, "output", "bench", "semantic_queries"))
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--iterations", type=int, default=500, help="--end-to-end: RGB training steps per scene")
    p.add_argument("--end-to-end", dest="end_to_end", action="store_true",
                   help="score rendered masks of the lifted validation models (the labels rule's choice)")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "semantic_tuning.json"))
    args = p.parse_args()
    enc = load_text_encoder(EncoderSpec("minilm", MINILM_NAME, 384))

    @functools.lru_cache(maxsize=None)
    def embed(templates, text):
        return torch.nn.functional.normalize(encode_texts(enc, [t.format(text) for t in templates]).mean(0), dim=0)

    if args.end_to_end:
        return end_to_end(args, enc, embed)
    scenes = []
    for name in [n for n, r in ROLES.items() if r == "validation"]:  # never the held-out scenes
        folder = write_labelled_scene(name, os.path.join(args.work, "scenes"), 0, args.size)
        labels = scene_labels(name)
        ids, texts = label_table(labels)
        area = np.zeros(max(ids) + 1)
        for f in sorted((folder / "masks" / "test").glob("*.png")):
            area += np.bincount(np.asarray(Image.open(f)).ravel(), minlength=len(area))[: len(area)]
        queries = [(t, [i], "label") for i, t in zip(ids, texts) if i] + \
                  [(q["text"], q["ids"], "several" if len(q["ids"]) > 1 else "single") for q in labels["queries"]]
        scenes.append((name, ids, texts, area, queries))
    rows, out = [], []
    for tname, templates in TEMPLATE_SETS.items():
        for cname, rule in candidates().items():
            res: Dict[str, List[float]] = {"label": [], "single": [], "several": []}
            for name, ids, texts, area, queries in scenes:
                L = torch.stack([embed(templates, t) for t in texts])  # [L, D]
                neg = torch.stack([embed(templates, t) for t in CANONICAL_NEGATIVES])  # [M, D]
                for text, wanted, kind in queries:
                    s = L @ embed(templates, text)  # [L]
                    s[ids.index(0)] = -1.0  # the background label never matches a query
                    res[kind].append(area_iou([ids[k] for k in rule(s, L @ L.T, L @ neg.T)], wanted, area))
            m = {k: round(float(np.mean(v)), 3) for k, v in res.items()}
            m["nl"] = round(float(np.mean(res["single"] + res["several"])), 3)
            out.append({"templates": tname, "rule": cname, **m})
            rows.append([tname, cname, m["label"], m["nl"], m["single"], m["several"]])
    print(markdown(["templates", "rule", "label", "NL", "NL single", "NL several"], rows))
    write_json(args.out, {"scenes": [s[0] for s in scenes], "rows": out})


if __name__ == "__main__":
    main()
