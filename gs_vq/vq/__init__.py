"""Quantization-aware training plugin (Compact3D-style) and compressed export.

:class:`VQPlugin` (:mod:`.plugin`) wires the pieces: :mod:`.config` (the ``vq:`` section),
:mod:`.schedule` (what happens at which step), :mod:`.codes` (the per-Gaussian code table carried
through gsplat's ops), :mod:`.fit` and :mod:`.slot` (the quantizers), :mod:`.state` (checkpoint
state) and :mod:`.export` (compressed.ply). See ARCHITECTURE.md and docs/simple_trainer_vq.md.
"""

from .codes import CODES_KEY, CodeTable
from .config import VQConfig, compact3d_attributes, default_attributes
from .export import COMPRESSED_NAME, compressed_scene, export_compressed, standard_ply_bytes
from .plugin import VQPlugin
from .schedule import VQSchedule
from .state import VQState

__all__ = ["CODES_KEY", "COMPRESSED_NAME", "CodeTable", "VQConfig", "VQPlugin", "VQSchedule", "VQState",
           "compact3d_attributes", "compressed_scene", "default_attributes", "export_compressed",
           "standard_ply_bytes"]
