"""gsplat's densification strategies, chosen in the config, and CPU twins of their CUDA-only ops.

``strategy: {type: default, ...}`` is gsplat's ``DefaultStrategy`` and ``{type: mcmc, cap_max: ...}``
its ``MCMCStrategy``; the config holds gsplat's own dataclasses. Their calls differ slightly
(``initialize_state(scene_scale)`` vs ``()``, ``step_post_backward(..., packed)`` vs ``(..., lr)``);
:func:`initialize_state` and :func:`step_post_backward` hide that from the trainer.

MCMC's ops call two CUDA-only functions of gsplat 1.5.3: ``compute_relocation`` (Eq. 9 of
"3D Gaussian Splatting as Markov Chain Monte Carlo") and ``quat_scale_to_covar_preci`` (for the
position noise). :func:`install_cpu_ops` routes CPU tensors to the twins below (same formulas,
tested against gsplat's kernel code); CUDA tensors still go to gsplat.
"""

from typing import Any, Dict, Tuple

import torch
from gsplat.strategy import DefaultStrategy, MCMCStrategy, Strategy
from torch import Tensor

from .fields import NONNEG, POSITIVE, Int, Num

STRATEGIES: Dict[str, type] = {"default": DefaultStrategy, "mcmc": MCMCStrategy}
# fields of gsplat's strategies that count steps (scaled by gs_vq.config.scale_steps)
STEP_FIELDS = ("refine_start_iter", "refine_stop_iter", "reset_every", "refine_every",
               "refine_scale2d_stop_iter", "pause_refine_after_reset")
# the fields of gsplat's DefaultStrategy / MCMCStrategy gs-vq checks at start-up (gs_vq.fields)
STRATEGY_RULES = {
    "prune_opa": Num(0.0, 1.0, open_high=True), "grow_grad2d": NONNEG, "grow_scale3d": NONNEG,
    "grow_scale2d": NONNEG, "prune_scale3d": POSITIVE, "prune_scale2d": POSITIVE,
    "refine_start_iter": Int(0), "refine_stop_iter": Int(0), "refine_scale2d_stop_iter": Int(0),
    "reset_every": Int(1), "refine_every": Int(1), "pause_refine_after_reset": Int(0),
    "cap_max": Int(1), "min_opacity": Num(0.0, 1.0, open_high=True), "noise_lr": NONNEG,
}


def strategy_type(strategy: Strategy) -> str:
    """The config name (``default`` | ``mcmc``) of a strategy object."""
    for name, cls in STRATEGIES.items():
        if type(strategy) is cls:
            return name
    raise TypeError(f"unsupported strategy {type(strategy).__name__}")


def initialize_state(strategy: Strategy, scene_scale: float) -> Dict[str, Any]:
    if isinstance(strategy, DefaultStrategy):
        return strategy.initialize_state(scene_scale=scene_scale)
    return strategy.initialize_state()


def step_post_backward(strategy: Strategy, splats, optimizers, state: Dict[str, Any], step: int,
                       info: Dict[str, Any], means_lr: float, packed: bool = False) -> None:
    """gsplat's ``step_post_backward`` with the arguments each strategy takes (``means_lr``: the
    current learning rate of the means, which scales MCMC's position noise)."""
    if isinstance(strategy, MCMCStrategy):
        install_cpu_ops()
        strategy.step_post_backward(splats, optimizers, state, step, info, lr=means_lr)
    else:
        strategy.step_post_backward(splats, optimizers, state, step, info, packed=packed)


def remove(splats, optimizers, state: Dict[str, Any], mask: Tensor) -> None:
    """gsplat's ``ops.remove`` of the Gaussians in ``mask`` [N] for any strategy's ``state``.

    ``ops.remove`` indexes every tensor of the state it is given by Gaussian. Only the
    per-Gaussian ones are (DefaultStrategy's ``grad2d``, ``count``, ``radii``, each [N, ...]);
    MCMCStrategy's ``binoms`` [51, 51] is a table (gsplat's MCMC passes ``state={}`` to its own
    ops). So only tensors with N rows go through ``ops.remove``, and come back into ``state``.
    """
    from gsplat.strategy import ops

    n = int(mask.shape[0])
    rows = {k: v for k, v in (state or {}).items() if isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == n}
    ops.remove(splats, optimizers, rows, mask)
    if state is not None:
        state.update(rows)


def refine_stop(strategy: Strategy) -> int:
    """Step at which the strategy stops changing the number of Gaussians."""
    return int(getattr(strategy, "refine_stop_iter", 0))


# ---- CPU twins of gsplat's CUDA-only ops ---------------------------------------------------------
def relocation(opacities: Tensor, scales: Tensor, ratios: Tensor, binoms: Tensor) -> Tuple[Tensor, Tensor]:
    """Opacities and scales of ``ratios[i]`` Gaussians sharing Gaussian i's mass (MCMC, Eq. 9).

    Args:
        opacities: [N] in (0, 1). scales: [N, 3] (activated). ratios: [N] copies, clamped to
        [1, n_max]. binoms: [n_max, n_max] binomial coefficients, ``binoms[n, k] = C(n, k)``.
    Returns:
        new_opacities [N] = 1 - (1 - o)^(1/n); new_scales [N, 3] = o / S(n, o_new) * scales with
        S = sum_{i=1..n} sum_{k=0..i-1} C(i-1, k) (-1)^k / sqrt(k+1) * o_new^(k+1).
    """
    n_max = binoms.shape[0]
    n = ratios.clamp(1, n_max).long()  # [N]
    new_opacities = 1.0 - torch.pow(1.0 - opacities, 1.0 / n.to(opacities.dtype))  # [N]
    k = torch.arange(n_max, device=opacities.device, dtype=opacities.dtype)  # [n_max]
    terms = binoms.to(opacities) * torch.pow(-1.0, k) / torch.sqrt(k + 1)  # [i-1, k]
    cumulative = terms.cumsum(dim=0)  # [n_max, n_max]: row n-1 sums rows i-1 = 0..n-1
    powers = new_opacities[:, None] ** (k + 1)  # [N, n_max]
    denom = (cumulative[n - 1] * powers).sum(dim=1)  # [N]
    return new_opacities, scales * (opacities / denom)[:, None]


def covariances(quats: Tensor, scales: Tensor, compute_covar: bool = True, compute_preci: bool = True,
                triu: bool = False):
    """gsplat's ``quat_scale_to_covar_preci`` through its own PyTorch reference implementation."""
    from gsplat.cuda._torch_impl import _quat_scale_to_covar_preci

    return _quat_scale_to_covar_preci(quats, scales, compute_covar, compute_preci, triu)


def _dispatch(cuda_fn, cpu_fn):
    """A function that calls ``cuda_fn`` when its first tensor argument is on CUDA, else ``cpu_fn``."""

    def run(*args, **kwargs):
        first = next(a for a in (*args, *kwargs.values()) if isinstance(a, Tensor))
        return (cuda_fn if first.is_cuda else cpu_fn)(*args, **kwargs)

    run.gs_vq_twin = True
    return run


def install_cpu_ops() -> None:
    """Let gsplat's strategy ops run on CPU tensors (idempotent; CUDA tensors are unaffected)."""
    from gsplat.strategy import ops

    if not getattr(ops.compute_relocation, "gs_vq_twin", False):
        ops.compute_relocation = _dispatch(ops.compute_relocation, relocation)
    if not getattr(ops.quat_scale_to_covar_preci, "gs_vq_twin", False):
        ops.quat_scale_to_covar_preci = _dispatch(ops.quat_scale_to_covar_preci, covariances)

