"""Checks of the model itself (not only the loss): training stops at non-finite parameters.

A finite loss does not prove a finite model: Gaussians that leave every view (e.g. after a too
large ``scales_lr`` step, or with a broken camera) get no gradient and can hold NaN or infinity
unnoticed, and a ply written from them is refused by every reader. :func:`check_finite` raises a
one-line :class:`~gs_vq.errors.GsVqError` naming the step and the parameter.

Cost: one ``sum`` per tensor (a NaN or infinity anywhere makes the sum non-finite) and a single
device sync; only a non-finite sum is examined element-wise (so huge but finite values, whose
sum overflows, pass). Measured on 2 busy CPU cores (``python -m bench.finite_check``): 2.0 ms for
50k Gaussians at SH degree 3 (a training step there: 1.7 s) and 8.6 ms for 300k (10.5 s), so on
the CPU the trainer checks after every step. On CUDA a check is a host synchronisation, so the
loss and the parameters are checked every ``CUDA_CHECK_EVERY`` steps (:func:`check_every`), and
before every checkpoint and export.
"""

from typing import Mapping

import torch
from torch import Tensor

from .errors import GsVqError

CHECK_EVERY = 1  # steps between two checks during training on the CPU (where a check costs no sync)
CUDA_CHECK_EVERY = 100  # on CUDA: each check waits for the GPU, so the loss and the model are checked this often


def check_every(device) -> int:
    """Steps between two health checks (finite loss and parameters) while training on ``device``."""
    return CUDA_CHECK_EVERY if torch.device(device).type == "cuda" else CHECK_EVERY


@torch.no_grad()
def check_finite(tensors: Mapping[str, Tensor], step: int, what: str = "parameter") -> None:
    """Raise GsVqError if any floating tensor of ``tensors`` holds NaN or +-inf."""
    floats = [(k, t) for k, t in tensors.items() if torch.is_tensor(t) and t.is_floating_point() and t.numel()]
    if not floats:
        return
    sums = torch.stack([t.detach().sum().float() for _, t in floats])  # [P]
    if bool(torch.isfinite(sums).all()):
        return
    for name, t in floats:
        bad = int((~torch.isfinite(t.detach())).sum())
        if bad:
            rows = t.shape[0] if t.ndim else 1
            raise GsVqError(f"the model became non-finite by step {step}: {what} '{name}' holds {bad} NaN or "
                            f"infinite values ({rows} rows); lower the learning rates (e.g. {name}_lr) and check "
                            "the cameras")
