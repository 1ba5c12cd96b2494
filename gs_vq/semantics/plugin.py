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

import os
from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch
from torch import Tensor

from ..devices import rng_state, set_rng_state
from ..errors import GsVqError
from ..plugins import Plugin, TrainContext
from .codebook import SemanticCodebook, entry_usage, semantic_losses
from .field_setup import SemanticConfig, add_feature_param, ensure_features, sample_views
from .labelfiles import label_model
from .labels import CONF_KEY, LABEL_KEY
from .head import HEAD_NAME, SemanticHead
from .sampling import sample_view


@dataclass
class SemanticField(SemanticConfig, Plugin):
    """Semantic training plugin (see module doc); its fields are :class:`SemanticConfig`'s.

    After :meth:`initialize`: ``maps`` (the train views' 2D feature maps), ``codebook``
    (:class:`SemanticCodebook`), ``optimizer`` (decoder + codebook Adam), ``generator`` (pixel
    sampling), ``last`` (the latest step's losses).
    """

    outputs = (HEAD_NAME,)
    export_order = 1  # labels go into the files the other plugins wrote
    derived = (LABEL_KEY, CONF_KEY)

    name = "semantic"
    order = -1  # adds the features parameter, which the VQ plugin may quantize

    def initialize(self, splats, optimizers: Dict[str, torch.optim.Optimizer], ctx: TrainContext) -> None:
        """Load (or make, from masks + labels.json) the 2D maps of ``ctx.scene``'s train views, add
        the ``features`` parameter, and initialise the codebook (k-means, random, or lifted from the
        RGB model: ``codebook_init: lift``)."""
        if ctx.scene is None:
            raise GsVqError("the semantic plugin needs the scene (its 2D feature maps)")
        self.device = str(splats["means"].device)
        self._cameras, self._backend = ctx.scene.train_cameras, ctx.backend  # labels at export
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

    def export(self, model_dir: str, splats=None) -> Dict[str, Any]:
        """Write ``MODEL/semantic_head.pt``, then per-Gaussian labels into the model's
        ``point_cloud.ply`` and ``compressed.ply`` (after every other plugin's export:
        :attr:`export_order`); returns their sizes."""
        out: Dict[str, Any] = {"semantic_head_bytes": self.head().save(os.path.join(model_dir, HEAD_NAME))}
        if self._cameras:
            out["labels"] = label_model(model_dir, self._cameras, backend=self._backend)
        return out
