"""Front-to-back alpha compositing of projected Gaussians, pure torch, hand-written backward.

The work list is the set of (pixel, Gaussian) pairs: every pixel whose centre lies in a
Gaussian's bounding box (``|centre - mean| <= radius`` per axis, radii from the projection).
With gsplat's opacity-aware radii this box holds every pixel where the Gaussian's alpha can
reach ``ALPHA_THRESHOLD``, so the result equals gsplat's tile-based kernel.

Per pair (``delta = mean2d - pixel centre``, centres at +0.5)::

    sigma = 0.5 * (a dx^2 + c dy^2) + b dx dy        conic = (a, b, c)
    alpha = min(MAX_ALPHA, opacity * exp(-sigma))    skipped if sigma < 0 or alpha < 1/255

Pairs are sorted by (image, pixel, depth); within a pixel the transmittance in front of pair i
is ``T_i = prod_{j<i} (1 - alpha_j)``, computed as a segmented cumulative sum of
``log(1 - alpha)`` in float64; pairs with ``T_i (1 - alpha_i) <= T_EPS`` and all behind them
are dropped (gsplat's exclusive early stop). The backward pass walks the same segments with a
reverse (suffix) cumulative sum instead of autograd through the scan.
"""

import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from .projection import ALPHA_THRESHOLD, MAX_ALPHA, T_EPS


@torch.no_grad()
def pixel_boxes(
    means2d: Tensor,  # [M, 2]
    radii: Tensor,  # [M, 2] int32
    width: int,
    height: int,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Inclusive-start pixel boxes ``(x0, y0, box_w, box_h)``, each ``[M]`` int64.

    Pixel ``(x, y)`` is in the box iff ``|x + 0.5 - mx| <= rx`` and ``|y + 0.5 - my| <= ry``,
    clipped to the image; culled Gaussians (a radius <= 0) get an empty box.
    """
    r = radii.to(means2d.dtype)
    lo = torch.ceil(means2d.detach() - r - 0.5).clamp(min=0)  # [M, 2]
    hi = torch.floor(means2d.detach() + r - 0.5)  # [M, 2]
    hi = torch.minimum(hi, torch.tensor([width - 1, height - 1], dtype=hi.dtype))
    size = (hi - lo + 1).clamp(min=0) * (radii > 0).all(-1, keepdim=True)  # [M, 2]
    lo, size = lo.long(), size.long()
    return lo[:, 0], lo[:, 1], size[:, 0], size[:, 1]


@torch.no_grad()
def candidate_pairs(
    means2d: Tensor,  # [M, 2]
    radii: Tensor,  # [M, 2]
    depths: Tensor,  # [M]
    image_ids: Tensor,  # [M] int64
    width: int,
    height: int,
) -> Tuple[Tensor, Tensor]:
    """All (Gaussian, pixel) pairs of the boxes, Gaussians in ascending depth order.

    Returns ``gauss [P]`` (index into M) and ``pix [P]`` (flat ``(image * H + y) * W + x``),
    both int64, with every Gaussian's pairs contiguous and Gaussians sorted by depth (ties by
    index), so a stable sort by ``pix`` afterwards gives (pixel, depth) order.
    """
    x0, y0, bw, bh = pixel_boxes(means2d, radii, width, height)
    order = torch.argsort(depths.detach(), stable=True)  # [M]
    count = (bw * bh).index_select(0, order)  # [M]
    nonempty = torch.nonzero(count > 0).squeeze(1)
    order, count = order.index_select(0, nonempty), count.index_select(0, nonempty)  # [M']
    # Per-Gaussian values repeated over its box (sequential, cheaper than gathers by id).
    gauss = torch.repeat_interleave(order, count)  # [P]
    first = torch.repeat_interleave(torch.cumsum(count, 0) - count, count)  # [P]
    local = torch.arange(len(gauss)) - first  # [P] position inside the box
    box_w = torch.repeat_interleave(bw.index_select(0, order), count)
    dy = torch.div(local, box_w, rounding_mode="floor")
    row = torch.repeat_interleave((image_ids * height + y0).index_select(0, order), count) + dy
    pix = row * width + torch.repeat_interleave(x0.index_select(0, order), count) + local
    return gauss, pix - dy * box_w


def _pair_terms(means2d, conics, opacities, gauss, pix, width, height):
    """Per-pair ``dx, dy, a, b, c, opacity, sigma, vis, alpha`` (each ``[P]``)."""
    row = torch.div(pix, width, rounding_mode="floor")
    px = (pix - row * width).to(means2d.dtype) + 0.5
    py = (row % height).to(means2d.dtype) + 0.5
    dx = means2d[:, 0].index_select(0, gauss) - px  # [P]
    dy = means2d[:, 1].index_select(0, gauss) - py
    a, b, c = (conics[:, k].index_select(0, gauss) for k in range(3))
    opa = opacities.index_select(0, gauss)
    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy  # [P]
    vis = torch.exp(-sigma)
    alpha = torch.clamp_max(opa * vis, MAX_ALPHA)
    return dx, dy, a, b, c, opa, sigma, vis, alpha


def pair_alphas(
    means2d: Tensor,  # [M, 2]
    conics: Tensor,  # [M, 3]
    opacities: Tensor,  # [M]
    gauss: Tensor,  # [P]
    pix: Tensor,  # [P]
    width: int,
    height: int,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per pair: ``delta [P, 2]`` (mean - pixel centre), ``sigma [P]``, ``vis = exp(-sigma)``
    ``[P]`` and the clamped ``alpha [P]``."""
    dx, dy, _, _, _, _, sigma, vis, alpha = _pair_terms(means2d, conics, opacities, gauss, pix,
                                                         width, height)
    return torch.stack([dx, dy], -1), sigma, vis, alpha


