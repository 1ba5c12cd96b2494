"""``ckpt.pt`` files: saved atomically, loaded with ``torch.load(weights_only=True)``.

A checkpoint holds only tensors, numbers, strings, None, lists, tuples and dicts (the trainer's
``state_dict``: splats, optimizer and strategy states, plugin states), so loading one can never
run code. Anything wrong with a file (missing, truncated, garbage, pickled objects, wrong
layout, another SH degree than the config) is a one-line :class:`~gs_vq.errors.GsVqError`.
"""

import os
from typing import Any, Dict, Optional

import torch

from .errors import GsVqError, error_text

from .files import atomic_path
from .splats import sh_degree_for

PLAIN = (str, bytes, int, float, bool, type(None), torch.Tensor, torch.Size, torch.dtype, torch.device)
RESUME_KEYS = ("step", "train_seconds", "splats", "optimizers", "strategy_state")


def plain_path(obj: Any, path: str = "") -> Optional[str]:
    """The dotted path of the first value in ``obj`` that weights_only loading would refuse, or None."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                return f"{path}[{k!r}]"
            bad = plain_path(v, f"{path}.{k}" if path else str(k))
            if bad is not None:
                return bad
        return None
    if isinstance(obj, (list, tuple)):
        return next((b for i, v in enumerate(obj) if (b := plain_path(v, f"{path}[{i}]")) is not None), None)
    return None if isinstance(obj, PLAIN) else f"{path} ({type(obj).__name__})"


def save_checkpoint(state: Dict[str, Any], path: str) -> None:
    """Write ``state`` to ``path`` atomically; it must hold only plain values (see module docstring)."""
    bad = plain_path(state)
    if bad is not None:  # a programming error: such a file could not be loaded back safely
        raise TypeError(f"checkpoint entry {bad} is not a tensor, number, string or container")
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _torch_load(path: str, map_location) -> Any:
    if not os.path.isfile(path):
        raise GsVqError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError (zip), EOFError, OSError, ...
        text, full = f"not a checkpoint ({type(e).__name__}: {error_text(e)})", str(e)
        if "Unsupported global" in full or "GLOBAL" in full:
            text = ("it holds pickled objects other than tensors, numbers and strings "
                    "(refused: loading it could run code)")
        elif "WeightsUnpickler error:" in full:  # garbage: the unpickler's complaint, not torch's advice
            detail = [ln for ln in full.split("WeightsUnpickler error:", 1)[1].splitlines() if ln.strip()]
            text = f"not a checkpoint ({detail[0].strip() if detail else 'unreadable pickle'})"
        raise GsVqError(f"cannot read checkpoint {path}: {text}") from None


def check_splats(splats: Any, path: str) -> None:
    """``splats`` must map names to floating tensors with one row per Gaussian, finite, N >= 1."""
    needed = ("means", "scales", "quats", "opacities", "sh0")
    if not isinstance(splats, dict) or any(k not in splats for k in needed):
        raise GsVqError(f"checkpoint {path} has no splats ({', '.join(needed)} expected)")
    n = None
    for name, t in splats.items():
        if not isinstance(t, torch.Tensor) or t.ndim < 1:
            raise GsVqError(f"checkpoint {path}: splats['{name}'] is not a tensor")
        n = t.shape[0] if n is None else n
        if t.shape[0] != n:
            raise GsVqError(f"checkpoint {path}: splats['{name}'] has {t.shape[0]} rows, 'means' has {n}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise GsVqError(f"checkpoint {path}: splats['{name}'] holds NaN or infinite values")
    if n == 0:
        raise GsVqError(f"checkpoint {path} holds no Gaussians")


def check_matches_config(splats: Dict[str, torch.Tensor], cfg: Any, path: str, exact: bool = True) -> None:
    """The checkpoint's SH degree must be the config's ``sh_degree`` (``exact``) or at least it."""
    sh_n = splats.get("shN")
    rest = 0 if sh_n is None or sh_n.ndim < 2 else sh_n.shape[1]
    degree = sh_degree_for(rest)
    if degree is None:
        raise GsVqError(f"checkpoint {path}: shN has {rest} coefficients per colour, not (d + 1)^2 - 1")
    if cfg is not None and (degree != cfg.sh_degree if exact else degree < cfg.sh_degree):
        raise GsVqError(f"checkpoint {path} has SH degree {degree}, the config asks for sh_degree {cfg.sh_degree}")


def load_checkpoint(path: str, map_location="cpu", cfg: Any = None, resume: bool = False) -> Dict[str, Any]:
    """Load and check ``path``. ``resume``: it must be a full training state (step, optimizers,
    strategy state) whose optimized splats are those ``cfg`` trains; else only ``splats`` are needed."""
    ckpt = _torch_load(path, map_location)
    if not isinstance(ckpt, dict):
        raise GsVqError(f"checkpoint {path} does not hold a gs-vq training state (got {type(ckpt).__name__})")
    check_splats(ckpt.get("splats"), path)
    check_matches_config(ckpt["splats"], cfg, path, exact=resume)
    if resume:
        missing = [k for k in RESUME_KEYS if k not in ckpt]
        if missing:
            raise GsVqError(f"checkpoint {path} cannot be resumed: it lacks {', '.join(missing)}")
        if not isinstance(ckpt["step"], int) or ckpt["step"] < 0 or not isinstance(ckpt["optimizers"], dict):
            raise GsVqError(f"checkpoint {path} cannot be resumed: bad step or optimizer states")
        if cfg is not None and ckpt["step"] > cfg.iterations:
            raise GsVqError(f"checkpoint {path} is at step {ckpt['step']}, past --iterations {cfg.iterations}")
        if cfg is not None:
            check_plugins(ckpt, cfg, path)
    return ckpt


def check_plugins(ckpt: Dict[str, Any], cfg: Any, path: str) -> None:
    """A resumed run must use the plugins the checkpoint was trained with (the trainer saves every
    plugin's state, even an empty one; checkpoints from before that name semantics by their
    ``features``)."""
    saved = set(ckpt.get("plugins") or {})
    if "features" in ckpt["splats"]:
        saved.add("semantic")
    wanted = set(cfg.plugins)
    if saved != wanted:
        have = ", ".join(sorted(saved)) or "none"
        want = ", ".join(sorted(wanted)) or "none"
        raise GsVqError(f"checkpoint {path} was trained with plugins: {have}; this run asks for: {want} "
                        "(give the same --vq / --semantic / --config as the first run)")
