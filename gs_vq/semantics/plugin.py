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

from ..errors import GsVqError
from ..plugins import Plugin, TrainContext
from .codebook import SemanticCodebook, entry_usage, semantic_losses
from .field_setup import SemanticConfig, add_feature_param, ensure_features, sample_views
from .labelfiles import label_model
from .labels import CONF_KEY, LABEL_KEY
from .head import HEAD_NAME, SemanticHead
from .sampling import sample_view
from .state import SemanticState


@dataclass
class SemanticField(SemanticConfig, Plugin):
    """Semantic training plugin (see module doc); its fields are :class:`SemanticConfig`'s.

    After :meth:`initialize` it holds ``state`` (:class:`SemanticState`: the train views' 2D
    feature maps, the codebook and its optimizer, the pixel generator, the latest losses).
    """

    outputs = (HEAD_NAME,)
    export_order = 1  # labels go into the files the other plugins wrote
    derived = (LABEL_KEY, CONF_KEY)

    name = "semantic"
    order = -1  # adds the features parameter, which the VQ plugin may quantize

    def __post_init__(self):
        self.state: Optional[SemanticState] = None  # set by initialize()

    def initialize(self, splats, optimizers: Dict[str, torch.optim.Optimizer], ctx: TrainContext) -> None:
        """Load (or make, from masks + labels.json) the 2D maps of ``ctx.scene``'s train views, add
        the ``features`` parameter, and initialise the codebook (k-means, random, or lifted from the
        RGB model: ``codebook_init: lift``)."""
        if ctx.scene is None:
            raise GsVqError("the semantic plugin needs the scene (its 2D feature maps)")
        device = str(splats["means"].device)
        maps = ensure_features(self, ctx.scene, ctx.resolution)
        if self.codebook_init == "lift" and "features" not in splats:  # training-free field as the start
            from .lift import init_from_lift

            codebook = init_from_lift(self, maps, ctx.scene, splats, optimizers)
        else:
            add_feature_param(splats, optimizers, self.feature_dim, self.features_lr, self.features_init_std,
                              self.seed)
            with torch.random.fork_rng(devices=[]):  # the decoder's initial weights depend on seed only
                torch.manual_seed(self.seed)
                codebook = SemanticCodebook(self.feature_dim, self.num_codes, maps.dim, self.decoder,
                                            self.decoder_hidden)
            if self.codebook_init != "random":  # kmeans (lift on resume: the checkpoint restores it)
                codebook.init_kmeans(sample_views(maps, self.kmeans_samples, self.seed), self.kmeans_per_view,
                                     self.seed)
            else:
                codebook.init_random(self.seed)
        codebook = codebook.to(device)
        optimizer = torch.optim.Adam([
            {"params": codebook.decoder.parameters(), "lr": self.decoder_lr, "name": "decoder"},
            {"params": [codebook.codes], "lr": self.codebook_lr, "name": "codes"},
        ])
        generator = torch.Generator().manual_seed(self.seed)  # on CPU, whatever the device
        self.state = SemanticState(maps, codebook, optimizer, generator, device,
                                   train_cameras=ctx.scene.train_cameras, backend=ctx.backend)

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
        st = self.state
        ys = torch.randint(0, H, (P,), generator=st.generator)  # [P], on the CPU like the maps
        xs = torch.randint(0, W, (P,), generator=st.generator)  # [P]
        feats = extra[0, ys.to(extra.device), xs.to(extra.device)]  # [P, F]
        # only the sampled pixels of the float16 map are converted and sent to the device
        targets = sample_view(st.maps, cam.name, ys, xs, H, W).to(extra.device)  # [P, D]
        weights = {"cos": self.cos_weight, "ce": self.ce_weight, "entropy": self.entropy_weight}
        losses = semantic_losses(st.codebook, feats, targets, self.tau, [k for k, w in weights.items() if w > 0])
        st.last = {k: float(v.detach()) for k, v in losses.items()}
        return self.weight * sum(weights[k] * v for k, v in losses.items())

    def step_post_backward(self, step: int, splats, optimizers, info) -> None:
        """Step the decoder/codebook optimizer (the features have theirs in ``optimizers``)."""
        self.state.optimizer.step()
        self.state.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> Dict[str, Any]:
        """:meth:`SemanticState.to_dict` (codebook, optimizer and generator states)."""
        return self.state.to_dict()

    def load_state_dict(self, d: Dict[str, Any]) -> None:
        """Restore after :meth:`initialize` (:meth:`SemanticState.load_dict`)."""
        if self.state is None:
            raise GsVqError("SemanticField.load_state_dict: call initialize(splats, ...) first")
        self.state.load_dict(d)

    # ---- outputs ----------------------------------------------------------------------------
    def head(self) -> SemanticHead:
        """The query head: codebook + encoder + entries the training views use."""
        st = self.state
        usage = entry_usage(st.codebook, sample_views(st.maps, self.kmeans_samples, self.seed))  # [K]
        active = usage >= self.active_min_usage  # [K] bool
        return SemanticHead(st.codebook, st.maps.encoder, active.to(st.codebook.codes.device),
                            self.relevancy_tau, self.mask_tau, texts=tuple(st.maps.meta.get("texts", ())))

    def export(self, model_dir: str, splats=None) -> Dict[str, Any]:
        """Write ``MODEL/semantic_head.pt``, then per-Gaussian labels into the model's
        ``point_cloud.ply`` and ``compressed.ply`` (after every other plugin's export:
        :attr:`export_order`); returns their sizes."""
        out: Dict[str, Any] = {"semantic_head_bytes": self.head().save(os.path.join(model_dir, HEAD_NAME))}
        if self.state.train_cameras:
            out["labels"] = label_model(model_dir, self.state.train_cameras, backend=self.state.backend)
        return out
