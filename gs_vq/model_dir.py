"""Model folders (``-m MODEL``): checked, locked against a second run, cleaned of an earlier run.

``train.py`` and ``render.py`` call :func:`open_model_dir` before any work:

- the path must be a folder (or not exist yet) that this user can write to;
- ``MODEL/.gs_vq.lock`` is locked (:mod:`filelock`: ``flock`` on POSIX, ``msvcrt`` on Windows) for
  as long as the process runs (the OS drops the lock when the process ends, even on kill -9, so no
  stale lock survives); a second run on the same folder stops with one line naming the process
  that holds it (``.gs_vq.lock.who``);
- ``.tmp-*`` files of writes that a killed run left behind are removed (in the folder and its
  render folders ``test/``, ``train/``).

:func:`remove_stale_outputs` then removes the outputs of an earlier run that the new run would not
overwrite consistently: everything on a fresh run (no mix of an old ``point_cloud.ply`` with a new
``ckpt.pt``), and on ``--resume`` the scores (``results.json``) and the files of plugins the run does
not use (e.g. ``compressed.ply`` without ``--vq``).

:func:`load_model_scene` reloads the scene a model was trained on, as its ``cfg.yaml`` records it.
"""

import os
import sys
from typing import Any, Iterable, List, Optional

from .config import TrainConfig, load_config
from .data import Scene, load_scene
from .errors import GsVqError, error_text
from .files import TEMP_PREFIX, existing_file, existing_folder
from .plugins import declared

LOCK_NAME = ".gs_vq.lock"
CORE_OUTPUTS = ("point_cloud.ply", "cfg.yaml", "ckpt.pt", "train_stats.json")
RENDER_OUTPUTS = ("results.json",)
RENDER_FOLDERS = ("test", "train")

_held: List[Any] = []  # held filelock locks: they last as long as the process


def planned_outputs(cfg: TrainConfig) -> List[str]:
    """The file names a training run with ``cfg`` writes into its model folder (its plugins'
    :meth:`~gs_vq.plugins.Plugin.output_files` included)."""
    return list(CORE_OUTPUTS) + [name for p in cfg.plugins.values() for name in p.output_files()]


