"""Choosing the text-query path on the VALIDATION labelled scenes only (text level, no rendering).

    python -m bench.semantic_tuning                     # validation scenes (the only ones to choose on)

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
import os
from typing import Dict, List, Sequence

import numpy as np
import torch
from PIL import Image

from bench.report import ROOT, markdown, write_json
from gs_vq.data.labelled_scenes import ROLES, scene_labels, write_labelled_scene
from gs_vq.semantics.encoders import MINILM_NAME, EncoderSpec, encode_texts, load_text_encoder
from gs_vq.semantics.labels_json import label_table
from gs_vq.semantics.scoring import CANONICAL_NEGATIVES, TEMPLATES, entry_gap_match, select_entries

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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=os.path.join(ROOT, "output", "bench", "semantic_queries"))
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "semantic_tuning.json"))
    args = p.parse_args()
    enc = load_text_encoder(EncoderSpec("minilm", MINILM_NAME, 384))

    @functools.lru_cache(maxsize=None)
    def embed(templates, text):
        return torch.nn.functional.normalize(encode_texts(enc, [t.format(text) for t in templates]).mean(0), dim=0)

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
