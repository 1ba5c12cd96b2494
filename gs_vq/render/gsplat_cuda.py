"""gsplat's CUDA extension, loaded (and on first use compiled) before anything is timed.

gsplat 1.5.3 ships its CUDA kernels as source. ``gsplat.cuda._backend`` compiles them with nvcc
the first time it is imported (minutes; cached under torch's extension folder) and, when it finds
no CUDA toolkit, prints a warning and leaves ``_C = None``: the first render then dies deep inside
gsplat with ``'NoneType' object has no attribute ...``. :func:`load_gsplat_cuda` does that import
up front, turns a missing or broken build into one :class:`~gs_vq.errors.GsVqError` line naming
the fix, and returns how long it took so callers keep it out of their timings.
"""

import importlib
import time

import torch

from ..errors import GsVqError, error_text

__all__ = ["load_gsplat_cuda", "missing_message"]

_loaded_seconds = None  # seconds the first successful load took (None: not loaded yet)


def missing_message(reason: str) -> str:
    """One line: what is wrong with gsplat's CUDA extension and the two ways out."""
    cuda = torch.version.cuda or "?"
    return (f"gsplat's CUDA extension is not available ({reason}); install the CUDA toolkit matching "
            f"torch (CUDA {cuda}, nvcc on PATH or CUDA_HOME set) so gsplat can compile it on first "
            f"use, or run with --device cpu")


def load_gsplat_cuda(verbose: bool = True) -> float:
    """Import gsplat's CUDA extension, compiling it if this machine has never built it.

    Returns the seconds the first call spent (0.0 on later calls). Raises a one-line
    :class:`GsVqError` when gsplat found no CUDA toolkit (``_C is None``) or the build failed.
    """
    global _loaded_seconds
    if _loaded_seconds is not None:
        return 0.0
    t0 = time.perf_counter()
    try:
        backend = importlib.import_module("gsplat.cuda._backend")
    except Exception as e:  # the JIT build failed: compiler errors, a wrong toolkit version, ...
        raise GsVqError(missing_message(f"its build failed: {error_text(e)}")) from None
    if getattr(backend, "_C", None) is None:
        raise GsVqError(missing_message("gsplat found no CUDA toolkit to compile it with"))
    _loaded_seconds = time.perf_counter() - t0
    if verbose and _loaded_seconds > 5.0:
        print(f"[gs-vq] gsplat's CUDA extension ready after {_loaded_seconds:.0f} s (first use compiles it; "
              f"not counted in train_seconds)")
    return _loaded_seconds
