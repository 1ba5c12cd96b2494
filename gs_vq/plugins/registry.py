"""Plugins chosen by config section: a registry keyed by section name.

Built-in plugins are named here by import path and imported only when a config enables them;
``@register_plugin("name")`` adds one from anywhere (a test, a fork), and installed packages can
add theirs through the ``gs_vq.plugins`` entry-point group.
"""

import importlib
from importlib.metadata import entry_points
from typing import Callable, Dict, List, Union

from ..errors import GsVqError

BUILTIN: Dict[str, str] = {
    "semantic": "gs_vq.semantics.plugin:SemanticField",
    "vq": "gs_vq.vq.plugin:VQPlugin",
}
_registered: Dict[str, Union[type, str]] = {}


def register_plugin(name: str) -> Callable[[type], type]:
    """Class decorator: the config section ``name:`` enables this plugin (its fields are the section)."""

    def wrap(cls: type) -> type:
        cls.name = name
        _registered[name] = cls
        return cls

    return wrap


def _entry_point_plugins() -> Dict[str, str]:
    try:
        return {ep.name: ep.value for ep in entry_points(group="gs_vq.plugins")}
    except Exception:  # a broken installed distribution must not stop training
        return {}


def plugin_names() -> List[str]:
    """Every section name that enables a plugin."""
    return sorted({**BUILTIN, **_entry_point_plugins(), **_registered})


def is_plugin(name: str) -> bool:
    return name in _registered or name in BUILTIN or name in _entry_point_plugins()


def plugin_class(name: str) -> type:
    """The plugin class registered under ``name`` (imported on first use)."""
    target = _registered.get(name) or BUILTIN.get(name) or _entry_point_plugins().get(name)
    if target is None:
        raise GsVqError(f"no plugin named '{name}' (known: {', '.join(plugin_names())})")
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        target = getattr(importlib.import_module(module), attr)
        target.name = name
        _registered[name] = target
    return target


def declared(attribute: str) -> List[str]:
    """The union, over every known plugin class, of a tuple class attribute (``outputs``,
    ``derived``): what any plugin may leave in a model folder, whether or not a run enables it."""
    return [item for name in plugin_names() for item in getattr(plugin_class(name), attribute)]