def _check_writable(path: str) -> None:
    if os.path.exists(path) and not os.path.isdir(path):
        raise GsVqError(f"model path {path} is a file, not a folder: choose another -m")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise GsVqError(f"cannot create the model folder {path}: {error_text(e)}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise GsVqError(f"the model folder {path} is not writable")


def _lock(path: str) -> None:
    """An exclusive lock on ``path`` for this process (filelock: POSIX and Windows; the OS drops it
    when the process dies). ``LOCK_NAME.who`` names the holder for the error a second run gets."""
    from filelock import FileLock, Timeout

    lock_path, who = os.path.join(path, LOCK_NAME), os.path.join(path, LOCK_NAME + ".who")
    lock = FileLock(lock_path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        try:
            with open(who) as fh:
                holder = fh.read().strip() or "another process"
        except OSError:
            holder = "another process"
        raise GsVqError(f"the model folder {path} is in use by {holder}: wait for it to finish or use another -m") from None
    except OSError as e:
        raise GsVqError(f"the model folder {path} is not writable: {error_text(e)}") from None
    try:
        with open(who, "w") as fh:
            fh.write(f"process {os.getpid()} ({' '.join([os.path.basename(sys.argv[0])] + sys.argv[1:])[:200]})\n")
    except OSError as e:
        lock.release()
        raise GsVqError(f"the model folder {path} is not writable: {error_text(e)}") from None
    _held.append(lock)


def remove_temp_files(path: str) -> List[str]:
    """Delete ``.tmp-*`` files (interrupted atomic writes) in ``path`` and under its render folders
    (only where gs-vq writes: a ``-m`` given by mistake is not searched); returns their paths."""
    tops = [(path, False)] + [(os.path.join(path, n), True) for n in RENDER_FOLDERS]
    removed = []
    for top, recurse in tops:
        if not os.path.isdir(top):
            continue
        walk = os.walk(top) if recurse else [(top, [], os.listdir(top))]
        for root, _, files in walk:
            for name in files:
                full = os.path.join(root, name)
                if name.startswith(TEMP_PREFIX) and os.path.isfile(full):
                    try:
                        os.remove(full)
                        removed.append(full)
                    except OSError:
                        pass
    return removed


def open_model_dir(path: str) -> str:
    """Check, create and lock ``path`` for this process; remove leftover temp files. Returns ``path``."""
    _check_writable(path)
    _lock(path)
    remove_temp_files(path)
    return path


def release_model_dirs() -> None:
    """Drop this process's model-folder locks (tests; a finished process drops them anyway)."""
    while _held:
        _held.pop().release()


def remove_stale_outputs(path: str, cfg: TrainConfig, resume: bool, keep: Iterable[Optional[str]] = ()) -> List[str]:
    """Remove outputs of an earlier run in ``path`` that this run (``cfg``) would leave inconsistent.

    Fresh run: every known output; ``--resume``: ``results.json`` and the files of plugins ``cfg``
    does not use. Files named in ``keep`` (e.g. a ``--start_checkpoint`` inside the folder) stay.
    Returns the names removed.
    """
    known = list(CORE_OUTPUTS) + list(RENDER_OUTPUTS) + declared("outputs")
    planned = set(planned_outputs(cfg))
    stale = known if not resume else [n for n in known if n not in planned or n in RENDER_OUTPUTS]
    kept = {os.path.realpath(k) for k in keep if k}
    removed = []
    for name in stale:
        full = os.path.join(path, name)
        if os.path.isfile(full) and os.path.realpath(full) not in kept:
            os.remove(full)
            removed.append(name)
    return removed


def stale_render_folders(path: str) -> List[str]:
    """Render folders (``test/``, ``train/``) in ``path`` that hold renders (``ours_<N>/renders``, or
    gs-vq's earlier ``renders/``): after training they show the earlier model."""
    def has_renders(split: str) -> bool:
        base = os.path.join(path, split)
        subs = [os.path.join(base, n) for n in os.listdir(base)] if os.path.isdir(base) else []
        return any(os.path.isdir(os.path.join(s, "renders")) for s in subs) or os.path.isdir(os.path.join(base, "renders"))

    return [n for n in RENDER_FOLDERS if has_renders(n)]


def model_config(model: str) -> TrainConfig:
    """``MODEL/cfg.yaml`` as the :class:`TrainConfig` the model was trained with."""
    existing_folder(model, "model folder")
    return load_config(os.path.join(model, "cfg.yaml"))


def model_splat_file(model: Optional[str], ply: Optional[str] = None) -> str:
    """The splat file of a model: ``ply`` if given, else ``MODEL/point_cloud.ply``, else
    ``MODEL/compressed.ply``."""
    if ply:
        return existing_file(ply, "ply file")
    existing_folder(model or "", "model folder")
    for name in ("point_cloud.ply", "compressed.ply"):
        if os.path.isfile(os.path.join(model, name)):
            return os.path.join(model, name)
    raise GsVqError(f"{model} holds neither point_cloud.ply nor compressed.ply")


def scene_folder(cfg: TrainConfig, model: str) -> Optional[str]:
    """The scene folder recorded in cfg.yaml: the absolute path, else the one relative to the
    model folder (both folders moved together); None (the demo scene) stays None."""
    if cfg.source_path is None or os.path.isdir(cfg.source_path):
        return cfg.source_path
    rel = getattr(cfg, "source_path_rel", None)
    if rel and os.path.isdir(os.path.join(model, rel)):
        return os.path.join(model, rel)
    also = f" (nor {os.path.normpath(os.path.join(model, rel))})" if rel else ""
    raise GsVqError(f"the scene folder recorded in {model}/cfg.yaml, {cfg.source_path}, is not there{also}: "
                    "pass it with -s")


def load_model_scene(model: str, cfg: Optional[TrainConfig] = None, source_path: Optional[str] = None,
                     resolution: Optional[int] = None, eval: Optional[bool] = None) -> Scene:
    """The scene of a model folder as its ``cfg.yaml`` records it (folder, ``-r``, ``--eval`` split,
    background, ``--images`` folder, ``--lens``); ``source_path``, ``resolution`` and ``eval`` override it."""
    cfg = cfg if cfg is not None else model_config(model)
    options = cfg.scene_options()
    options.update(resolution=resolution or cfg.resolution, eval=cfg.eval if eval is None else eval)
    return load_scene(source_path or scene_folder(cfg, model), **options)
