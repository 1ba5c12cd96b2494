"""Command-line front ends: ``train.py`` / ``render.py`` / ``view.py`` (:mod:`.train`, :mod:`.render`,
:mod:`.view`, with render.py's semantic options in :mod:`.semantic_render`) and the semantic tools
``python -m gs_vq.cli.features`` (2D feature maps), ``python -m gs_vq.cli.lift`` (training-free field)
and ``python -m gs_vq.cli.labelfiles`` (per-Gaussian labels into a model's plys)."""

from ..console import OneLineParser, guarded, quiet_libraries

__all__ = ["OneLineParser", "guarded", "quiet_libraries"]
