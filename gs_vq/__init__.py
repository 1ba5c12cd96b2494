"""gs-vq: compact, language-aware 3D Gaussian Splatting on gsplat.

Public API (everything else is an implementation detail):

- scenes: :func:`load_scene`, :class:`Camera`, :class:`Scene`
- rendering: :func:`rasterize` (``gsplat.rasterization``'s signature; gsplat on CUDA, our CPU
  rasterizer otherwise)
- codebooks: :func:`kmeans`, :func:`hierarchical_kmeans`, :func:`build_quantizer` and the
  quantizer classes (``fit``/``encode``/``decode``)
- training: :class:`TrainConfig`, :func:`make_config`, :class:`Trainer`; the plugin layer
  :class:`Plugin`, :class:`TrainContext`, :func:`register_plugin`, and the plugins
  :class:`VQPlugin` (quantization-aware training) and :class:`SemanticField` (semantic features)
- files: :func:`save_ply`, :func:`load_ply`, :func:`load_splats` (standard or compressed ply)
"""

import os

# Passive OpenMP waiting (set before torch loads its OpenMP runtime): with the default busy
# waiting, every parallel op stalls for a scheduler slice on a shared or oversubscribed CPU
# (measured here: 0.2 -> 8 training steps/s). Set OMP_WAIT_POLICY yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .config import TrainConfig, make_config  # noqa: E402
from .data import Camera, Scene, load_scene  # noqa: E402
from .errors import GsVqError  # noqa: E402
from .io import load_ply, load_splats, save_ply  # noqa: E402
from .plugins import Plugin, TrainContext, register_plugin  # noqa: E402
from .quant import (  # noqa: E402
    AdditiveQuantizer,
    FSQ,
    ProductQuantizer,
    Quantizer,
    ResidualQuantizer,
    ScalarQuantizer,
    SoftIndexQuantizer,
    VectorQuantizer,
    build_quantizer,
    hierarchical_kmeans,
    kmeans,
)
from .render import rasterize  # noqa: E402

__version__ = "0.1.0"


def __getattr__(name):
    """Training-side names load lazily (they import gsplat's strategies)."""
    if name == "Trainer":
        from .trainer import Trainer

        return Trainer
    if name in ("VQPlugin", "VQConfig"):
        from . import vq

        return getattr(vq, name)
    if name in ("SemanticField", "SemanticConfig"):
        from . import semantics

        return getattr(semantics, name)
    raise AttributeError(f"module 'gs_vq' has no attribute {name!r}")


__all__ = [
    "AdditiveQuantizer", "Camera", "FSQ", "GsVqError", "Plugin", "ProductQuantizer", "Quantizer", "ResidualQuantizer",
    "ScalarQuantizer", "Scene", "SemanticConfig", "SemanticField", "SoftIndexQuantizer", "TrainConfig", "TrainContext", "Trainer",
    "VQConfig", "VQPlugin", "VectorQuantizer", "build_quantizer", "hierarchical_kmeans", "kmeans", "load_ply",
    "load_scene", "load_splats", "make_config", "rasterize", "register_plugin", "save_ply",
]
