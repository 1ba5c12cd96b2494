"""The compiled nearest-code kernel for low-dimensional codes (``_ext/nearest.cpp``).

Built on first use by :mod:`gs_vq.cext`; when it is unavailable (no compiler,
``GS_VQ_NO_EXT=1``) :mod:`.search` uses its matrix-product path, which gives the same codes.
"""

import logging
import os
from torch import Tensor

from ..cext import Kernel

log = logging.getLogger(__name__)
MAX_DIM = 16  # wider vectors: BLAS matrix products are faster
KERNEL = Kernel("gs_vq_nearest", os.path.join(os.path.dirname(__file__), "_ext", "nearest.cpp"),
                "C++ nearest-code search", "matrix products", log, native=True)
load = KERNEL.load  # the compiled module (built on first call), or None


def usable(x: Tensor, dim: int) -> bool:
    """Whether the kernel serves points ``x`` of ``dim`` dims (CPU float, D <= MAX_DIM)."""
    return x.device.type == "cpu" and dim <= MAX_DIM and load() is not None


def nearest_small(x: Tensor, codes: Tensor, norms: Tensor) -> Tensor:
    """``[n]`` int64 argmin over k of ``norms[k] - 2 x.codes[k]``, first index on ties.

    Args:
        x: ``[n, D]`` float32 points; codes: ``[K, D]`` float32; norms: ``[K]`` float32 squared
        code norms (D <= MAX_DIM).
    """
    return load().nearest_small(x, codes, norms)
