"""Bits per position axis chosen by the loss they measure on the training views.

A scene's position grid costs what its extent and layout make it cost: lego's 11-bit grid loses
0.02 dB, fern's 0.18 dB (uniform) or 0.07 dB (contracted). With ``vq.pos_max_drop`` > 0 the VQ
plugin, when it snaps the model, renders a subset of the training views with the positions
rounded to grids of ``pos_bits``, ``pos_bits - 1``, ... bits and keeps the coarsest grid whose
PSNR (against the training images) is at most ``pos_max_drop`` dB below that of the unrounded
positions; going the other way, it adds bits (up to ``pos_bits + EXTRA_BITS``) while the loss at
``pos_bits`` exceeds the budget.
"""

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from ..evaluate import render_views
from ..io.grid import PositionGrid, camera_contraction
from ..io.scene import LOSSLESS
from ..metrics import psnr

MIN_BITS = 6  # the coarsest grid tried
MAX_VIEWS = 16  # training views scored per grid
EXTRA_BITS = 4  # at most this many bits above pos_bits


def camera_centers(cameras: List) -> np.ndarray:
    """[C, 3] centres (world units) of cameras with a world-to-camera ``viewmat`` [4, 4]."""
    return torch.stack([torch.linalg.inv(c.viewmat.detach().cpu().double())[:3, 3] for c in cameras]).numpy()


def position_grid(splats: Dict[str, Tensor], cfg, cameras: Optional[List],
                  background: Optional[Sequence[float]]) -> Tuple[Optional[PositionGrid], Dict[int, float]]:
    """The grid ``cfg`` (a VQConfig) stores ``splats["means"]`` on, and the PSNR drops measured to
    choose its bits ({} unless ``cfg.pos_max_drop`` > 0 and the cameras have images).

    ``splats``: the model as rendered; ``cameras``: the training views (None: uniform grid of
    ``cfg.pos_bits``). Returns (None, {}) for lossless positions (``pos_bits`` 32).
    """
    if cfg.pos_bits == LOSSLESS:
        return None, {}
    warp = None
    if cfg.pos_contract > 0 and cameras:
        warp = camera_contraction(camera_centers(cameras), cfg.pos_contract)
    fit = lambda m, bits: PositionGrid.fit(m, bits, contraction=warp)  # noqa: E731
    bits, drops = cfg.pos_bits, {}
    if cfg.pos_max_drop > 0 and cameras and all(getattr(c, "image", None) is not None for c in cameras):
        bits, drops = choose_pos_bits(splats, spread_views(cameras, MAX_VIEWS), background, fit, cfg.pos_bits,
                                      min(21, cfg.pos_bits + EXTRA_BITS), cfg.pos_max_drop)
    return fit(splats["means"].detach().cpu().numpy(), bits), drops


@torch.no_grad()
def views_psnr(splats: Dict[str, Tensor], cameras: List, background: Optional[Sequence[float]]) -> float:
    """Mean PSNR (dB) of ``splats`` rendered from ``cameras`` against their images."""
    views = render_views(splats, cameras, background, splats["means"].device)
    return float(np.mean([psnr(out.rgb[0].clamp(0, 1).cpu(), cam.image.cpu()) for cam, out in views]))


def spread_views(cameras: List, count: int) -> List:
    """At most ``count`` cameras, evenly spaced through the list."""
    if len(cameras) <= count:
        return list(cameras)
    return [cameras[i] for i in np.linspace(0, len(cameras) - 1, count).round().astype(int)]


def choose_pos_bits(splats: Dict[str, Tensor], cameras: List, background: Optional[Sequence[float]],
                    fit: Callable[[np.ndarray, int], PositionGrid], start: int, most: int,
                    max_drop: float) -> Tuple[int, Dict[int, float]]:
    """The fewest bits per axis whose rounded positions cost at most ``max_drop`` dB.

    Args:
        splats: the model as rendered (quantized attributes decoded); ``means`` [N, 3] unrounded.
        cameras: views with ``image`` [H, W, 3] to score on (e.g. :func:`spread_views` of the training set).
        fit: ``(means [N, 3], bits) -> PositionGrid`` (the plugin's grid: contraction included).
        start: the configured ``pos_bits``, the first grid tried; ``most``: the largest allowed.
        max_drop: PSNR budget in dB (> 0).
    Returns:
        (bits, {bits tried: PSNR drop in dB}).
    """
    means = splats["means"].detach()
    m = means.cpu().numpy()
    base = views_psnr(splats, cameras, background)

    def drop(bits: int) -> float:
        grid = fit(m, bits)
        rounded = torch.from_numpy(grid.dequantize(grid.quantize(m))).to(means)
        return base - views_psnr({**splats, "means": rounded}, cameras, background)

    drops = {start: drop(start)}
    bits = start
    if drops[start] > max_drop:  # too coarse: add bits until the budget holds
        while bits < most and drops[bits] > max_drop:
            bits += 1
            drops[bits] = drop(bits)
        return bits, drops
    while bits > MIN_BITS:  # fine enough: remove bits while the budget holds
        drops[bits - 1] = drop(bits - 1)
        if drops[bits - 1] > max_drop:
            break
        bits -= 1
    return bits, drops
