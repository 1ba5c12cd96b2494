"""2D feature targets at a few sampled pixels, read without converting or moving whole maps.

:class:`~gs_vq.semantics.features.FeatureMaps` keeps every view's map as float16 on the CPU.
The semantic loss needs the map only at ``num_pixels`` random pixels of the rendered view, so
:func:`sample_view` gathers those (1 map pixel each for nearest, 4 for bilinear) from the float16
map and converts just them; the caller moves the small ``[P, D]`` result to the GPU. The values
equal ``sample_targets`` in tests/test_semantic_plugin.py (``grid_sample``, ``align_corners=False``,
border padding) on the float32 map.
"""

from typing import Tuple

import torch
from torch import Tensor

from ..errors import GsVqError

__all__ = ["sample_map", "sample_view"]


def _source_coords(pix: Tensor, size: int, out_size: int) -> Tensor:
    """Map-pixel coordinates of image pixel centres ``pix [P]`` (of ``out_size``) in a map of
    ``size``, as grid_sample computes them (align_corners=False), clipped to the border."""
    g = (pix.float() + 0.5) / out_size * 2 - 1  # normalized, as sample_targets builds its grid
    return (((g + 1) * size - 1) / 2).clamp(0, size - 1)  # [P]


def _corners(coord: Tensor, size: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Lower/upper integer neighbours (upper clamped in range) and the upper one's weight."""
    lo = coord.floor()
    w_hi = coord - lo
    lo = lo.long()
    return lo, (lo + 1).clamp_max(size - 1), w_hi


def sample_map(fmap: Tensor, ys: Tensor, xs: Tensor, height: int, width: int, mode: str) -> Tensor:
    """Features of ``fmap [h, w, D]`` (any float dtype, any device) at image pixels ``(ys, xs)``
    (``[P]`` each) of a ``height x width`` image; ``mode`` nearest | bilinear -> ``[P, D]`` float32
    on ``fmap``'s device. Only the needed map pixels are read and converted."""
    h, w = fmap.shape[:2]
    ys, xs = ys.to(fmap.device), xs.to(fmap.device)
    iy, ix = _source_coords(ys, h, height), _source_coords(xs, w, width)  # [P]
    if mode == "nearest":
        return fmap[torch.round(iy).long(), torch.round(ix).long()].float()  # round half to even
    if mode != "bilinear":
        raise GsVqError(f"unknown feature-map interpolation {mode!r} (nearest | bilinear)")
    y0, y1, wy = _corners(iy, h)
    x0, x1, wx = _corners(ix, w)
    wy, wx = wy[:, None], wx[:, None]  # [P, 1]
    top = fmap[y0, x0].float() * (1 - wx) + fmap[y0, x1].float() * wx  # [P, D]
    bottom = fmap[y1, x0].float() * (1 - wx) + fmap[y1, x1].float() * wx  # [P, D]
    return top * (1 - wy) + bottom * wy


def sample_view(maps, name: str, ys: Tensor, xs: Tensor, height: int, width: int) -> Tensor:
    """:func:`sample_map` on view ``name`` of ``maps`` (a FeatureMaps) -> ``[P, D]`` float32."""
    if name not in maps.maps:
        raise GsVqError(f"no feature map for view {name}")
    return sample_map(maps.maps[name], ys, xs, height, width, maps.interp)
