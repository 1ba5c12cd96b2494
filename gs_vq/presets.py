"""Which YAML preset ``train.py`` uses when no ``--config`` is given, chosen by device.

On CUDA the default is gsplat's ``examples/simple_trainer.py`` recipe (``configs/gpu.yaml``:
30k steps, densification from step 500 to 15k, so ``--vq`` quantizes after densification as in
Compact3D). On the CPU it is ``configs/cpu.yaml`` (3000 steps): the GPU recipe would take days.
"""

from typing import Tuple

__all__ = ["default_preset"]


def default_preset(device: str) -> Tuple[str, str]:
    """``(preset name in configs/, reason)`` for training on ``device`` ("cpu" or "cuda")."""
    if device == "cuda":
        return "gpu", ("no --config given and training on CUDA: gsplat's simple_trainer recipe "
                       "(30k steps, densification 500-15k)")
    return "cpu", ("no --config given and training on the CPU: the CPU preset (3000 steps); "
                   "gsplat's 30k-step GPU recipe would take days without a GPU")
