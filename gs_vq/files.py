"""Files written whole or not at all, and JSON read with one-line errors.

:func:`atomic_path` is how every output of gs-vq is written (write a temporary file beside the
target, then rename it), so a killed run never leaves half a file; :data:`TEMP_PREFIX` names the
temporaries that :mod:`gs_vq.model_dir` removes after a killed run.
"""

import json
import os
import tempfile
from contextlib import contextmanager
from typing import Any, Iterator

from .errors import GsVqError, error_text


def read_json(path) -> Any:
    """Parse a JSON file; a missing, unreadable or malformed file is a one-line GsVqError."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise GsVqError(f"file not found: {path}") from None
    except (OSError, ValueError) as e:
        raise GsVqError(f"cannot read {path}: {error_text(e)}") from None


def _existing(path: str, what: str, folder: bool) -> str:
    kind, other = ("folder", "file") if folder else ("file", "folder")
    if os.path.exists(path) and os.path.isdir(path) != folder:
        raise GsVqError(f"{what} {path} is a {other}, not a {kind}")
    if not os.path.exists(path):
        raise GsVqError(f"{what} not found: {path}")
    return path


def existing_file(path: str, what: str = "file") -> str:
    """``path`` if it is a file; one-line errors for a folder or nothing there (``what`` names it)."""
    return _existing(path, what, folder=False)


def existing_folder(path: str, what: str = "folder") -> str:
    """``path`` if it is a folder; one-line errors for a file or nothing there."""
    return _existing(path, what, folder=True)


def output_file(path: str, what: str = "output file") -> str:
    """``path`` if a file can be written there: not a folder, and no file where its folder would be."""
    if os.path.isdir(path):
        raise GsVqError(f"{what} {path} is a folder, not a file")
    parent = os.path.dirname(os.path.abspath(path))
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise GsVqError(f"{what} {path}: {parent} is a file, not a folder")
    return path


TEMP_PREFIX = ".tmp-"  # temp files of atomic_path; gs_vq.model_dir removes leftovers of killed runs


def current_umask() -> int:
    """The process umask, read without changing it where /proc allows (thread-safe)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    Readers never see a half-written file: either the old file or the complete new one. The file
    gets the permissions a plain ``open(path, "w")`` would give (0666 less the umask).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=os.path.splitext(path)[1], dir=directory)
    os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())  # the writer may have replaced the file's mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
