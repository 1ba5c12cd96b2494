"""The semantic training plugin: per-Gaussian features rendered, decoded and fitted to 2D maps.

:class:`SemanticField` is a :class:`gs_vq.plugins.Plugin` (the ``semantic:`` section). It adds a ``features [N, F]``
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

from ..config import STEPS, build_dataclass
from ..devices import rng_state, set_rng_state
from ..errors import GsVqError
from ..plugins import Plugin, TrainContext
from .codebook import CODEBOOK_INITS, SemanticCodebook, semantic_losses
from .features import FeatureMaps, compute_label_features, default_features_dir, load_features, read_meta
from .query import HEAD_NAME, SemanticHead, entry_usage
from .sampling import sample_view


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
    start_step: int = dataclasses.field(default=0, metadata=STEPS)  # no semantic loss before this step
    relevancy_tau: float = 10.0  # LERF relevancy temperature (queries, heatmaps)
    mask_tau: float = 20.0  # query masks: entries within ln2 / mask_tau (cosine) of the best match count
    active_min_usage: float = 1e-3  # entries nearest to fewer 2D pixels than this are ignored by queries
    seed: int = 0

    @classmethod
    def from_dict(cls, d: Optional[Dict[str, Any]]) -> "SemanticConfig":
        cfg = build_dataclass(cls, dict(d or {}), "semantic")
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


def sample_targets(fmap: Tensor, ys: Tensor, xs: Tensor, height: int, width: int, mode: str) -> Tensor:
    """2D features at image pixels ``(ys, xs)`` (``[P]`` each) of an ``height x width`` image from
    ``fmap [h, w, D]`` (pixel-centre aligned, ``mode`` nearest | bilinear) -> ``[P, D]``."""
    gx = (xs.float() + 0.5) / width * 2 - 1
    gy = (ys.float() + 0.5) / height * 2 - 1
    grid = torch.stack([gx, gy], dim=-1)[None, None]  # [1, 1, P, 2]
    out = F.grid_sample(fmap.permute(2, 0, 1)[None], grid.to(fmap.device), mode=mode, align_corners=False,
                        padding_mode="border")  # [1, D, 1, P]
    return out[0, :, 0].T  # [P, D]


@dataclass
class SemanticField(SemanticConfig, Plugin):
    """Semantic training plugin (see module doc); its fields are :class:`SemanticConfig`'s.

    After :meth:`initialize`: ``maps`` (the train views' 2D feature maps), ``codebook``
    (:class:`SemanticCodebook`), ``optimizer`` (decoder + codebook Adam), ``generator`` (pixel
    sampling), ``last`` (the latest step's losses).
    """

    name = "semantic"
    order = -1  # adds the features parameter, which the VQ plugin may quantize

    def initialize(self, splats, optimizers: Dict[str, torch.optim.Optimizer], ctx: TrainContext) -> None:
        """Load (or make, from masks + labels.json) the 2D maps of ``ctx.scene``'s train views, add
        the ``features`` parameter, and initialise the codebook (k-means, random, or lifted from the
        RGB model: ``codebook_init: lift``)."""
        if ctx.scene is None:
            raise GsVqError("the semantic plugin needs the scene (its 2D feature maps)")
        self.device = str(splats["means"].device)
        self.maps = ensure_features(self, ctx.scene, ctx.resolution)
        if self.codebook_init == "lift" and "features" not in splats:  # training-free field as the start
            from .lift import init_from_lift

            codebook = init_from_lift(self, self.maps, ctx.scene, splats, optimizers)
        else:
            add_feature_param(splats, optimizers, self.feature_dim, self.features_lr, self.features_init_std,
                              self.seed)
            with torch.random.fork_rng(devices=[]):  # the decoder's initial weights depend on seed only
                torch.manual_seed(self.seed)
                codebook = SemanticCodebook(self.feature_dim, self.num_codes, self.maps.dim, self.decoder,
                                            self.decoder_hidden)
            if self.codebook_init != "random":  # kmeans (lift on resume: the checkpoint restores it)
                codebook.init_kmeans(sample_views(self.maps, self.kmeans_samples, self.seed), self.kmeans_per_view,
                                     self.seed)
            else:
                codebook.init_random(self.seed)
        self.codebook = codebook.to(self.device)
        self.optimizer = torch.optim.Adam([
            {"params": self.codebook.decoder.parameters(), "lr": self.decoder_lr, "name": "decoder"},
            {"params": [self.codebook.codes], "lr": self.codebook_lr, "name": "codes"},
        ])
        self.generator = torch.Generator().manual_seed(self.seed)  # on CPU, whatever the device
        self.last: Dict[str, float] = {}

    # ---- plugin hooks -----------------------------------------------------------------------
    def extra_channels(self, splats) -> Optional[Tensor]:
        """``splats["features"] [N, F]``: rendered after RGB."""
        return splats["features"]

    def loss(self, step: int, splats, batch: Dict[str, Any], render) -> Optional[Tensor]:
        """Semantic loss of one view: ``batch["camera"]`` names its 2D map; ``render.extra`` is
        ``[1, H, W, F]``."""
        if step < self.start_step:
            return None
        extra = render["extra"] if isinstance(render, dict) else render.extra
        if extra is None:
            raise GsVqError("the semantic plugin got no rendered features (extra channels)")
        cam = batch["camera"]
        H, W = extra.shape[1:3]
        P = self.num_pixels
        ys = torch.randint(0, H, (P,), generator=self.generator)  # [P], on the CPU like the maps
        xs = torch.randint(0, W, (P,), generator=self.generator)  # [P]
        feats = extra[0, ys.to(extra.device), xs.to(extra.device)]  # [P, F]
        # only the sampled pixels of the float16 map are converted and sent to the device
        targets = sample_view(self.maps, cam.name, ys, xs, H, W).to(extra.device)  # [P, D]
        weights = {"cos": self.cos_weight, "ce": self.ce_weight, "entropy": self.entropy_weight}
        losses = semantic_losses(self.codebook, feats, targets, self.tau, [k for k, w in weights.items() if w > 0])
        self.last = {k: float(v.detach()) for k, v in losses.items()}
        return self.weight * sum(weights[k] * v for k, v in losses.items())

    def step_post_backward(self, step: int, splats, optimizers, info) -> None:
        """Step the decoder/codebook optimizer (the features have theirs in ``optimizers``)."""
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> Dict[str, Any]:
        return {"codebook": self.codebook.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": rng_state(self.generator)}

    def load_state_dict(self, d: Dict[str, Any]) -> None:
        self.codebook.load_state_dict(d["codebook"])
        self.optimizer.load_state_dict(d["optimizer"])
        if "generator" in d:
            set_rng_state(self.generator, d["generator"])  # a CPU generator, whatever map_location did

    # ---- outputs ----------------------------------------------------------------------------
    def head(self) -> SemanticHead:
        """The query head: codebook + encoder + entries the training views use."""
        usage = entry_usage(self.codebook, sample_views(self.maps, self.kmeans_samples, self.seed))
        active = usage >= self.active_min_usage
        return SemanticHead(self.codebook, self.maps.encoder, active.to(self.codebook.codes.device),
                            self.relevancy_tau, self.mask_tau, texts=tuple(self.maps.meta.get("texts", ())))

    def export(self, model_dir: str, splats=None) -> Dict[str, int]:
        """Write ``MODEL/semantic_head.pt``; returns ``{"semantic_head_bytes": size}``."""
        return {"semantic_head_bytes": self.head().save(os.path.join(model_dir, HEAD_NAME))}


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
