"""Shared helpers for the semantic tests (no tests here): a tiny labelled scene built from
Gaussians (masks rendered from the Gaussians themselves, so they agree with the geometry), a
deterministic bag-of-words text encoder, and a features-only training loop."""

import hashlib
import math
from types import SimpleNamespace
from typing import Dict, List

import torch
import torch.nn.functional as F

from gs_vq.data import Camera
from gs_vq.render import rasterize
from gs_vq.render.synthetic import look_at_viewmat
from gs_vq.semantics.encoders import EncoderSpec
from gs_vq.splats import make_param_dict, render_splats, rgb_to_sh

LABELS = {"0": "background", "1": "red apple", "2": "blue coffee mug", "3": "wooden box",
          "queries": [{"text": "fruit", "ids": [1]}]}
CENTRES = {1: (-0.7, 0.0, 0.0), 2: (0.7, 0.0, 0.0), 3: (0.0, -0.7, 0.2)}
COLOURS = {0: (0.5, 0.5, 0.5), 1: (0.9, 0.1, 0.1), 2: (0.1, 0.2, 0.9), 3: (0.6, 0.4, 0.2)}


class BagOfWordsEncoder:
    """Deterministic stand-in text encoder: the normalised sum of a fixed random vector per word."""

    def __init__(self, dim: int = 32):
        self.dim = dim
        self.spec = EncoderSpec("minilm", "test-bag-of-words", dim)

    def _word(self, w: str) -> torch.Tensor:
        seed = int(hashlib.sha1(w.lower().encode()).hexdigest()[:8], 16)
        return torch.randn(self.dim, generator=torch.Generator().manual_seed(seed))

    def encode(self, texts) -> torch.Tensor:
        return F.normalize(torch.stack([sum(self._word(w) for w in t.split()) for t in texts]), dim=-1)


def tiny_gaussians(seed: int = 0) -> Dict[str, torch.Tensor]:
    """Raw splats: three blobs (ids 1-3) in front of a backdrop plane (id 0), plus ``ids [N]``."""
    g = torch.Generator().manual_seed(seed)
    means, ids = [], []
    for oid, c in CENTRES.items():
        means.append(torch.tensor(c) + 0.15 * torch.randn(120, 3, generator=g))
        ids += [oid] * 120
    u, v = torch.meshgrid(torch.linspace(-2.2, 2.2, 16), torch.linspace(-2.2, 2.2, 16), indexing="ij")
    means.append(torch.stack([u.flatten(), v.flatten(), torch.full((256,), -1.0)], dim=-1))  # plane z = -1
    ids += [0] * 256
    means = torch.cat(means)
    ids = torch.tensor(ids)
    N = len(ids)
    scales = torch.where(ids[:, None] == 0, math.log(0.2), math.log(0.07)).expand(N, 3).clone()
    rgb = torch.tensor([COLOURS[int(i)] for i in ids])
    return {"means": means, "scales": scales, "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(N, 1),
            "opacities": torch.full((N,), 3.0), "sh0": rgb_to_sh(rgb)[:, None], "shN": torch.zeros(N, 0, 3),
            "ids": ids}


def tiny_scene(n_views: int = 4, size: int = 32, seed: int = 0):
    """A Scene-like namespace of ``n_views`` cameras above the blobs, masks rendered from the ids."""
    gs = tiny_gaussians(seed)
    splats = {k: v for k, v in gs.items() if k != "ids"}
    onehot = F.one_hot(gs["ids"], 4).float()  # [N, 4]
    cams: List[Camera] = []
    for i in range(n_views):
        a = 2 * math.pi * i / n_views
        eye = torch.tensor([0.8 * math.cos(a), 0.8 * math.sin(a), 3.5])
        viewmat = look_at_viewmat(eye, torch.zeros(3))
        K = torch.tensor([[1.1 * size, 0, size / 2], [0, 1.1 * size, size / 2], [0, 0, 1.0]])
        common = dict(means=splats["means"], quats=splats["quats"], scales=splats["scales"].exp(),
                      opacities=torch.sigmoid(splats["opacities"]), viewmats=viewmat[None], Ks=K[None],
                      width=size, height=size, sh_degree=None)
        lab, alpha, _ = rasterize(colors=onehot, **common)
        mask = torch.where(alpha[0, ..., 0] > 0.5, lab[0].argmax(-1), torch.zeros((), dtype=torch.long))
        rgb, _, _ = rasterize(colors=torch.tensor([COLOURS[int(j)] for j in gs["ids"]]), **common)
        cams.append(Camera(f"train/v{i}", rgb[0].clamp(0, 1), viewmat, K, size, size, mask=mask))
    return SimpleNamespace(train_cameras=cams, test_cameras=cams, labels=LABELS, source_path="", kind="blender",
                           splats=splats)


def train_features(scene, plugin, steps: int = 150) -> torch.nn.ParameterDict:
    """Fit only the semantic features + codebook of ``plugin`` (geometry and colours fixed)."""
    splats = plugin_splats = scene.param_dict
    cams = scene.train_cameras
    for step in range(steps):
        cam = cams[step % len(cams)]
        extra = plugin.extra_channels(plugin_splats)
        out = render_splats(splats, cam.viewmat[None], cam.K[None], cam.width, cam.height, 0, [0, 0, 0], extra=extra)
        loss = plugin.loss(step, splats, {"camera": cam}, out)
        loss.backward()
        scene.optimizers["features"].step()
        scene.optimizers["features"].zero_grad(set_to_none=True)
        plugin.step_post_backward(step, splats, scene.optimizers, out.info)
    return splats


def labelled_scene(folder: str, downscale: int, n_views: int = 4, size: int = 32):
    """A tiny scene and its bag-of-words label maps written to ``folder``: ``(scene, encoder)``."""
    from gs_vq.semantics.features import compute_label_features

    scene = tiny_scene(n_views=n_views, size=size)
    enc = BagOfWordsEncoder()
    compute_label_features(scene, folder, downscale=downscale, encoder=enc)
    return scene, enc


def semantic_field(options, scene, splats, optimizers, resolution=1):
    """A :class:`SemanticField` from a ``semantic:`` mapping, initialised on ``scene``'s views."""
    from gs_vq.plugins import TrainContext
    from gs_vq.semantics.plugin import SemanticField

    field = SemanticField.from_dict(options)
    field.initialize(splats, optimizers, TrainContext(scene=scene, resolution=resolution))
    return field


def frozen_params(scene):
    """The scene's splats as a ParameterDict (geometry/colour not optimised) and an empty optimizer dict."""
    scene.param_dict = make_param_dict(scene.splats, "cpu")
    for k, p in scene.param_dict.items():
        p.requires_grad_(False)
    scene.optimizers = {}
    return scene.param_dict, scene.optimizers
