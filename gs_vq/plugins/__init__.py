"""Training plugins: the :class:`Plugin` base class, its :class:`TrainContext`, and the registry
that maps config sections (``vq:``, ``semantic:``, yours) to plugin classes."""

from .base import Plugin, TrainContext
from .registry import declared, is_plugin, plugin_class, plugin_names, register_plugin

__all__ = ["Plugin", "TrainContext", "declared", "is_plugin", "plugin_class", "plugin_names", "register_plugin"]
