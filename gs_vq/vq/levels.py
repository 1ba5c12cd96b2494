"""Compression levels of ``--vq``: named ``vq:`` mappings shipped in ``gs_vq/configs/vq/``.

``--vq`` trains the ``default`` level, ``--vq small`` and ``--vq tiny`` smaller files at a larger
PSNR cost, and ``--vq compact3d`` Compact3D's own recipe (the baseline). A level is a YAML mapping
of :class:`~gs_vq.vq.config.VQConfig` options and may start from another level (``level: default``).
A preset's ``vq:`` section names a level the same way and overrides single keys on top of it::

    vq: {level: small, prune_fraction: 0.7}

A level gives its step-valued options as fractions of the quantization window (``window:``, from
``vq_start`` to the last step), so it means the same on the CPU preset's 1000-step window as on
gsplat's 15k-step one; :meth:`VQConfig.resolve_schedule` turns them into steps.
"""

import os
from typing import Any, Dict, List, Tuple

from ..config import CONFIG_DIR, merge, read_yaml, yaml_names
from ..errors import GsVqError

LEVELS_DIR = os.path.join(CONFIG_DIR, "vq")
DEFAULT_LEVEL = "default"


def level_names() -> List[str]:
    """The levels ``--vq`` takes."""
    return yaml_names(LEVELS_DIR)


def expand_level(data: Dict[str, Any], _seen: Tuple[str, ...] = ()) -> Dict[str, Any]:
    """``data`` (a ``vq:`` mapping) merged onto the level it names, recursively; ``level`` is kept
    so that ``cfg.yaml`` records it. A mapping without ``level`` is returned as it is."""
    name = data.get("level")
    if name is None:
        return data
    if not isinstance(name, str) or name not in level_names():
        raise GsVqError(f"vq.level: unknown compression level {name!r} (levels: {', '.join(level_names())})")
    if name in _seen:
        raise GsVqError(f"vq levels start from each other in a loop: {' -> '.join(_seen + (name,))}")
    base = expand_level(read_yaml(os.path.join(LEVELS_DIR, name + ".yaml")), _seen + (name,))
    return {**merge(base, data), "level": name}
