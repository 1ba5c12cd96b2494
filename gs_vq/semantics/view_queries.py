"""Queries in rendered views: heatmaps and masks, PCA pictures, and 2D mIoU against ground-truth masks.

Used by ``render.py --query TEXT`` / ``--semantic`` / ``--eval-queries labels.json``. Each view is
rendered once (RGB + the per-Gaussian features) and decoded into entry weights ``[H, W, K]``;
every query then costs one ``K``-vector product per pixel.
"""

import hashlib
import os
import re
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from tqdm import tqdm

from ..data.cameras import image_stem
from ..errors import GsVqError
from .labels import stored_labels
from .head import SemanticHead
from .labels_json import extra_queries, label_queries
from .scoring import MASK_RULES, iou_counts, query_mask
from .select import selection_channels
from .visualize import overlay, pca_basis, pca_colors


def slug(text: str) -> str:
    """A file-name-safe folder name for a query text, distinct for distinct texts: the text itself
    when it is already safe, else its safe form plus 8 hex digits of its SHA-1 ("red apple" ->
    ``red_apple-<hash>``, never the same as "red-apple"'s)."""
    safe = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:60] or "query"
    return safe if safe == text else f"{safe}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


@torch.no_grad()
def view_weights(splats: Dict[str, Tensor], cameras: Sequence, head: SemanticHead, background, device: str,
                 backend: str = "auto") -> Iterator[Tuple[object, Tensor, Tensor]]:
    """Yield ``(camera, rgb [H, W, 3], weights [H, W, K])`` per camera (one render each)."""
    from ..evaluate import render_views

    if "features" not in splats:
        raise GsVqError("the model has no per-Gaussian semantic features: train it with --semantic")
    if splats["features"].shape[1] != head.codebook.feature_dim:
        raise GsVqError(f"the model's features have {splats['features'].shape[1]} channels, its semantic head "
                        f"expects {head.codebook.feature_dim}")
    head.codebook.to(device)
    for cam, out in render_views(splats, cameras, background, device, backend, extra=splats["features"]):
        yield cam, out.rgb[0].clamp(0, 1), head.weights(out.extra[0])


def render_queries(splats, cameras, head: SemanticHead, texts: Sequence[str], out_dir: str, background,
                   device: str, backend: str = "auto", rule: str = "codebook", threshold: float = 0.5,
                   progress: bool = True) -> Dict[str, List[str]]:
    """For each query and view write ``out_dir/<query>/<view>_heatmap.png`` (relevance score
    colormapped over the render) and ``<view>_mask.png``. Returns query -> written files.

    A model that stores per-Gaussian labels (``labels``, e.g. lifted or compressed.ply) takes the
    fast path: each query selects Gaussians by label and is rendered as one channel with the RGB
    (:mod:`~gs_vq.semantics.label_render`), instead of the ``F``-channel feature field
    decoded into ``K`` weights per pixel."""
    from ..evaluate import render_views, save_png

    texts = list(dict.fromkeys(texts))  # a repeated query once
    scores = head.entry_scores(texts, rule).to(device)  # [T, K]
    written: Dict[str, List[str]] = {t: [] for t in texts}
    stored = stored_labels(splats) if rule != "view" else None  # view normalises decoded pixels: no label path
    if stored is not None and int(stored[0].max()) < head.codebook.num_codes:
        # per-Gaussian labels: render each query's selected Gaussians as one channel (no feature field)
        channels = selection_channels(stored[0], scores, threshold)  # [N, T]
        views = ((cam, out.rgb[0].clamp(0, 1), out.extra[0]) for cam, out in
                 render_views(splats, cameras, background, device, backend, extra=channels))
        pick = lambda s, t, e: (s[..., t], s[..., t] > 0.5)  # noqa: E731
    else:
        views = view_weights(splats, cameras, head, background, device, backend)
        pick = lambda w, t, e: query_mask(w, e, rule, threshold)  # noqa: E731
    for cam, rgb, w in tqdm(views, total=len(cameras), disable=not progress, desc="queries", dynamic_ncols=True):
        for t, (text, e) in enumerate(zip(texts, scores)):
            score, mask = pick(w, t, e)
            folder = os.path.join(out_dir, slug(text))
            for suffix, img in (("heatmap", overlay(rgb, score)), ("mask", mask.float())):
                path = os.path.join(folder, f"{image_stem(cam)}_{suffix}.png")
                save_png(img, path)
                written[text].append(path)
    return written