def _take(index: Tensor, *tensors: Tensor):
    """``t.index_select(0, index)`` for each tensor (faster than boolean / fancy indexing)."""
    return tuple(t.index_select(0, index) for t in tensors)


def _segments(pix: Tensor, n_pix: int) -> Tuple[Tensor, Tensor]:
    """For pairs sorted by ``pix``: per-pixel index of the first pair and of the last pair
    (``[n_pix]`` int64 each; the last is first - 1 for empty pixels)."""
    count = torch.bincount(pix, minlength=n_pix)  # [n_pix]
    end = torch.cumsum(count, 0)
    return end - count, end - 1


def _background_per_pixel(backgrounds: Optional[Tensor], n_images: int,
                          n_pix: int) -> Optional[Tensor]:
    """``[n_pix, D]`` per-pixel copy of per-image backgrounds ``[I, D]``."""
    if backgrounds is None:
        return None
    per_image = n_pix // n_images
    return backgrounds.repeat_interleave(per_image, dim=0)


class _CompositeTorch(torch.autograd.Function):
    """Compositing over an explicit pair list; see the module docstring for the maths."""

    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, backgrounds, radii, depths, image_ids,
                n_images: int, width: int, height: int, absgrad_to: Optional[Tensor]):
        n_pix = n_images * height * width
        gauss, pix = candidate_pairs(means2d, radii, depths, image_ids, width, height)
        _, sigma, _, alpha = pair_alphas(means2d, conics, opacities, gauss, pix, width, height)
        keep = torch.nonzero((sigma >= 0) & (alpha >= ALPHA_THRESHOLD)).squeeze(1)
        gauss, pix, alpha = _take(keep, gauss, pix, alpha)
        pix_dtype = torch.int32 if n_pix < 2**31 else torch.int64
        pix, perm = torch.sort(pix.to(pix_dtype), stable=True)  # (pixel, depth) order
        pix = pix.long()
        gauss, alpha = _take(perm, gauss, alpha)

        # Transmittance after each pair, as a segmented scan of log(1 - alpha).
        first, _ = _segments(pix, n_pix)
        log1m = torch.log1p(-alpha.double())  # [P]
        scan = torch.cumsum(log1m, 0)
        log_t_after = scan - (scan - log1m).index_select(0, first.index_select(0, pix))  # [P]
        alive = log_t_after > math.log(T_EPS)  # a prefix of every segment
        if not bool(alive.all()):
            alive = torch.nonzero(alive).squeeze(1)
            gauss, pix, alpha, log1m, log_t_after = _take(alive, gauss, pix, alpha, log1m,
                                                          log_t_after)
        t_before = torch.exp(log_t_after - log1m).to(alpha.dtype)  # [P]
        t_final = torch.exp(torch.zeros(n_pix, dtype=torch.float64).index_add_(0, pix, log1m))
        t_final = t_final.to(alpha.dtype)  # [n_pix]

        weights = alpha * t_before  # [P]
        out = colors.new_zeros(n_pix, colors.shape[-1])
        out.index_add_(0, pix, weights[:, None] * colors.index_select(0, gauss))
        bg = _background_per_pixel(backgrounds, n_images, n_pix)
        if bg is not None:
            out += t_final[:, None] * bg
        _, last = _segments(pix, n_pix)

        ctx.save_for_backward(means2d, conics, colors, opacities, backgrounds, gauss, pix,
                              alpha, t_before, t_final, last)
        ctx.dims = (n_images, width, height)
        ctx.absgrad_to = absgrad_to
        out = out.reshape(n_images, height, width, -1)
        return out, (1.0 - t_final).reshape(n_images, height, width, 1)

    @staticmethod
    def backward(ctx, v_out, v_alpha_out):
        (means2d, conics, colors, opacities, backgrounds, gauss, pix, alpha, t_before, t_final,
         last) = ctx.saved_tensors
        n_images, width, height = ctx.dims
        absgrad = ctx.absgrad_to is not None
        n_pix = n_images * height * width
        g = v_out.reshape(n_pix, -1)  # [n_pix, D]
        g_pair = g.index_select(0, pix)  # [P, D]
        weights = alpha * t_before  # [P]
        v_colors = torch.zeros_like(colors).index_add_(0, gauss, weights[:, None] * g_pair)

        # d out / d alpha_i = T_i c_i - (sum_{k>i} w_k c_k + T_final bg) / (1 - alpha_i)
        cg = (colors.index_select(0, gauss) * g_pair).sum(-1)  # [P]
        scan = torch.cumsum((weights * cg).double(), 0)
        behind = (scan.index_select(0, last.index_select(0, pix)) - scan).to(alpha.dtype)
        pix_term = v_alpha_out.reshape(n_pix)  # d loss / d (1 - T_final)
        bg = _background_per_pixel(backgrounds, n_images, n_pix)
        if bg is not None:
            pix_term = pix_term - (bg * g).sum(-1)
        pix_term = t_final * pix_term  # [n_pix]
        v_alpha = t_before * cg + (pix_term.index_select(0, pix) - behind) / (1.0 - alpha)  # [P]

        dx, dy, a, b, c, opa, _, vis, _ = _pair_terms(means2d, conics, opacities, gauss, pix,
                                                      width, height)
        v_alpha = torch.where(opa * vis <= MAX_ALPHA, v_alpha, torch.zeros_like(v_alpha))
        v_sigma = -opa * vis * v_alpha  # [P]
        v_x, v_y = v_sigma * (a * dx + b * dy), v_sigma * (b * dx + c * dy)
        cols = [v_x, v_y, 0.5 * v_sigma * dx * dx, v_sigma * dx * dy, 0.5 * v_sigma * dy * dy,
                vis * v_alpha]
        if absgrad:
            cols += [v_x.abs(), v_y.abs()]
        per_pair = torch.stack(cols, -1)  # [P, 6 (+2)]
        acc = per_pair.new_zeros(len(means2d), per_pair.shape[-1]).index_add_(0, gauss, per_pair)
        if absgrad:
            ctx.absgrad_to.absgrad = acc[:, 6:8].reshape(ctx.absgrad_to.shape)
        v_bg = None
        if backgrounds is not None and ctx.needs_input_grad[4]:
            v_bg = (g * t_final[:, None]).reshape(n_images, -1, g.shape[-1]).sum(1)
        return (acc[:, 0:2], acc[:, 2:5], v_colors, acc[:, 5], v_bg,
                None, None, None, None, None, None, None)


def composite_torch(
    means2d: Tensor,  # [M, 2]
    conics: Tensor,  # [M, 3]
    colors: Tensor,  # [M, D]
    opacities: Tensor,  # [M]
    radii: Tensor,  # [M, 2] int32
    depths: Tensor,  # [M]
    image_ids: Tensor,  # [M] int64
    n_images: int,
    width: int,
    height: int,
    backgrounds: Optional[Tensor] = None,  # [I, D]
    absgrad_to: Optional[Tensor] = None,  # [..., 2] same numel as means2d
) -> Tuple[Tensor, Tensor]:
    """Composite ``M`` projected Gaussians (each belonging to one of ``I`` images).

    Returns ``colors [I, H, W, D]`` (plus ``T_final * background``) and ``alphas [I, H, W, 1]``.
    Differentiable w.r.t. means2d, conics, colors, opacities and backgrounds. With
    ``absgrad_to`` (the caller's means2d tensor, any shape holding M x 2 values) the backward
    pass also sets ``absgrad_to.absgrad``: the sum over pixels of |d loss / d mean2d|.
    """
    return _CompositeTorch.apply(means2d, conics, colors, opacities, backgrounds, radii,
                                 depths, image_ids, n_images, width, height, absgrad_to)
