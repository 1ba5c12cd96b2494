"""Build and load gs_vq's C++/OpenMP kernels on first use (``torch.utils.cpp_extension.load``).

Each kernel is one source file compiled into ``$GS_VQ_CACHE`` or ``~/.cache/gs_vq/ext``, in a
folder keyed by the source (its text and path), the torch version and the machine (about a minute once; later
imports load the cached library). Every kernel has a pure-torch twin: a failed build is logged
once and its caller falls back; ``GS_VQ_NO_EXT=1`` skips every build. A compiler without OpenMP
(``-fopenmp`` refused, no ``omp.h``: Apple clang, some MinGW) is one such failure: one warning line
says so, and the other kernels then skip their build and fall back silently.

The build lock is :mod:`filelock` (``fcntl`` on POSIX, ``msvcrt`` on Windows), so importing
gs_vq needs nothing POSIX-only.
"""

import hashlib
import importlib.util
import logging
import os
import platform
import re
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Tuple

import torch
from filelock import FileLock

log = logging.getLogger(__name__)

# What a compiler or linker without OpenMP says (gcc, clang, Apple clang, MinGW); the build's
# command lines, also in the output, name -fopenmp in every failure, so the flag alone says nothing
_NO_OPENMP_SIGNS = re.compile(r"(unrecognized|unsupported|unknown|invalid)[^\n]*-f?openmp"
                              r"|omp\.h['\"]?:? *(no such file|file not found)|'omp\.h' file not found"
                              r"|(cannot find|library not found for) -l(g|lib)?omp", re.IGNORECASE)
NO_OPENMP = "the C++ compiler has no OpenMP (-fopenmp)"
_no_openmp = False  # set once a build failed for want of OpenMP: later kernels do not try again


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


@contextmanager
def build_lock(path: str) -> Iterator[None]:
    """Hold an exclusive lock on the build folder ``path`` (released by the OS if this process
    dies). Inside it no other gs_vq process builds there, so torch's own lock file (``lock``, which
    a killed build leaves behind and every later load would wait on forever) is removed."""
    with FileLock(os.path.join(path, "gs_vq.lock")):
        stale = os.path.join(path, "lock")
        if os.path.exists(stale):
            os.remove(stale)
        yield


def _failure_reason(e: Exception) -> str:
    """One line for a failed build: :data:`NO_OPENMP` when the compiler's output says it lacks
    OpenMP, else the exception's type and last line."""
    text = str(e).strip()
    if _NO_OPENMP_SIGNS.search(text):
        return NO_OPENMP
    lines = text.splitlines()
    return f"{type(e).__name__}: {lines[-1] if lines else ''}"


def _load_built(name: str, folder: str) -> Optional[Any]:
    """The module already built in ``folder`` (keyed by its source), imported without torch's
    build machinery (which re-runs ninja, and waits on its lock file, in every new process); None
    when there is none or it does not import (a build killed mid-link), so the caller builds."""
    path = os.path.join(folder, f"{name}.so")
    if not os.path.isfile(path):
        return None
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    except (ImportError, OSError):
        return None


def build(name: str, source: str, what: str, fallback: str,
          logger: Optional[logging.Logger] = None, native: bool = False) -> Tuple[Optional[Any], Optional[str]]:
    """Compile (or load the cached) module ``name`` from ``source``.

    With ``native`` it is first built for this CPU (``-march=native``), then, if the compiler
    refuses that, for the generic target. Returns ``(module, None)`` or, when disabled or the
    build fails, ``(None, reason)``; a failure is logged once as a warning naming ``what`` is
    unavailable and the ``fallback``. Once a build failed for want of OpenMP, later calls return
    ``(None, NO_OPENMP)`` at once, without a build and without another warning.
    """
    global _no_openmp
    if os.environ.get("GS_VQ_NO_EXT") == "1":
        return None, "disabled by GS_VQ_NO_EXT=1"
    if _no_openmp:
        (logger or log).debug("gs_vq %s unavailable, using %s (%s)", what, fallback, NO_OPENMP)
        return None, NO_OPENMP
    from torch.utils.cpp_extension import load as load_ext

    reason = ""
    for flags in ([FLAGS + [NATIVE]] if native else []) + [FLAGS]:
        try:
            folder = build_dir(source, tuple(flags))
            module = _load_built(name, folder)
            if module is not None:
                return module, None
            with build_lock(folder):
                module = load_ext(name=name, sources=[source], extra_cflags=flags, extra_ldflags=["-fopenmp"],
                                  build_directory=folder, verbose=False)
            return module, None
        except Exception as e:  # compiler missing, headers broken, no OpenMP...: the caller falls back
            reason = _failure_reason(e)
    if reason == NO_OPENMP:
        _no_openmp = True
        what = "C++ kernels"  # every kernel needs OpenMP: this one line speaks for all of them
        fallback = "the torch paths"
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
