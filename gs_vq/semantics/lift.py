"""Training-free semantic field: lift 2D feature maps onto a finished RGB model in one pass.

:func:`lift_model` (``python -m gs_vq.cli.lift -m RGB_MODEL -o OUT``) writes a semantic model folder (the
RGB model's Gaussians with ``features [N, F]`` and labels, ``semantic_head.pt``, ``cfg.yaml``)
that every query, extraction and evaluation path of ``render.py`` reads like a trained field:

1. Codebook: hierarchical cosine k-means over samples of the 2D maps (the trained field's
   initialisation, :meth:`SemanticCodebook.init_kmeans`), ``K`` entries.
2. Basis: the top ``F`` right singular vectors ``P [D, F]`` of the same samples (uncentred, so
   alpha-blending commutes with the projection); label maps span a few directions only.
3. Lifting: per-Gaussian features are the contribution-weighted mean of the projected maps
   ``v(p) P`` over the training views (:func:`gs_vq.render.contribution.lift_maps`, one
   forward + backward render per view at the maps' size).
4. Decoder: linear, ``logits = tau * C P f - log n``: a rendered feature is scored against every
   entry by the cosine of its back-projection (``C [K, D]`` unit entries). Label maps hold a few
   distinct vectors, so k-means returns copies of one entry (``n [K]``: how many entries equal
   each); ``- log n`` gives each group of copies together the weight one entry would get (without
   it, a label with 49 copies outweighs every other label at a pixel whose feature is a blend).

Gaussians no training view sees get a zero feature (uniform weights). The same lifted features
and codebook can start the trained field (``semantic.codebook_init: lift`` with
``--start_checkpoint``).
"""

import json
import os
import shutil
import time
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..errors import GsVqError
from ..render.contribution import lift_maps
from .codebook import SemanticCodebook, entry_usage
from .features import FeatureMaps
from .head import HEAD_NAME, SemanticHead


def feature_basis(samples: Sequence[Tensor], dim: int) -> Tensor:
    """``[D, dim]`` orthonormal basis: top right singular vectors of the stacked ``samples [P_i, D]``
    (fewer columns are padded with zeros when the samples have lower rank)."""
    X = torch.cat([s.float() for s in samples])  # [P, D]
    _, S, Vh = torch.linalg.svd(torch.unique(X, dim=0) if len(X) > 4 * X.shape[1] else X, full_matrices=False)
    basis = Vh[:dim].T  # [D, <=dim]
    if basis.shape[1] < dim:
        basis = torch.cat([basis, torch.zeros(X.shape[1], dim - basis.shape[1])], dim=1)
    return basis


def lift_features(splats: Dict[str, Tensor], cameras: Sequence, maps: FeatureMaps, basis: Tensor,
                  backend: str = "auto") -> Tuple[Tensor, Tensor]:
    """Contribution-weighted mean of ``maps[cam] @ basis`` over ``cameras`` -> ``(features [N, F],
    contribution [N])``."""
    device = splats["means"].device
    P = basis.to(device)
    sums, weight = lift_maps(splats, cameras, lambda cam: maps[cam.name].to(device) @ P, backend)  # [N, F], [N]
    return sums / weight.clamp_min(1e-8)[:, None], weight


def lifted_head(maps: FeatureMaps, samples: Sequence[Tensor], basis: Tensor, num_codes: int = 64,
                k_per_view: int = 16, tau: float = 60.0, active_min_usage: float = 1e-3, seed: int = 0,
                relevancy_tau: float = 10.0, mask_tau: float = 20.0) -> SemanticHead:
    """k-means codebook + the linear decoder ``tau * C P`` (see module doc)."""
    F = basis.shape[1]
    codebook = SemanticCodebook(F, num_codes, maps.dim, "linear")
    codebook.init_kmeans(samples, k_per_view, seed)
    with torch.no_grad():
        codes = codebook.unit_codes()  # [K, D]
        codebook.decoder.weight.copy_(tau * codes @ basis)  # [K, F]
        copies = (codes @ codes.T > 1.0 - 1e-6).sum(dim=1)  # [K] entries equal to each (itself included)
        codebook.decoder.bias.copy_(-torch.log(copies.float()))
    active = entry_usage(codebook, samples) >= active_min_usage
    return SemanticHead(codebook.eval(), maps.encoder, active, relevancy_tau, mask_tau,
                        texts=tuple(maps.meta.get("texts", ())))


