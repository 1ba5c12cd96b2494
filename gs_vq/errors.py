"""The one user-facing error type.

Library code raises :class:`GsVqError` with a single-line message for anything a user can cause
(missing folders, corrupt files, wrong shapes, NaN). The command-line tools catch it, print
``error: <message>`` and exit with status 2 instead of showing a traceback.
"""

import json
import os
import tempfile
from contextlib import contextmanager
from typing import Any, Iterator


class GsVqError(RuntimeError):
    """A user-facing error; its message is one line."""


def error_text(e: BaseException) -> str:
    """The first line of an exception's message (or its type name), for one-line GsVqErrors."""
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def read_json(path) -> Any:
    """Parse a JSON file; a missing, unreadable or malformed file is a one-line GsVqError."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise GsVqError(f"file not found: {path}") from None
    except (OSError, ValueError) as e:
        raise GsVqError(f"cannot read {path}: {error_text(e)}") from None


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
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a written file gets the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
