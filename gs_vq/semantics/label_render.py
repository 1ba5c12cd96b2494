"""The fast query path of models with per-Gaussian labels: a query's 0/1 selection channel
rendered as a per-pixel share, with exact shortcuts that keep it to the pixels and Gaussians that
can matter.

A pixel's share of selected Gaussians is ``sum_{i selected} alpha_i T_i``. It is exactly 0 where
no selected Gaussian's box reaches, and a Gaussian changes it only where its own box overlaps a
selected one's, and only if it is not behind every selected Gaussian (compositing runs front to
back by centre depth). So :func:`label_scores` composites the selection's pixel box only, with
the Gaussians in front of the deepest selected one whose bounded box
(:func:`~gs_vq.render.projection.reach_bounds`) meets a cell of :data:`CELL` x :data:`CELL`
pixels that some selected Gaussian covers. The result equals a full render of the channel
(tests/test_semantic_select.py).
"""

from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..render import rasterize
from ..render.composite import pixel_boxes
from ..render.projection import project_gaussians, reach_bounds

CELL = 4  # pixels per side of the occupancy cells (any size is exact; 4 timed best of 4, 8, 16 on tabletop)


@torch.no_grad()
def label_scores(splats: Dict[str, Tensor], channels: Tensor, viewmat: Tensor, K: Tensor, width: int, height: int,
                 backend: str = "auto") -> Tensor:
    """``[H, W, T]``: the share of each pixel's colour that selected Gaussians give (``channels [N, T]``
    rendered as colours over a zero background, raw ``splats``); a pixel is in query ``t``'s mask
    when it is above 0.5. ``T`` channels, no feature field, no decoding; the shortcuts of the
    module docstring."""
    dev = splats["means"].device
    channels = channels.to(dev)
    viewmats, Ks = viewmat[None].to(dev), K[None].to(dev)
    out = torch.zeros(height, width, channels.shape[1], device=dev)
    chosen = torch.nonzero(channels.any(-1)).squeeze(1)  # [M]
    boxes = selected_boxes(activated(splats, chosen), viewmats, Ks, width, height)
    if boxes is None:
        return out
    box = union(boxes)
    z = splats["means"] @ viewmats[0, 2, :3] + viewmats[0, 2, 3]  # [N] camera-space depth
    lo, hi, in_front = reach_bounds(splats["means"], torch.exp(splats["scales"].max(-1).values), viewmats[0], Ks[0])
    x0, y0, w, h = box
    near = (z <= z[chosen].max()) & in_front & (hi[:, 0] > x0) & (lo[:, 0] < x0 + w) & (hi[:, 1] > y0) & \
        (lo[:, 1] < y0 + h)  # [N]
    keep = torch.nonzero(near).squeeze(1)  # ascending: the compositing order of ties is kept
    keep = keep[meets_cells(lo[keep], hi[keep], occupancy(boxes, box), box)]
    win, _, _ = rasterize(*activated(splats, keep), channels[keep], viewmats, Ks, width, height, sh_degree=None,
                          backend=backend, window=box)
    out[y0:y0 + h, x0:x0 + w] = win[0]
    return out


def activated(splats: Dict[str, Tensor], index: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Means, quats, scales and opacities of the Gaussians ``index [M]``, activations applied."""
    return (splats["means"][index], splats["quats"][index], torch.exp(splats["scales"][index]),
            torch.sigmoid(splats["opacities"][index]))


def selected_boxes(geometry: Sequence[Tensor], viewmats: Tensor, Ks: Tensor, width: int,
                   height: int) -> Optional[Tuple[Tensor, Tensor, Tensor, Tensor]]:
    """The non-empty pixel boxes ``(x, y, w, h)`` (each ``[M]`` int64, :func:`pixel_boxes`) of these
    Gaussians (means, quats, scales, opacities, activated) in the one camera, as the rasterizer
    bounds them; None when none reaches the image."""
    means, quats, scales, opacities = geometry
    if means.shape[0] == 0:
        return None
    radii, means2d, _, _ = project_gaussians(means, quats, scales, viewmats, Ks, width, height, opacities=opacities)
    x, y, w, h = pixel_boxes(means2d[0], radii[0], width, height)  # [M] each
    seen = (w > 0) & (h > 0)
    return (x[seen], y[seen], w[seen], h[seen]) if bool(seen.any()) else None


def union(boxes: Tuple[Tensor, Tensor, Tensor, Tensor]) -> Tuple[int, int, int, int]:
    """``(x0, y0, w, h)`` of the smallest rectangle holding every box."""
    x, y, w, h = boxes
    x0, y0 = int(x.min()), int(y.min())
    return x0, y0, int((x + w).max()) - x0, int((y + h).max()) - y0


def occupancy(boxes: Tuple[Tensor, Tensor, Tensor, Tensor], window: Tuple[int, int, int, int]) -> Tensor:
    """``[Hc + 1, Wc + 1]`` int64 summed-area table of the :data:`CELL`-pixel cells of ``window``
    that the ``boxes`` cover (row and column 0 are zero)."""
    x, y, w, h = boxes
    wx, wy, ww, wh = window
    nx, ny = -(-ww // CELL), -(-wh // CELL)
    c0x, c0y = (x - wx) // CELL, (y - wy) // CELL  # [M] first cell of each box
    c1x, c1y = (x + w - 1 - wx) // CELL + 1, (y + h - 1 - wy) // CELL + 1  # [M] one past the last
    diff = torch.zeros(ny + 1, nx + 1, dtype=torch.int64, device=x.device)
    ones = torch.ones_like(c0x)
    for cy, cx, sign in ((c0y, c0x, 1), (c0y, c1x, -1), (c1y, c0x, -1), (c1y, c1x, 1)):
        diff.index_put_((cy, cx), sign * ones, accumulate=True)
    covered = (diff.cumsum(0).cumsum(1)[:ny, :nx] > 0).long()  # [Hc, Wc]
    sat = torch.zeros(ny + 1, nx + 1, dtype=torch.int64, device=x.device)
    sat[1:, 1:] = covered.cumsum(0).cumsum(1)
    return sat


def meets_cells(lo: Tensor, hi: Tensor, sat: Tensor, window: Tuple[int, int, int, int]) -> Tensor:
    """``[N]`` bool: whether the pixel bounds ``lo``/``hi [N, 2]`` meet a covered cell of ``window``
    (``sat`` from :func:`occupancy`)."""
    wx, wy = window[0], window[1]
    ny, nx = sat.shape[0] - 1, sat.shape[1] - 1
    origin = lo.new_tensor([wx, wy])
    first = torch.floor((lo - origin) / CELL).long()  # [N, 2]
    last = torch.floor((hi - origin) / CELL).long()  # [N, 2]
    inside = (last >= 0).all(-1) & (first[:, 0] < nx) & (first[:, 1] < ny)
    x0, y0 = first[:, 0].clamp(0, nx - 1), first[:, 1].clamp(0, ny - 1)
    x1, y1 = last[:, 0].clamp(0, nx - 1) + 1, last[:, 1].clamp(0, ny - 1) + 1
    hits = sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]
    return inside & (hits > 0)
