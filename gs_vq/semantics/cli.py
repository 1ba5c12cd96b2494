"""``render.py``'s semantic options: ``--query TEXT``, ``--semantic``, ``--eval-queries labels.json``.

``render.py`` calls :func:`add_render_args` on its parser and, when :func:`wants_semantics`, passes
the loaded splats and cameras to :func:`run_semantic_render`, whose returned dict goes into
``results.json``. Everything is written under ``MODEL/<split>/``.
"""

import argparse
import os
from typing import Dict, Sequence

from ..errors import GsVqError, read_json
from .evaluate import evaluate_queries, render_pca, render_queries
from .query import HEAD_NAME, MASK_RULES, SemanticHead


def add_render_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("semantics (models trained with --semantic)")
    g.add_argument("--query", action="append", metavar="TEXT",
                   help="text query: heatmap + mask PNGs per view in MODEL/<split>/queries/<text>/ (repeatable)")
    g.add_argument("--semantic", action="store_true",
                   help="PCA colouring of the decoded semantic features in MODEL/<split>/semantic/")
    g.add_argument("--eval-queries", dest="eval_queries", metavar="LABELS_JSON",
                   help="IoU of each label and extra query of this labels.json (a path, or a name in the scene "
                        "folder) against the views' ground-truth masks; miou + per-query IoU into results.json")
    g.add_argument("--mask-rule", dest="mask_rule", choices=MASK_RULES, default="codebook",
                   help="codebook: compare with the other codebook entries (default); view: per-view "
                        "normalisation (LangSplat); lerf: LERF relevancy > threshold")
    g.add_argument("--threshold", type=float, default=0.5, help="mask threshold on the [0, 1] pixel score")


def wants_semantics(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "query", None) or getattr(args, "semantic", False) or getattr(args, "eval_queries", None))


def read_labels(path_or_name: str, source_path: str) -> Dict:
    path = path_or_name if os.path.isfile(path_or_name) else os.path.join(source_path or "", path_or_name)
    if not os.path.isfile(path):
        raise GsVqError(f"--eval-queries: no file {path_or_name} (nor in the scene folder {source_path})")
    labels = read_json(path)
    if not isinstance(labels, dict):
        raise GsVqError(f"{path} must map ids to label text")
    return labels


def run_semantic_render(args: argparse.Namespace, model_path: str, split: str, splats, cameras: Sequence,
                        source_path: str, background, device: str, backend: str = "auto",
                        progress: bool = True) -> Dict:
    """Do what ``args`` asks; returns the entries to merge into ``results.json`` (``miou``,
    ``miou_extra``, ``iou``, ``iou_extra``, ``miou_by_rule``, ... for ``--eval-queries``)."""
    head = SemanticHead.load(os.path.join(model_path, HEAD_NAME), device)
    out_root = os.path.join(model_path, split)
    results: Dict = {}
    if args.eval_queries:
        labels = read_labels(args.eval_queries, source_path)
        res = evaluate_queries(splats, cameras, head, labels, background, device, backend, args.mask_rule,
                               args.threshold, out_dir=os.path.join(out_root, "eval_queries"), progress=progress)
        results.update(res)
    if args.query:
        texts = list(dict.fromkeys(args.query))  # a repeated --query once
        files = render_queries(splats, cameras, head, texts, os.path.join(out_root, "queries"), background,
                               device, backend, args.mask_rule, args.threshold, progress)
        results["query_outputs"] = {t: os.path.dirname(v[0]) for t, v in files.items() if v}
    if args.semantic:
        paths = render_pca(splats, cameras, head, os.path.join(out_root, "semantic"), background, device, backend,
                           progress)
        results["semantic_pca_dir"] = os.path.dirname(paths[0]) if paths else None
    return results
