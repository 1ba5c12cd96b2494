"""Dense 2D CLIP feature maps from an image (the image side of the open_clip feature source).

Two ways, as the language-field papers do:

- ``patch`` (ViT towers, LEGaussians/MaskCLIP-like): one forward pass of the whole image at the
  tower's input size; the last block's patch tokens go through the tower's final LayerNorm and
  projection (what the class token gets), giving a ``grid x grid`` map of CLIP-space vectors.
- ``crops`` (any tower, LERF-like): square crops at several scales on a half-overlapping grid,
  each embedded as a whole image; every pixel takes, per scale, the embedding interpolated from
  the crop centres around it, averaged over scales.

Both return unit vectors resampled (bilinear) to the requested map size.
"""

import math
from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import GsVqError
from .clip_model import ClipBundle

DENSE_MODES = ("patch", "crops")


def _resample(grid: Tensor, size: Tuple[int, int]) -> Tensor:
    """``grid [gh, gw, E]`` -> ``[h, w, E]`` unit vectors (bilinear, pixel-centre aligned)."""
    x = F.interpolate(grid.permute(2, 0, 1)[None], size=size, mode="bilinear", align_corners=False)
    return F.normalize(x[0].permute(1, 2, 0), dim=-1)


@torch.no_grad()
def patch_features(bundle: ClipBundle, image: Tensor, size: Tuple[int, int]) -> Tensor:
    """ViT patch tokens in CLIP space. ``image [H, W, 3]`` in [0, 1] -> ``[h, w, E]`` (``size=(h, w)``)."""
    visual = bundle.model.visual
    if not hasattr(visual, "forward_intermediates") or getattr(visual, "proj", None) is None \
            or getattr(visual, "attn_pool", None) is not None:
        raise GsVqError("--clip-mode patch needs a ViT vision tower with a projection: use --clip-mode crops")
    device = next(bundle.model.parameters()).device
    x = bundle.preprocess(image[None].to(device))  # [1, 3, S, S]
    out = visual.forward_intermediates(x, indices=1, normalize_intermediates=True, intermediates_only=True,
                                       output_fmt="NLC")
    tokens = out["image_intermediates"][-1][0]  # [gh * gw, width], after ln_post
    gh, gw = (s // p for s, p in zip(bundle.image_size, visual.patch_size))
    feats = (tokens @ visual.proj).reshape(gh, gw, -1)  # [gh, gw, E]
    return _resample(feats.float().cpu(), size)


def crop_boxes(height: int, width: int, scale: float) -> Tuple[List[Tuple[int, int, int]], int, int]:
    """Square crops of side ``scale * min(H, W)`` (pixels) on a grid with stride half a side.

    Returns ``([(top, left, side)] row-major, rows, cols)``; the last row/column touch the border.
    """
    side = max(8, int(round(scale * min(height, width))))
    side = min(side, height, width)
    stride = max(1, side // 2)
    rows = max(1, math.ceil((height - side) / stride) + 1)
    cols = max(1, math.ceil((width - side) / stride) + 1)
    tops = [min(i * stride, height - side) for i in range(rows)]
    lefts = [min(j * stride, width - side) for j in range(cols)]
    return [(t, l, side) for t in tops for l in lefts], rows, cols


@torch.no_grad()
def crop_features(bundle: ClipBundle, image: Tensor, size: Tuple[int, int],
                  scales: Sequence[float] = (0.25, 0.5, 1.0), batch: int = 32) -> Tensor:
    """Multi-scale crop embeddings. ``image [H, W, 3]`` in [0, 1] -> ``[h, w, E]`` unit vectors."""
    H, W = image.shape[:2]
    device = next(bundle.model.parameters()).device
    total = None
    for scale in scales:
        boxes, rows, cols = crop_boxes(H, W, scale)
        embeds = []
        for i in range(0, len(boxes), batch):
            crops = torch.stack([image[t:t + s, l:l + s] for t, l, s in boxes[i:i + batch]])  # [b, s, s, 3]
            embeds.append(bundle.model.encode_image(bundle.preprocess(crops.to(device))).float().cpu())
        grid = F.normalize(torch.cat(embeds), dim=-1).reshape(rows, cols, -1)  # [rows, cols, E]
        # sample the crop-centre grid at every output pixel centre (clamped at the outer centres)
        side = boxes[0][2]
        cy = torch.tensor([t + side / 2 for t, _, _ in boxes[::cols]])  # [rows] pixels
        cx = torch.tensor([l + side / 2 for _, l, _ in boxes[:cols]])  # [cols] pixels
        py = (torch.arange(size[0]) + 0.5) * H / size[0]  # [h] output pixel centres, image pixels
        px = (torch.arange(size[1]) + 0.5) * W / size[1]  # [w]
        gy = _to_grid_coord(py, cy)
        gx = _to_grid_coord(px, cx)
        coords = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None]  # [1, h, w, 2] (x, y)
        sampled = F.grid_sample(grid.permute(2, 0, 1)[None], coords, mode="bilinear", align_corners=True)
        sampled = sampled[0].permute(1, 2, 0)  # [h, w, E]
        total = sampled if total is None else total + sampled
    return F.normalize(total, dim=-1)


def _to_grid_coord(p: Tensor, centres: Tensor) -> Tensor:
    """Pixel positions ``p`` -> grid_sample coordinates in [-1, 1] over ``centres`` (align_corners)."""
    if len(centres) == 1:
        return torch.zeros_like(p)
    idx = torch.from_numpy(np.interp(p.numpy(), centres.numpy(), np.arange(len(centres))))
    return (idx.float() / (len(centres) - 1)) * 2 - 1


def dense_features(bundle: ClipBundle, image: Tensor, size: Tuple[int, int], mode: str = "patch") -> Tensor:
    """``image [H, W, 3]`` -> ``[h, w, E]`` CLIP-space unit vectors, by ``mode`` (patch | crops)."""
    if mode == "patch":
        return patch_features(bundle, image, size)
    if mode == "crops":
        return crop_features(bundle, image, size)
    raise GsVqError(f"--clip-mode must be one of {', '.join(DENSE_MODES)}, got {mode}")
