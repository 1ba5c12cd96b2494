"""Per-Gaussian semantic labels: a codebook index and a confidence for every Gaussian.

Two ways to compute them from a semantic field (``features [N, F]`` + :class:`SemanticHead`):

- ``lift`` (default): render the field in the training views (at ``1 / downscale`` of their
  size), decode each pixel into codebook weights ``W(p) [K]``, and sum them onto the Gaussians
  weighted by each Gaussian's contribution ``alpha_i(p) T_i(p)`` (by default at 1/4 of the image
  size, never below 64 pixels)
  (:func:`gs_vq.render.contribution.lift_maps`). The label is the entry with the largest sum,
  the confidence its share of the total. A decoder trained on alpha-blended features does not
  have to transfer to a single Gaussian's feature this way. Gaussians no view sees fall back to
  ``direct`` with confidence 0.
- ``direct``: decode each Gaussian's own feature; label = argmax of its weights, confidence =
  that weight.

Labels live in the splat dict as ``labels [N]`` int64 and ``labelconf [N]`` float in [0, 1], under the
same names in point_cloud.ply and compressed.ply (:data:`gs_vq.io.ply.LABEL_KEY`; older plys' ``label`` /
``label_conf`` are read too);
:func:`stored_labels` also accepts the ``[N, 1]`` float columns compressed.ply decodes them to.
"""

from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..errors import GsVqError
from ..io.ply import CONF_KEY, LABEL_KEY  # noqa: F401 (the labels' names, exported here)
from ..render import rasterize
from ..render.contribution import lift_maps, scaled_intrinsics
from .head import SemanticHead

LABEL_METHODS = ("lift", "direct")


def check_field(splats: Dict[str, Tensor], head: SemanticHead) -> Tensor:
    """The model's ``features [N, F]``, checked against ``head`` (one-line errors)."""
    if "features" not in splats:
        raise GsVqError("the model has no per-Gaussian semantic features: train it with --semantic "
                        "(or lift them with python -m gs_vq.cli.lift)")
    feats = splats["features"]
    if feats.shape[1] != head.codebook.feature_dim:
        raise GsVqError(f"the model's features have {feats.shape[1]} channels, its semantic head "
                        f"expects {head.codebook.feature_dim}")
    return feats


@torch.no_grad()
def direct_labels(splats: Dict[str, Tensor], head: SemanticHead) -> Tuple[Tensor, Tensor]:
    """Decode each Gaussian's own feature: ``(labels [N] int64, confidence [N])``."""
    feats = check_field(splats, head)
    head.codebook.to(feats.device)
    conf, labels = head.weights(feats).max(dim=-1)
    return labels, conf


def auto_downscale(cam, min_size: int = 64, most: int = 4) -> int:
    """Largest factor up to ``most`` that keeps the lifting render at least ``min_size`` pixels wide."""
    return max(1, min(most, min(cam.width, cam.height) // min_size))


@torch.no_grad()
def decoded_map(splats: Dict[str, Tensor], head: SemanticHead, cam, downscale: Optional[int] = None,
                backend: str = "auto") -> Tensor:
    """Codebook weights ``[h, w, K]`` of the field rendered in ``cam`` at ``1 / downscale`` size
    (None: :func:`auto_downscale`)."""
    feats = splats["features"]
    downscale = downscale or auto_downscale(cam)
    h, w = max(1, cam.height // downscale), max(1, cam.width // downscale)
    K = scaled_intrinsics(cam.K, cam.width, cam.height, w, h).to(feats.device)
    out, _, _ = rasterize(splats["means"], splats["quats"], torch.exp(splats["scales"]),
                          torch.sigmoid(splats["opacities"]), feats, cam.viewmat[None].to(feats.device), K[None],
                          w, h, sh_degree=None, backend=backend)
    return head.weights(out[0])


def lifted_labels(splats: Dict[str, Tensor], head: SemanticHead, cameras: Sequence, downscale: Optional[int] = None,
                  backend: str = "auto") -> Tuple[Tensor, Tensor]:
    """Contribution-weighted vote of the decoded pixels of ``cameras``: ``(labels [N], confidence [N])``."""
    check_field(splats, head)
    head.codebook.to(splats["features"].device)
    sums, weight = lift_maps(splats, cameras, lambda cam: decoded_map(splats, head, cam, downscale, backend),
                             backend)  # [N, K], [N]
    best, labels = sums.max(dim=-1)
    conf = best / sums.sum(dim=-1).clamp_min(1e-12)
    seen = weight > 1e-6
    if not seen.all():
        d_labels, _ = direct_labels(splats, head)
        labels = torch.where(seen, labels, d_labels)
        conf = torch.where(seen, conf, torch.zeros_like(conf))
    return labels, conf.clamp(0, 1)


def compute_labels(splats: Dict[str, Tensor], head: SemanticHead, cameras: Optional[Sequence] = None,
                   method: str = "lift", downscale: Optional[int] = None, backend: str = "auto") -> Tuple[Tensor, Tensor]:
    """Labels by ``method`` (``lift`` needs the training ``cameras``)."""
    if method not in LABEL_METHODS:
        raise GsVqError(f"label method must be one of {', '.join(LABEL_METHODS)}, got {method}")
    if method == "direct":
        return direct_labels(splats, head)
    if not cameras:
        raise GsVqError("lifting labels needs the training views of the scene")
    return lifted_labels(splats, head, cameras, downscale, backend)


def stored_labels(splats: Dict[str, Tensor]) -> Optional[Tuple[Tensor, Tensor]]:
    """``(labels [N] int64, confidence [N])`` stored with the splats (ply or compressed.ply), or None."""
    if LABEL_KEY not in splats:
        return None
    labels = splats[LABEL_KEY].reshape(-1).round().long()
    conf = splats[CONF_KEY].reshape(-1).float() if CONF_KEY in splats else torch.ones(labels.shape[0])
    if labels.shape[0] != splats["means"].shape[0] or conf.shape != labels.shape:
        raise GsVqError("stored semantic labels do not match the number of Gaussians")
    return labels.to(splats["means"].device), conf.to(splats["means"].device)


def labels_for(splats: Dict[str, Tensor], head: SemanticHead, cameras: Optional[Sequence] = None,
               method: str = "lift", downscale: Optional[int] = None, backend: str = "auto") -> Tuple[Tensor, Tensor]:
    """Stored labels when the file has them (and fit ``head``), else computed by ``method``."""
    check_field(splats, head)
    stored = stored_labels(splats)
    if stored is not None and (len(stored[0]) == 0 or int(stored[0].max()) < head.codebook.num_codes):
        return stored
    if method == "lift" and not cameras:
        method = "direct"
    return compute_labels(splats, head, cameras, method, downscale, backend)
