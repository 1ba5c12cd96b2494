"""Build and load gs_vq's C++/OpenMP kernels on first use (``torch.utils.cpp_extension.load``).

Each kernel is one source file compiled into ``$GS_VQ_CACHE`` or ``~/.cache/gs_vq/ext``, in a
folder keyed by the source (its text and path), the torch version and the machine (about a minute once; later
imports load the cached library). Every kernel has a pure-torch twin: a failed build is logged
once and its caller falls back; ``GS_VQ_NO_EXT=1`` skips every build.
"""

import hashlib
import logging
import os
import platform
import time
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Tuple

import torch

log = logging.getLogger(__name__)


FLAGS = ["-O3", "-fopenmp"]
NATIVE = "-march=native"  # only for kernels that ask for it; the cache key then names the CPU


def _cpu() -> bytes:
    """This CPU's model and feature flags (Linux), so a native build is never reused elsewhere."""
    try:
        with open("/proc/cpuinfo", "rb") as f:
            lines = [ln for ln in f.read().splitlines() if ln.startswith((b"model name", b"flags"))]
        return b"\n".join(sorted(set(lines)))
    except OSError:
        return platform.processor().encode()


def build_dir(source: str, flags=tuple(FLAGS)) -> str:
    """Cache folder of ``source``'s build with compiler ``flags``."""
    root = os.environ.get("GS_VQ_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "gs_vq"))
    with open(source, "rb") as f:
        key = hashlib.sha1(f.read() + torch.__version__.encode() + platform.machine().encode())
    key.update(os.path.abspath(source).encode())  # ninja rebuilds when the source path changes: one
    # folder per checkout, so two checkouts of gs-vq do not rebuild each other's kernels
    if NATIVE in flags:
        key.update(_cpu())
    path = os.path.join(root, "ext", key.hexdigest()[:12])
    os.makedirs(path, exist_ok=True)
    return path


STALE_LOCK_S = 600  # a build takes about a minute; torch's lock file older than this was left by a killed build


def clear_stale_lock(directory: str, max_age_s: float = STALE_LOCK_S) -> bool:
    """Remove torch's build lock in ``directory`` if a killed build left it (older than ``max_age_s``).

    torch.utils.cpp_extension waits without end while that file exists, so one interrupted build
    would hang every later process that uses the kernel. Returns whether a lock was removed.
    """
    lock = os.path.join(directory, "lock")
    try:
        if time.time() - os.path.getmtime(lock) <= max_age_s:
            return False
        os.remove(lock)
    except OSError:  # no lock, or another process removed it first
        return False
    log.warning("gs_vq: removed a stale build lock %s (left by an interrupted build)", lock)
    return True


def build(name: str, source: str, what: str, fallback: str,
          logger: Optional[logging.Logger] = None, native: bool = False) -> Tuple[Optional[Any], Optional[str]]:
    """Compile (or load the cached) module ``name`` from ``source``.

    With ``native`` it is first built for this CPU (``-march=native``), then, if the compiler
    refuses that, for the generic target. Returns ``(module, None)`` or, when disabled or the
    build fails, ``(None, reason)``; a failure is logged once as a warning naming ``what`` is
    unavailable and the ``fallback``.
    """
    if os.environ.get("GS_VQ_NO_EXT") == "1":
        return None, "disabled by GS_VQ_NO_EXT=1"
    from torch.utils.cpp_extension import load as load_ext

    reason = ""
    for flags in ([FLAGS + [NATIVE]] if native else []) + [FLAGS]:
        try:
            directory = build_dir(source, tuple(flags))
            clear_stale_lock(directory)
            module = load_ext(name=name, sources=[source], extra_cflags=flags, extra_ldflags=["-fopenmp"],
                              build_directory=directory, verbose=False)
            return module, None
        except Exception as e:  # compiler missing, headers broken, ...: the caller falls back
            lines = str(e).strip().splitlines()
            reason = f"{type(e).__name__}: {lines[-1] if lines else ''}"
    (logger or log).warning("gs_vq %s unavailable, using %s (%s)", what, fallback, reason)
    return None, reason


class Kernel:
    """One compiled kernel, built on the first :meth:`load` (arguments as :func:`build`).

    ``module`` is the loaded module, ``failed`` why there is none; once either is set,
    :meth:`load` does not try again.
    """

    def __init__(self, name: str, source: str, what: str, fallback: str,
                 logger: Optional[logging.Logger] = None, native: bool = False):
        self.name, self.source, self.what, self.fallback = name, source, what, fallback
        self.logger, self.native = logger, native
        self.module: Optional[Any] = None
        self.failed: Optional[str] = None

    def load(self) -> Optional[Any]:
        """The compiled module, building it if needed; None when disabled or the build failed."""
        if self.module is None and self.failed is None:
            self.module, self.failed = build(self.name, self.source, self.what, self.fallback,
                                             self.logger, self.native)
        return self.module

    @contextmanager
    def disabled(self, reason: str = "disabled") -> Iterator[None]:
        """Within the block, behave as if the kernel were unavailable (to time or test the
        fallback against it)."""
        saved = self.module, self.failed
        self.module, self.failed = None, reason
        try:
            yield
        finally:
            self.module, self.failed = saved
