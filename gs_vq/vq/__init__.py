"""Quantization-aware training plugin (Compact3D-style) and compressed export.

``VQPlugin`` attaches to gsplat-style splats and optimizers and is driven through the trainer
plugin hooks (see ARCHITECTURE.md and docs/simple_trainer_vq.md).
"""

from .config import VQConfig, compact3d_attributes, default_attributes
from .export import COMPRESSED_NAME, compressed_scene, export_compressed, standard_ply_bytes
from .plugin import CODES_KEY, VQPlugin

__all__ = ["CODES_KEY", "COMPRESSED_NAME", "VQConfig", "VQPlugin", "compact3d_attributes",
           "compressed_scene", "default_attributes", "export_compressed", "standard_ply_bytes"]
