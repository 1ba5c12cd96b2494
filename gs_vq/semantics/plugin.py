"""The semantic training plugin: per-Gaussian features rendered, decoded and fitted to 2D maps.

:class:`SemanticField` follows the plugin protocol of ARCHITECTURE.md. It adds a ``features [N, F]``
parameter with its own Adam optimizer to the splats (so gsplat's densification duplicates, splits
and prunes it like any other attribute), returns it from :meth:`~SemanticField.extra_channels` so
the trainer rasterizes it after RGB, and in :meth:`~SemanticField.loss` decodes ``num_pixels``
random pixels of the rendered map against the view's 2D feature map (looked up by camera name).
It owns the codebook/decoder optimizer and steps it in ``step_post_backward``.

Semantics only, on top of a finished RGB model (GOI): ``--start_checkpoint MODEL/ckpt.pt`` with
``configs/semantic_only.yaml`` (all RGB learning rates 0, no densification).
"""

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import check_keys
from ..errors import GsVqError
from .codebook import CODEBOOK_INITS, SemanticCodebook, semantic_losses
from .features import FeatureMaps, compute_label_features, default_features_dir, load_features, read_meta
from .query import HEAD_NAME, SemanticHead, entry_usage


@dataclass
class SemanticConfig:
    """The ``semantic:`` section of a training config. Units: steps, pixels."""

    features_dir: Optional[str] = None  # 2D maps; default in the gs_vq cache (label maps made there if absent)
    map_downscale: int = 4  # label maps made on demand are (full-resolution size) / this
    feature_dim: int = 8  # F: channels per Gaussian
    num_codes: int = 64  # K: codebook entries
    decoder: str = "linear"  # linear | mlp
    decoder_hidden: int = 64
    codebook_init: str = "kmeans"  # kmeans | random | lift (training-free field; on a finished model)
    kmeans_per_view: int = 16  # first-level centroids per view
    kmeans_samples: int = 2048  # 2D feature pixels sampled per view for the k-means
    features_lr: float = 5e-3
    features_init_std: float = 0.1
    decoder_lr: float = 5e-3
    codebook_lr: float = 1e-3
    weight: float = 0.1  # multiplies the sum below; only steers how much semantics move the geometry (the
    # features, decoder and codebook have Adam optimizers of their own, insensitive to this scale)
    cos_weight: float = 1.0
    ce_weight: float = 0.1
    entropy_weight: float = 0.1
    tau: float = 10.0  # entropy-loss temperature (GOI's tau)
    num_pixels: int = 4096  # pixels decoded per step
    start_step: int = 0  # no semantic loss before this step
    relevancy_tau: float = 10.0  # LERF relevancy temperature (queries, heatmaps)
    mask_tau: float = 20.0  # query masks: entries within ln2 / mask_tau (cosine) of the best match count
    active_min_usage: float = 1e-3  # entries nearest to fewer 2D pixels than this are ignored by queries
    seed: int = 0

    @classmethod
    def from_dict(cls, d: Optional[Dict[str, Any]]) -> "SemanticConfig":
        d = dict(d or {})
        check_keys(cls, d, "semantic")
        cfg = cls(**d)
        if cfg.codebook_init not in CODEBOOK_INITS:
            raise GsVqError(f"semantic codebook_init must be one of {CODEBOOK_INITS}, got {cfg.codebook_init}")
        if not 1 <= cfg.feature_dim <= 64 or cfg.num_codes < 2 or cfg.num_pixels < 1:
            raise GsVqError(f"bad semantic sizes: feature_dim={cfg.feature_dim}, num_codes={cfg.num_codes}, "
                            f"num_pixels={cfg.num_pixels}")
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


def sample_targets(fmap: Tensor, ys: Tensor, xs: Tensor, height: int, width: int, mode: str) -> Tensor:
    """2D features at image pixels ``(ys, xs)`` (``[P]`` each) of an ``height x width`` image from
    ``fmap [h, w, D]`` (pixel-centre aligned, ``mode`` nearest | bilinear) -> ``[P, D]``."""
    gx = (xs.float() + 0.5) / width * 2 - 1
    gy = (ys.float() + 0.5) / height * 2 - 1
    grid = torch.stack([gx, gy], dim=-1)[None, None]  # [1, 1, P, 2]
    out = F.grid_sample(fmap.permute(2, 0, 1)[None], grid.to(fmap.device), mode=mode, align_corners=False,
                        padding_mode="border")  # [1, D, 1, P]
    return out[0, :, 0].T  # [P, D]


