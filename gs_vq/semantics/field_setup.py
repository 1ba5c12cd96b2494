"""What the semantic plugin and training-free lifting both start from: the ``semantic:`` section
(:class:`SemanticConfig`), the train views' 2D feature maps (:func:`ensure_features`), the
``features [N, F]`` parameter (:func:`add_feature_param`) and map pixels for k-means
(:func:`sample_views`). Kept apart from :mod:`.plugin`, so :mod:`.lift` needs no plugin.
"""

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch

from ..errors import GsVqError
from ..fields import LR, NONNEG, POSITIVE, Int, build_dataclass, check_ranges, ranged, steps
from .codebook import CODEBOOK_INITS
from .features import FeatureMaps, compute_label_features, default_features_dir, load_features, read_meta


@dataclass
class SemanticConfig:
    """The ``semantic:`` section of a training config. Units: steps, pixels."""

    features_dir: Optional[str] = None  # 2D maps; default in the gs_vq cache (label maps made there if absent)
    map_downscale: int = dataclasses.field(default=4, metadata=ranged(Int(1)))  # label maps made on demand are (full-resolution size) / this
    feature_dim: int = dataclasses.field(default=8, metadata=ranged(Int(1, 64)))  # F: channels per Gaussian
    num_codes: int = dataclasses.field(default=64, metadata=ranged(Int(2)))  # K: codebook entries
    decoder: str = "linear"  # linear | mlp
    decoder_hidden: int = dataclasses.field(default=64, metadata=ranged(Int(1)))
    codebook_init: str = "kmeans"  # kmeans | random | lift (training-free field; on a finished model)
    kmeans_per_view: int = dataclasses.field(default=16, metadata=ranged(Int(1)))  # first-level centroids per view
    kmeans_samples: int = dataclasses.field(default=2048, metadata=ranged(Int(1)))  # 2D feature pixels sampled per view for the k-means
    features_lr: float = dataclasses.field(default=5e-3, metadata=ranged(LR))
    features_init_std: float = dataclasses.field(default=0.1, metadata=ranged(NONNEG))
    decoder_lr: float = dataclasses.field(default=5e-3, metadata=ranged(LR))
    codebook_lr: float = dataclasses.field(default=1e-3, metadata=ranged(LR))
    weight: float = dataclasses.field(default=0.1, metadata=ranged(NONNEG))  # multiplies the sum below; only steers how much semantics move the geometry (the
    # features, decoder and codebook have Adam optimizers of their own, insensitive to this scale)
    cos_weight: float = dataclasses.field(default=1.0, metadata=ranged(NONNEG))
    ce_weight: float = dataclasses.field(default=0.1, metadata=ranged(NONNEG))
    entropy_weight: float = dataclasses.field(default=0.1, metadata=ranged(NONNEG))
    tau: float = dataclasses.field(default=10.0, metadata=ranged(POSITIVE))  # entropy-loss temperature (GOI's tau)
    num_pixels: int = dataclasses.field(default=4096, metadata=ranged(Int(1)))  # pixels decoded per step
    start_step: int = dataclasses.field(default=0, metadata=steps(Int(0)))  # no semantic loss before this step
    relevancy_tau: float = dataclasses.field(default=10.0, metadata=ranged(POSITIVE))  # LERF relevancy temperature (queries, heatmaps)
    mask_tau: float = dataclasses.field(default=20.0, metadata=ranged(POSITIVE))  # query masks: entries within ln2 / mask_tau (cosine) of the best match count
    active_min_usage: float = dataclasses.field(default=1e-3, metadata=ranged(NONNEG))  # entries nearest to fewer 2D pixels than this are ignored by queries
    seed: int = dataclasses.field(default=0, metadata=ranged(Int(0)))

    @classmethod
    def from_dict(cls, d: Optional[Dict[str, Any]]) -> "SemanticConfig":
        cfg = build_dataclass(cls, dict(d or {}), "semantic")
        check_ranges(cfg, "semantic.")
        if cfg.codebook_init not in CODEBOOK_INITS:
            raise GsVqError(f"semantic codebook_init must be one of {CODEBOOK_INITS}, got {cfg.codebook_init}")
        return cfg


def add_feature_param(splats: torch.nn.ParameterDict, optimizers: Dict[str, torch.optim.Optimizer], dim: int,
                      lr: float, init_std: float = 0.1, seed: int = 0) -> None:
    """Add ``features [N, dim]`` (N(0, init_std)) and its Adam optimizer, or check an existing one.

    An existing ``features`` (resumed / started from a semantic model) must have ``dim`` channels;
    its optimizer is created if missing and its learning rate set to ``lr``.
    """
    if "features" in splats:
        if splats["features"].shape[1] != dim:
            raise GsVqError(f"the model's features have {splats['features'].shape[1]} channels, "
                            f"the semantic config asks for {dim}")
    else:
        means = splats["means"]
        g = torch.Generator().manual_seed(seed)
        init = torch.randn(means.shape[0], dim, generator=g) * init_std  # [N, F]
        splats["features"] = torch.nn.Parameter(init.to(means.device))
    if "features" not in optimizers:
        optimizers["features"] = torch.optim.Adam([{"params": splats["features"], "lr": lr, "name": "features"}],
                                                  eps=1e-15)
    for group in optimizers["features"].param_groups:
        group["lr"] = lr


def sample_views(maps: FeatureMaps, per_view: int, seed: int = 0):
    """``[min(per_view, h*w), D]`` random pixels of each map (float32), for k-means and usage."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for name in sorted(maps.maps):
        flat = maps[name].reshape(-1, maps.dim)  # [h*w, D]
        idx = torch.randperm(flat.shape[0], generator=g)[:per_view]
        out.append(flat[idx])
    return out


def ensure_features(cfg: SemanticConfig, scene, resolution: int = 1) -> FeatureMaps:
    """The train views' 2D maps from ``cfg.features_dir`` (default: the scene's folder in the gs_vq
    cache); label maps are computed there first when it has none and the scene has masks + labels.json."""
    tag = "labels" if cfg.map_downscale == 4 else f"labels_d{cfg.map_downscale}"  # one folder per map size
    folder = cfg.features_dir or default_features_dir(scene.source_path, tag)
    if not os.path.isfile(os.path.join(folder, "meta.json")):
        has_masks = bool(scene.train_cameras) and all(c.mask is not None for c in scene.train_cameras)
        if not (scene.labels and has_masks):
            read_meta(folder)  # raises the one-line "no feature maps" error
        print(f"[gs-vq] computing label feature maps (masks + labels.json, MiniLM) into {folder}")
        compute_label_features(scene, folder, downscale=max(1, cfg.map_downscale // max(1, resolution)))
    return load_features(folder, scene.train_cameras)