def render_pca(splats, cameras, head: SemanticHead, out_dir: str, background, device: str,
               backend: str = "auto", progress: bool = True) -> List[str]:
    """Write ``out_dir/<view>.png``: the decoded features coloured by their first 3 PCA axes."""
    from ..evaluate import save_png

    codes = head.codebook.unit_codes().detach()
    basis = pca_basis(codes, head.active)
    paths = []
    views = view_weights(splats, cameras, head, background, device, backend)
    for cam, _, w in tqdm(views, total=len(cameras), disable=not progress, desc="pca", dynamic_ncols=True):
        path = os.path.join(out_dir, f"{image_stem(cam)}.png")
        save_png(pca_colors(w, codes, basis), path)
        paths.append(path)
    return paths


def evaluate_queries(splats, cameras, head: SemanticHead, labels: Dict, background, device: str,
                     backend: str = "auto", rule: str = "codebook", threshold: float = 0.5,
                     out_dir: Optional[str] = None, progress: bool = True) -> Dict:
    """IoU of every label query (ids of labels.json but 0) and extra query (``"queries"``) against
    the ground-truth masks of ``cameras``, pooled over views (sum of intersections / sum of unions).

    Returns ``{"miou", "miou_extra", "iou": {label: IoU}, "iou_extra": {text: IoU},
    "miou_by_rule": {rule: {"labels", "extra"}}, "iou_by_rule": {rule: {"labels": {label: IoU},
    "extra": {text: IoU}}}, ...}`` (``miou`` under ``rule``; every rule of
    :data:`~gs_vq.semantics.scoring.MASK_RULES` is scored from the same renders). With ``out_dir``,
    also writes each predicted mask (under ``rule``) as ``out_dir/<query>/<view>_mask.png``.
    """
    from ..evaluate import save_png

    if not cameras or any(c.mask is None for c in cameras):
        raise GsVqError("--eval-queries needs ground-truth masks (masks/ folder) for every evaluated view")
    if rule not in MASK_RULES:
        raise GsVqError(f"mask rule must be one of {', '.join(MASK_RULES)}, got {rule}")
    labelled, extra = label_queries(labels), extra_queries(labels)
    queries = labelled + extra
    if not queries:
        raise GsVqError("labels.json defines no queries")
    texts = [t for t, _ in queries]
    gt_pixels = torch.zeros(len(queries))  # a query whose objects no view shows has no IoU (None)
    scores = {r: head.entry_scores(texts, r).to(device) for r in MASK_RULES}  # rule -> [T, K]
    inter = {r: torch.zeros(len(queries)) for r in MASK_RULES}
    union = {r: torch.zeros(len(queries)) for r in MASK_RULES}
    views = view_weights(splats, cameras, head, background, device, backend)
    for cam, _, w in tqdm(views, total=len(cameras), disable=not progress, desc="eval-queries", dynamic_ncols=True):
        gt_ids = cam.mask.to(device)
        for q, (text, ids) in enumerate(queries):
            gt = torch.isin(gt_ids, torch.as_tensor(ids, device=device))
            gt_pixels[q] += float(gt.sum())
            for r in MASK_RULES:
                _, pred = query_mask(w, scores[r][q], r, threshold)
                i, u = iou_counts(pred, gt)
                inter[r][q] += i
                union[r][q] += u
                if out_dir and r == rule:
                    save_png(pred.float(), os.path.join(out_dir, slug(text), f"{image_stem(cam)}_mask.png"))
    n = len(labelled)
    mean = lambda v: round(float(v.nanmean()), 4) if bool((~v.isnan()).any()) else None  # noqa: E731
    value = lambda v: None if v != v else round(float(v), 4)  # noqa: E731
    by_rule, per_query = {}, {}
    for r in MASK_RULES:
        iou = torch.where(gt_pixels > 0, inter[r] / union[r].clamp_min(1), torch.full_like(gt_pixels, float("nan")))
        by_rule[r] = {"labels": mean(iou[:n]), "extra": mean(iou[n:])}
        per_query[r] = {"labels": {t: value(v) for (t, _), v in zip(labelled, iou[:n])},
                        "extra": {t: value(v) for (t, _), v in zip(extra, iou[n:])}}
    return {"miou": by_rule[rule]["labels"], "miou_extra": by_rule[rule]["extra"], "iou": per_query[rule]["labels"],
            "iou_extra": per_query[rule]["extra"], "miou_by_rule": by_rule, "iou_by_rule": per_query,
            "mask_rule": rule, "threshold": threshold, "num_query_views": len(cameras), "encoder": head.encoder.name}
