"""``render.py``'s semantic options: ``--query TEXT``, ``--semantic``, ``--eval-queries labels.json``,
``--extract OUT.ply`` / ``--remove OUT.ply`` (3D selection, :mod:`gs_vq.semantics.select`).
The semantic part of ``render.py``'s command line (:mod:`gs_vq.cli.render`).

``render.py`` calls :func:`add_render_args` on its parser and, when :func:`wants_semantics`, passes
the loaded splats and cameras to :func:`run_semantic_render`, whose returned dict goes into
``results.json``. Everything is written under ``MODEL/<split>/``.
"""

import argparse
import os
from typing import Dict, Optional, Sequence

from ..errors import GsVqError
from ..semantics.head import HEAD_NAME, SemanticHead
from ..semantics.labels import LABEL_METHODS
from ..semantics.labels_json import read_labels
from ..semantics.scoring import DEFAULT_MASK_RULE, MASK_RULES
from ..semantics.select import evaluate_selection, query_selection, write_selection
from ..semantics.view_queries import evaluate_queries, render_pca, render_queries


def add_render_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "semantics (models trained with --semantic)",
        "Label-text features (the default source) know only what the label texts say: a query about an "
        "attribute no label names, a colour or a material ('something blue' for a 'toy drum'), finds "
        "nothing. Name it in the labels ('blue coffee mug') or use open_clip image features "
        "(python -m gs_vq.cli.features --source clip). Queries covering several objects ('furniture') "
        "are the weakest kind: docs/semantics.md.")
    g.add_argument("--query", action="append", metavar="TEXT",
                   help="text query: heatmap + mask PNGs per view in MODEL/<split>/queries/<text>/ (repeatable); "
                        "see the limits above")
    g.add_argument("--semantic", action="store_true",
                   help="PCA colouring of the decoded semantic features in MODEL/<split>/semantic/")
    g.add_argument("--eval-queries", dest="eval_queries", metavar="LABELS_JSON",
                   help="IoU of each label and extra query of this labels.json (a path, or a name in the scene "
                        "folder) against the views' ground-truth masks; miou + per-query IoU into results.json")
    g.add_argument("--mask-rule", dest="mask_rule", choices=MASK_RULES, default=DEFAULT_MASK_RULE,
                   help="labels (default): the query is scored against the scene's label texts; a query "
                        "starting 'a ...', 'the ...', 'something ...' selects the best label, a bare noun phrase "
                        "('fruit') may select several (chosen on validation scenes only); "
                        "nearest: prompt ensembles; an entry is selected when the query is nearer to "
                        "it than to that entry's nearest other entry (the previous default); "
                        "gap: every entry above the largest drop of the query's similarities; "
                        "codebook: compare with the other codebook entries; "
                        "view: per-view normalisation (LangSplat); lerf: LERF relevancy > threshold")
    g.add_argument("--threshold", type=float, default=0.5, help="mask threshold on the [0, 1] pixel score")
    g.add_argument("--extract", metavar="OUT_PLY",
                   help="write the Gaussians selected by --query as a standard 3DGS ply (no rendering)")
    g.add_argument("--remove", metavar="OUT_PLY", help="write the scene without the Gaussians selected by --query")
    g.add_argument("--min-conf", dest="min_conf", type=float, default=0.0,
                   help="3D selection: only Gaussians whose label confidence is at least this")
    g.add_argument("--labels", dest="label_method", choices=LABEL_METHODS, default="lift",
                   help="per-Gaussian labels when the ply stores none: lift (contribution-weighted vote of the "
                        "training views) or direct (decode each Gaussian's feature)")


def wants_semantics(args: argparse.Namespace) -> bool:
    """True when ``--query`` / ``--semantic`` / ``--eval-queries`` ask for semantic renders."""
    return bool(getattr(args, "query", None) or getattr(args, "semantic", False) or getattr(args, "eval_queries", None))


def wants_selection(args: argparse.Namespace) -> bool:
    """True when ``--extract`` / ``--remove`` ask for a 3D selection (which needs ``--query``)."""
    if not (getattr(args, "extract", None) or getattr(args, "remove", None)):
        return False
    if not getattr(args, "query", None):
        raise GsVqError("--extract / --remove need a --query TEXT")
    return True


def run_selection(args: argparse.Namespace, model_path: str, splats, train_cameras: Optional[Sequence],
                  device: str, backend: str = "auto") -> Dict:
    """``--extract`` / ``--remove``: write the selected Gaussians / the rest; returns a summary."""
    head = SemanticHead.load(os.path.join(model_path, HEAD_NAME), device)
    keep = query_selection(splats, head, args.query, args.mask_rule, args.threshold, args.min_conf, train_cameras,
                           args.label_method, backend)
    return write_selection(splats, keep, args.extract, args.remove, args.query)


def eval_labels(path_or_name: str, source_path: str) -> Dict:
    """The labels.json ``--eval-queries`` names: a path, or a file name in the scene folder."""
    path = path_or_name if os.path.isfile(path_or_name) else os.path.join(source_path or "", path_or_name)
    if not os.path.isfile(path):
        raise GsVqError(f"--eval-queries: no file {path_or_name} (nor in the scene folder {source_path})")
    return read_labels(path)


def run_semantic_render(args: argparse.Namespace, model_path: str, out_root: str, splats, cameras: Sequence,
                        source_path: str, background, device: str, backend: str = "auto",
                        progress: bool = True, train_cameras: Optional[Sequence] = None) -> Dict:
    """Do what ``args`` asks; returns the entries to merge into ``results.json`` (``miou``,
    ``miou_extra``, ``iou``, ``iou_extra``, ``miou_by_rule``, ``miou_3d``, ``iou_3d``, ... for
    ``--eval-queries``), writing pictures under ``out_root`` (``MODEL/<split>/ours_<N>``).
    ``train_cameras`` lets 3D selection lift labels the ply does not store."""
    head = SemanticHead.load(os.path.join(model_path, HEAD_NAME), device)
    results: Dict = {}
    if args.eval_queries:
        labels = eval_labels(args.eval_queries, source_path)
        res = evaluate_queries(splats, cameras, head, labels, background, device, backend, args.mask_rule,
                               args.threshold, out_dir=os.path.join(out_root, "eval_queries"), progress=progress)
        results.update(res)
        results.update(evaluate_selection(splats, cameras, head, labels, device, backend, args.mask_rule,
                                          args.threshold, train_cameras, getattr(args, "label_method", "lift")))
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
