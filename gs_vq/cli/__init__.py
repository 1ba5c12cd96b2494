"""Command-line front ends (``train.py`` and ``render.py`` call :func:`train_main` / :func:`render_main`)."""

from ..console import OneLineParser, guarded, quiet_libraries

__all__ = ["OneLineParser", "guarded", "quiet_libraries"]
