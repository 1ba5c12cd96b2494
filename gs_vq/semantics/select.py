"""3D selection by text: pick the Gaussians of the queried object(s), extract / remove them, score them.

A query is scored once per codebook entry with the same per-entry scores as the 2D masks
(:meth:`SemanticHead.entry_scores`); a Gaussian is selected when the score of its label
(:mod:`gs_vq.semantics.labels`) clears ``threshold``. Several entries can clear it, so a query
for "fruit" selects apple and banana. The ``view`` rule normalises per rendered view and has no
meaning in 3D: it selects as ``codebook`` does.

Evaluation (OpenGaussian's protocol): for each query, render only the selected Gaussians in the
test views and compare their alpha mask (> 0.5) with the ground-truth mask; IoU is pooled over
views (sum of intersections / sum of unions), as for the 2D masks.
"""

import os
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..errors import GsVqError
from .labels import labels_for
from .head import SemanticHead
from .labels_json import extra_queries, label_queries
from .scoring import iou_counts


def entry_scores_3d(head: SemanticHead, texts: Sequence[str], rule: str = "codebook") -> Tensor:
    """Per-entry scores ``[T, K]`` used for 3D selection (``view`` falls back to ``codebook``)."""
    return head.entry_scores(list(texts), "codebook" if rule == "view" else rule)


def select(labels: Tensor, conf: Tensor, scores: Tensor, threshold: float = 0.5, min_conf: float = 0.0) -> Tensor:
    """``[N]`` bool: Gaussians whose label's entry score (``scores [K]``) clears ``threshold`` and
    whose confidence is at least ``min_conf``."""
    return (scores.to(labels.device)[labels] > threshold) & (conf >= min_conf)


def subset(splats: Dict[str, Tensor], keep: Tensor) -> Dict[str, Tensor]:
    """The Gaussians of ``splats`` where ``keep [N]`` (every per-Gaussian tensor indexed)."""
    N = splats["means"].shape[0]
    return {k: (v.detach()[keep] if v.dim() and v.shape[0] == N else v.detach()) for k, v in splats.items()}


def query_selection(splats: Dict[str, Tensor], head: SemanticHead, texts: Sequence[str], rule: str = "codebook",
                    threshold: float = 0.5, min_conf: float = 0.0, cameras: Optional[Sequence] = None,
                    method: str = "lift", backend: str = "auto") -> Tensor:
    """``[N]`` bool: the union of the selections of ``texts``."""
    labels, conf = labels_for(splats, head, cameras, method, backend=backend)
    scores = entry_scores_3d(head, texts, rule)  # [T, K]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    for e in scores:
        keep |= select(labels, conf, e, threshold, min_conf)
    return keep


def write_selection(splats: Dict[str, Tensor], keep: Tensor, extract: Optional[str], remove: Optional[str],
                    texts: Sequence[str]) -> Dict:
    """Write the selected Gaussians to ``extract`` and the rest to ``remove`` (standard 3DGS plys).

    A selection of nothing (or, for ``remove``, of everything) is a one-line GsVqError and no file.
    """
    from ..io import save_ply

    n, k = int(keep.numel()), int(keep.sum())
    what = " / ".join(repr(t) for t in texts)
    if k == 0:
        raise GsVqError(f"the query {what} selects no Gaussians: nothing written")
    out: Dict = {"selected": k, "num_gaussians": n}
    if extract:
        out["extract"] = os.path.abspath(extract)
        out["extract_bytes"] = save_ply(subset(splats, keep), extract)
    if remove:
        if k == n:
            raise GsVqError(f"the query {what} selects every Gaussian: removing them leaves nothing to write")
        out["remove"] = os.path.abspath(remove)
        out["remove_bytes"] = save_ply(subset(splats, ~keep), remove)
    return out


def selection_channels(labels: Tensor, scores: Tensor, threshold: float = 0.5) -> Tensor:
    """``[N, T]`` float in {0, 1}: whether each Gaussian's label (``labels [N]``) clears ``threshold``
    under each query's entry scores (``scores [T, K]``)."""
    return (scores.to(labels.device)[:, labels] > threshold).T.float()


@torch.no_grad()
def selection_alpha(splats: Dict[str, Tensor], keep: Tensor, cam, device: str, backend: str = "auto") -> Tensor:
    """Alpha ``[H, W]`` of the selected Gaussians alone, rendered in ``cam``."""
    from ..render import rasterize

    if not bool(keep.any()):
        return torch.zeros(cam.height, cam.width, device=device)
    s = {k: splats[k][keep] for k in ("means", "quats", "scales", "opacities")}
    colors = torch.zeros(s["means"].shape[0], 1, device=device)
    _, alpha, _ = rasterize(s["means"], s["quats"], torch.exp(s["scales"]), torch.sigmoid(s["opacities"]), colors,
                            cam.viewmat[None].to(device), cam.K[None].to(device), cam.width, cam.height,
                            sh_degree=None, backend=backend)
    return alpha[0, ..., 0]


def evaluate_selection(splats: Dict[str, Tensor], cameras: Sequence, head: SemanticHead, labels_json: Dict,
                       device: str, backend: str = "auto", rule: str = "codebook", threshold: float = 0.5,
                       train_cameras: Optional[Sequence] = None, method: str = "lift") -> Dict:
    """3D selection IoU of every label and extra query of ``labels_json`` in ``cameras``.

    Returns ``{"miou_3d", "miou_3d_extra", "iou_3d": {label: IoU}, "iou_3d_extra": {text: IoU},
    "selected_3d": {text: number of Gaussians}}``.
    """
    if not cameras or any(c.mask is None for c in cameras):
        raise GsVqError("3D selection evaluation needs ground-truth masks (masks/ folder) for every evaluated view")
    labelled, extra = label_queries(labels_json), extra_queries(labels_json)
    queries: List[Tuple[str, List[int]]] = labelled + extra
    labels, conf = labels_for(splats, head, train_cameras, method, backend=backend)
    scores = entry_scores_3d(head, [t for t, _ in queries], rule)  # [T, K]
    keeps = [select(labels, conf, e, threshold) for e in scores]
    inter, union = torch.zeros(len(queries)), torch.zeros(len(queries))
    for cam in cameras:
        gt_ids = cam.mask.to(device)
        for q, (_, ids) in enumerate(queries):
            pred = selection_alpha(splats, keeps[q], cam, device, backend) > 0.5
            i, u = iou_counts(pred, torch.isin(gt_ids, torch.as_tensor(ids, device=device)))
            inter[q] += i
            union[q] += u
    iou = inter / union.clamp_min(1)
    n = len(labelled)
    mean = lambda v: round(float(v.mean()), 4) if len(v) else None  # noqa: E731
    return {"miou_3d": mean(iou[:n]), "miou_3d_extra": mean(iou[n:]),
            "iou_3d": {t: round(float(v), 4) for (t, _), v in zip(labelled, iou[:n])},
            "iou_3d_extra": {t: round(float(v), 4) for (t, _), v in zip(extra, iou[n:])},
            "selected_3d": {t: int(k.sum()) for (t, _), k in zip(queries, keeps)}}
