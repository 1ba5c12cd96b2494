"""The one user-facing error type.

Library code raises :class:`GsVqError` with a single-line message for anything a user can cause
(missing folders, corrupt files, wrong shapes, NaN). The command-line tools catch it, print
``error: <message>`` and exit with status 2 instead of showing a traceback.
"""


class GsVqError(RuntimeError):
    """A user-facing error; its message is one line."""


def error_text(e: BaseException) -> str:
    """The first line of an exception's message (or its type name), for one-line GsVqErrors."""
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__
