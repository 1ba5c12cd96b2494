"""The compiled C++/OpenMP compositing kernel (``_ext/rasterize.cpp``) and its autograd Function.

Built on first use by :mod:`gs_vq.cext` (about a minute once, then cached). A failed build is
logged once and :func:`available` turns False, so ``backend="auto"`` falls back to the
pure-torch path; ``GS_VQ_NO_EXT=1`` skips the build entirely.
"""

import logging
import os
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..cext import Kernel
from ..errors import GsVqError
from .projection import ALPHA_THRESHOLD, MAX_ALPHA, T_EPS

log = logging.getLogger(__name__)
KERNEL = Kernel("gs_vq_rasterize", os.path.join(os.path.dirname(__file__), "_ext", "rasterize.cpp"),
                "C++ rasterizer", "the torch path", log)
load = KERNEL.load  # the compiled module (built on first call), or None


def available() -> bool:
    """Whether the compiled kernel can be used (builds it on the first call)."""
    return load() is not None


def _module_or_raise():
    module = load()
    if module is None:
        raise GsVqError(f"C++ rasterizer unavailable ({KERNEL.failed}); use backend='torch'")
    return module


def _consts():
    return ALPHA_THRESHOLD, MAX_ALPHA, T_EPS


class _CompositeCpp(torch.autograd.Function):
    """Same contract as :class:`.composite._CompositeTorch`, computed by the C++ kernel."""

    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, backgrounds, radii, depths, image_ids,
                n_images: int, width: int, height: int, absgrad_to: Optional[Tensor]):
        module = _module_or_raise()
        visible = torch.nonzero((radii > 0).all(-1), as_tuple=True)[0]  # [M']
        order = visible[torch.argsort(depths[visible], stable=True)]  # depth order, ties by id
        tensors = [t.contiguous() for t in (means2d, conics, colors, opacities)]
        bg = None if backgrounds is None else backgrounds.contiguous()
        out, alphas, t_final, offsets, ids, n_used = module.forward(
            *tensors, bg, radii.contiguous(), image_ids.contiguous(), order, width, height,
            n_images, *_consts())
        ctx.save_for_backward(*tensors, bg, order, offsets, ids, n_used, t_final)
        ctx.dims = (n_images, width, height)
        ctx.absgrad_to = absgrad_to
        return out, alphas

    @staticmethod
    def backward(ctx, v_out, v_alphas):
        (means2d, conics, colors, opacities, bg, order, offsets, ids, n_used,
         t_final) = ctx.saved_tensors
        n_images, width, height = ctx.dims
        absgrad = ctx.absgrad_to is not None
        v_means2d, v_conics, v_colors, v_opacities, v_abs = _module_or_raise().backward(
            means2d, conics, colors, opacities, bg, order, offsets, ids, n_used, t_final,
            v_out.contiguous(), v_alphas.contiguous(), absgrad, width, height, n_images,
            *_consts())
        if absgrad:
            ctx.absgrad_to.absgrad = v_abs.reshape(ctx.absgrad_to.shape)
        v_bg = None
        if bg is not None and ctx.needs_input_grad[4]:
            v_bg = (v_out * t_final.reshape(n_images, height, width, 1)).sum((1, 2))
        return (v_means2d, v_conics, v_colors, v_opacities, v_bg,
                None, None, None, None, None, None, None)


def composite_cpp(
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
    absgrad_to: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """C++ twin of :func:`.composite.composite_torch` (same arguments and results).

    Features wider than the kernel's channel limit are rendered in chunks (the alpha of the
    first chunk is returned, as gsplat does).
    """
    module = _module_or_raise()
    limit, D = int(module.max_channels), colors.shape[-1]
    chunks = []
    for lo in range(0, D, limit):
        bg = None if backgrounds is None else backgrounds[:, lo:lo + limit]
        target = absgrad_to if lo == 0 else None
        chunks.append(_CompositeCpp.apply(means2d, conics, colors[:, lo:lo + limit], opacities,
                                          bg, radii, depths, image_ids, n_images, width, height,
                                          target))
    out = chunks[0][0] if len(chunks) == 1 else torch.cat([c[0] for c in chunks], -1)
    return out, chunks[0][1]
