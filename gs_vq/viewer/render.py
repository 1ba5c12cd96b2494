"""The viewer's render function: a camera pose and an image size in, an RGB uint8 image out.

Renders through :func:`gs_vq.splats.render_splats` (so :func:`gs_vq.render.rasterize`: gsplat
on CUDA, our CPU rasterizer otherwise). Modes:

- ``rgb``: the splats' colours on the scene's background;
- ``pca`` (semantic models): the decoded feature map coloured by the codebook's first 3 PCA axes;
- ``heatmap`` / ``mask`` (semantic models, with a query): the query's pixel score (weighted by
  the pixel's coverage, so empty space stays unmarked), or its mask under the chosen rule and
  threshold, drawn over a dimmed grey copy of the render.

``ViewOptions.keep`` draws only some Gaussians: the place where per-Gaussian labels (a query's
selected Gaussians) plug in.
"""

import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from ..errors import GsVqError
from ..semantics.scoring import DEFAULT_MASK_RULE
from ..splats import render_splats
from .model import ViewerModel

MODES = ("rgb", "pca", "heatmap", "mask")


@dataclass
class ViewOptions:
    """How to draw a frame (the panel's state)."""

    mode: str = "rgb"
    query: str = ""  # text of the query for the heatmap / mask modes
    rule: str = DEFAULT_MASK_RULE  # mask rule (gs_vq.semantics.scoring.MASK_RULES)
    threshold: float = 0.5  # mask threshold on the [0, 1] pixel score
    keep: Optional[Tensor] = None  # [N] bool: draw only these Gaussians (None: all)
    backend: str = "auto"


def camera_matrices(c2w: np.ndarray, fov_y: float, width: int, height: int, device: str) -> Tuple[Tensor, Tensor]:
    """Camera-to-world ``[4, 4]`` (OpenCV axes) and vertical fov (radians) -> ``viewmats [1, 4, 4]``
    and ``Ks [1, 3, 3]`` for a ``width`` x ``height`` image (square pixels, centred principal point)."""
    if not 0.0 < fov_y < math.pi:
        raise GsVqError(f"field of view must be in (0, pi) radians, got {fov_y}")
    viewmat = torch.linalg.inv(torch.as_tensor(np.asarray(c2w), dtype=torch.float64)).float()  # [4, 4]
    focal = 0.5 * height / math.tan(0.5 * fov_y)
    K = torch.tensor([[focal, 0.0, 0.5 * width], [0.0, focal, 0.5 * height], [0.0, 0.0, 1.0]])
    return viewmat[None].to(device), K[None].to(device)


def select(splats: Dict[str, Tensor], keep: Optional[Tensor]) -> Dict[str, Tensor]:
    """The Gaussians where ``keep [N]`` is true (all of them for None)."""
    if keep is None:
        return splats
    if keep.dtype != torch.bool or keep.shape != splats["means"].shape[:1]:
        raise GsVqError(f"selection must be [N] bool for {splats['means'].shape[0]} Gaussians, got "
                        f"{tuple(keep.shape)} {keep.dtype}")
    return {k: v[keep.to(v.device)] for k, v in splats.items()}


class ViewRenderer:
    """Renders frames of one :class:`ViewerModel`; caches the PCA basis and each query's entry scores."""

    def __init__(self, model: ViewerModel):
        self.model = model
        self._pca = None
        self._scores: Dict[Tuple[str, str], Tensor] = {}

    def query_scores(self, text: str, rule: str) -> Tensor:
        """``[K]`` entry scores of ``text`` under ``rule`` (the text encoder runs once per text and rule)."""
        head = self.model.head
        if head is None:
            raise GsVqError("this model has no semantic head: text queries need a model trained with --semantic")
        key = (text.strip(), rule)
        if key not in self._scores:
            self._scores[key] = head.entry_scores([key[0]], rule)[0].to(self.model.device)
        return self._scores[key]

    def pca_basis(self):
        if self._pca is None:
            from ..semantics.visualize import pca_basis

            head = self.model.head
            self._pca = pca_basis(head.codebook.unit_codes().detach(), head.active)
        return self._pca

    @torch.no_grad()
    def render(self, c2w: np.ndarray, fov_y: float, width: int, height: int,
               opts: Optional[ViewOptions] = None) -> np.ndarray:
        """One frame: ``[height, width, 3]`` uint8."""
        opts = opts or ViewOptions()
        if opts.mode not in MODES:
            raise GsVqError(f"view mode must be one of {', '.join(MODES)}, got {opts.mode}")
        if width < 1 or height < 1:
            raise GsVqError(f"image size must be positive, got {width}x{height}")
        m = self.model
        splats = select(m.splats, opts.keep)
        viewmats, Ks = camera_matrices(c2w, fov_y, width, height, m.device)
        semantic = opts.mode != "rgb" and m.semantic and (opts.mode == "pca" or opts.query.strip())
        if not semantic:
            out = render_splats(splats, viewmats, Ks, width, height, m.sh_degree, m.background,
                                backend=opts.backend)
            return to_uint8(out.rgb[0])
        out = render_splats(splats, viewmats, Ks, width, height, m.sh_degree, m.background,
                            extra=splats["features"], backend=opts.backend)
        rgb = out.rgb[0].clamp(0, 1)  # [H, W, 3]
        weights = m.head.weights(out.extra[0])  # [H, W, K]
        if opts.mode == "pca":
            from ..semantics.visualize import pca_colors

            return to_uint8(pca_colors(weights, m.head.codebook.unit_codes().detach(), self.pca_basis()))
        from ..semantics.scoring import pixel_scores
        from ..semantics.visualize import overlay

        # empty pixels decode a zero feature into an arbitrary mix of entries: weigh by coverage
        score = pixel_scores(weights, self.query_scores(opts.query, opts.rule), opts.rule) * out.alpha[0, ..., 0]
        return to_uint8(overlay(rgb, score if opts.mode == "heatmap" else (score > opts.threshold).float()))


def to_uint8(img: Tensor) -> np.ndarray:
    """``[H, W, 3]`` float in [0, 1] -> contiguous uint8 numpy array."""
    return (img.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