class SemanticField:
    """Semantic training plugin (see module doc). Build it with :meth:`from_config`."""

    def __init__(self, cfg: SemanticConfig, maps: FeatureMaps, codebook: SemanticCodebook, device: str):
        self.cfg, self.maps, self.device = cfg, maps, device
        self.codebook = codebook.to(device)
        self.optimizer = torch.optim.Adam([
            {"params": self.codebook.decoder.parameters(), "lr": cfg.decoder_lr, "name": "decoder"},
            {"params": [self.codebook.codes], "lr": cfg.codebook_lr, "name": "codes"},
        ])
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.last: Dict[str, float] = {}  # the latest step's losses, for logs

    @classmethod
    def from_config(cls, cfg_dict: Optional[Dict[str, Any]], scene, splats: torch.nn.ParameterDict,
                    optimizers: Dict[str, torch.optim.Optimizer], train_cfg=None, device: str = "cpu") -> "SemanticField":
        """Load (or make, from masks + labels.json) the 2D maps of ``scene``'s train views, add the
        ``features`` parameter, and initialise the codebook (k-means or random)."""
        cfg = SemanticConfig.from_dict(cfg_dict)
        maps = ensure_features(cfg, scene, getattr(train_cfg, "resolution", 1))
        if cfg.codebook_init == "lift" and "features" not in splats:  # training-free field as the start
            from .lift import init_from_lift

            return cls(cfg, maps, init_from_lift(cfg, maps, scene, splats, optimizers), device)
        add_feature_param(splats, optimizers, cfg.feature_dim, cfg.features_lr, cfg.features_init_std, cfg.seed)
        with torch.random.fork_rng(devices=[]):  # the decoder's initial weights depend on cfg.seed only
            torch.manual_seed(cfg.seed)
            codebook = SemanticCodebook(cfg.feature_dim, cfg.num_codes, maps.dim, cfg.decoder, cfg.decoder_hidden)
        if cfg.codebook_init != "random":  # kmeans (lift on resume: the checkpoint restores it)
            codebook.init_kmeans(sample_views(maps, cfg.kmeans_samples, cfg.seed), cfg.kmeans_per_view, cfg.seed)
        else:
            codebook.init_random(cfg.seed)
        return cls(cfg, maps, codebook, device)

    # ---- plugin hooks -----------------------------------------------------------------------
    def extra_channels(self, step: int, splats) -> Optional[Tensor]:
        """``splats["features"] [N, F]``: rendered after RGB."""
        return splats["features"]

    def loss(self, step: int, batch: Dict[str, Any], render) -> Optional[Tensor]:
        """Semantic loss of one view: ``batch["camera"]`` names its 2D map; ``render`` has ``extra``
        ``[1, H, W, F]`` (a dict or the trainer's RenderOutput)."""
        if step < self.cfg.start_step:
            return None
        extra = render["extra"] if isinstance(render, dict) else render.extra
        if extra is None:
            raise GsVqError("the semantic plugin got no rendered features (extra channels)")
        cam = batch["camera"]
        H, W = extra.shape[1:3]
        P = self.cfg.num_pixels
        ys = torch.randint(0, H, (P,), generator=self.generator).to(extra.device)
        xs = torch.randint(0, W, (P,), generator=self.generator).to(extra.device)
        feats = extra[0, ys, xs]  # [P, F]
        targets = sample_targets(self.maps[cam.name].to(extra.device), ys, xs, H, W, self.maps.interp)  # [P, D]
        c = self.cfg
        weights = {"cos": c.cos_weight, "ce": c.ce_weight, "entropy": c.entropy_weight}
        losses = semantic_losses(self.codebook, feats, targets, c.tau, [k for k, w in weights.items() if w > 0])
        self.last = {k: float(v.detach()) for k, v in losses.items()}
        return c.weight * sum(weights[k] * v for k, v in losses.items())

    def step_post_backward(self, step: int, splats, optimizers, info) -> None:
        """Step the decoder/codebook optimizer (the features have theirs in ``optimizers``)."""
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> Dict[str, Any]:
        return {"config": dataclasses.asdict(self.cfg), "codebook": self.codebook.state_dict(),
                "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, d: Dict[str, Any]) -> None:
        self.codebook.load_state_dict(d["codebook"])
        self.optimizer.load_state_dict(d["optimizer"])
        if "generator" in d:
            self.generator.set_state(d["generator"])

    # ---- outputs ----------------------------------------------------------------------------
    def head(self) -> SemanticHead:
        """The query head: codebook + encoder + entries the training views use."""
        usage = entry_usage(self.codebook, sample_views(self.maps, self.cfg.kmeans_samples, self.cfg.seed))
        active = usage >= self.cfg.active_min_usage
        return SemanticHead(self.codebook, self.maps.encoder, active.to(self.codebook.codes.device),
                            self.cfg.relevancy_tau, self.cfg.mask_tau)

    def export(self, model_path: str, splats=None) -> Dict[str, int]:
        """Write ``MODEL/semantic_head.pt``; returns ``{"semantic_head_bytes": size}``."""
        return {"semantic_head_bytes": self.head().save(os.path.join(model_path, HEAD_NAME))}


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
    folder = cfg.features_dir or default_features_dir(scene.source_path, "labels")
    if not os.path.isfile(os.path.join(folder, "meta.json")):
        has_masks = bool(scene.train_cameras) and all(c.mask is not None for c in scene.train_cameras)
        if not (scene.labels and has_masks):
            read_meta(folder)  # raises the one-line "no feature maps" error
        print(f"[gs-vq] computing label feature maps (masks + labels.json, MiniLM) into {folder}")
        compute_label_features(scene, folder, downscale=max(1, cfg.map_downscale // max(1, resolution)))
    return load_features(folder, scene.train_cameras)