def lift_field(splats: Dict[str, Tensor], cameras: Sequence, maps: FeatureMaps, feature_dim: int = 16,
               num_codes: int = 64, k_per_view: int = 16, samples_per_view: int = 2048, tau: float = 60.0,
               seed: int = 0, backend: str = "auto") -> Tuple[Tensor, SemanticHead]:
    """The training-free field of ``splats``: ``(features [N, feature_dim], head)``."""
    from .field_setup import sample_views

    if not cameras:
        raise GsVqError("lifting needs training views")
    samples = sample_views(maps, samples_per_view, seed)
    basis = feature_basis(samples, feature_dim)  # [D, F]
    head = lifted_head(maps, samples, basis, num_codes, k_per_view, tau, seed=seed)
    feats, _ = lift_features(splats, cameras, maps, basis, backend)
    return feats, head


def init_from_lift(cfg, maps: FeatureMaps, scene, splats, optimizers) -> SemanticCodebook:
    """``semantic.codebook_init: lift``: set ``splats["features"]`` (and its optimizer) to the
    lifted features of the current Gaussians and return the lifted codebook + decoder to train."""
    from .field_setup import add_feature_param

    if cfg.decoder != "linear":
        raise GsVqError("semantic codebook_init lift needs decoder: linear")
    with torch.no_grad():
        feats, head = lift_field(dict(splats.items()), scene.train_cameras, maps, cfg.feature_dim, cfg.num_codes,
                                 cfg.kmeans_per_view, cfg.kmeans_samples, seed=cfg.seed)
    splats["features"] = torch.nn.Parameter(feats.to(splats["means"].device))
    add_feature_param(splats, optimizers, cfg.feature_dim, cfg.features_lr, cfg.features_init_std, cfg.seed)
    return head.codebook.train()


def lift_model(model_path: str, out: str, features: Optional[str] = None, map_downscale: int = 2,
               feature_dim: int = 16, num_codes: int = 64, tau: float = 60.0, label_method: str = "direct",
               device: str = "auto", backend: str = "auto") -> Dict:
    """Lift the 2D feature maps onto the finished RGB model folder ``model_path`` and write the
    semantic model folder ``out`` (``point_cloud.ply`` with ``features [N, feature_dim]`` and labels,
    ``semantic_head.pt``, ``cfg.yaml``, ``lift_stats.json``); ``model_path`` is not changed.

    ``features``: the 2D maps folder (default: label maps in the gs_vq cache, made at
    ``1 / map_downscale`` of the full-resolution images if absent); ``tau``: decoder temperature
    per unit cosine; ``label_method``: how the stored labels are computed (``direct`` | ``lift``).
    Returns the lift statistics (seconds, sizes).
    """
    from ..config import load_config
    from ..data import load_scene
    from ..io import load_ply, save_ply
    from ..render import resolve_device
    from .labels import CONF_KEY, LABEL_KEY, compute_labels
    from .field_setup import SemanticConfig, ensure_features

    if not os.path.isdir(model_path):
        raise GsVqError(f"model folder not found: {model_path}")
    if not 1 <= feature_dim <= 64 or num_codes < 2:
        raise GsVqError(f"bad sizes: --feature_dim {feature_dim}, --num_codes {num_codes}")
    cfg = load_config(os.path.join(model_path, "cfg.yaml"))
    scene = load_scene(cfg.source_path, resolution=cfg.resolution, eval=cfg.eval,
                       white_background=cfg.white_background, images=cfg.images)
    if map_downscale < 1:
        raise GsVqError(f"--map_downscale must be >= 1, got {map_downscale}")
    maps = ensure_features(SemanticConfig(features_dir=features, map_downscale=map_downscale), scene,
                           cfg.resolution or 1)
    device = resolve_device(device)
    splats = {k: v.to(device) for k, v in load_ply(os.path.join(model_path, "point_cloud.ply")).items()}
    splats.pop(LABEL_KEY, None), splats.pop(CONF_KEY, None)
    t0, c0 = time.perf_counter(), time.process_time()
    feats, head = lift_field(splats, scene.train_cameras, maps, feature_dim, num_codes, tau=tau, backend=backend)
    splats["features"] = feats  # [N, F]
    labels, conf = compute_labels(splats, head, scene.train_cameras, label_method, backend=backend)  # [N], [N]
    stats = {"lift_seconds": round(time.perf_counter() - t0, 2), "lift_cpu_seconds": round(time.process_time() - c0, 2),
             "num_gaussians": int(feats.shape[0]), "num_views": len(scene.train_cameras),
             "active_codes": int(head.active.sum()), "feature_dim": feature_dim, "device": device}
    splats[LABEL_KEY], splats[CONF_KEY] = labels, conf
    os.makedirs(out, exist_ok=True)
    save_ply(splats, os.path.join(out, "point_cloud.ply"))
    head.save(os.path.join(out, HEAD_NAME))
    shutil.copyfile(os.path.join(model_path, "cfg.yaml"), os.path.join(out, "cfg.yaml"))
    with open(os.path.join(out, "lift_stats.json"), "w") as f:
        json.dump(stats, f, indent=2)
    return stats
