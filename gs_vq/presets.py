"""Which YAML preset ``train.py`` uses when no ``--config`` is given, chosen by device.

On CUDA the default is gsplat's ``examples/simple_trainer.py`` recipe (``configs/gpu.yaml``:
30k steps, densification from step 500 to 15k, so ``--vq`` quantizes after densification as in
Compact3D). On the CPU it is ``configs/cpu.yaml`` (3000 steps): the GPU recipe would take days.

A named preset with a GPU form (``configs/<name>_gpu.yaml``: ``mcmc``, ``semantic``) is swapped
for it on CUDA (:func:`device_form`), so ``--config mcmc`` means simple_trainer's MCMC recipe
there and the 3000-step CPU schedule on the CPU. A YAML file given by path is used as it is.
"""

import os
from typing import Optional, Tuple

__all__ = ["default_preset", "device_form"]


def default_preset(device: str) -> Tuple[str, str]:
    """``(preset name in configs/, reason)`` for training on ``device`` ("cpu" or "cuda")."""
    if device == "cuda":
        return "gpu", ("no --config given and training on CUDA: gsplat's simple_trainer recipe "
                       "(30k steps, densification 500-15k)")
    return "cpu", ("no --config given and training on the CPU: the CPU preset (3000 steps); "
                   "gsplat's 30k-step GPU recipe would take days without a GPU")


def device_form(config: str, device: str) -> Tuple[str, Optional[str]]:
    """``(preset, note)``: ``config`` itself, or on CUDA its GPU form ``<config>_gpu`` when the
    package ships one (``note`` then says so in one line)."""
    from .config import CONFIG_DIR

    gpu = f"{config}_gpu"
    if device != "cuda" or os.path.exists(config) or not os.path.isfile(os.path.join(CONFIG_DIR, gpu + ".yaml")):
        return config, None
    return gpu, (f"[gs-vq] preset '{gpu}': --config {config} on CUDA is its GPU form (gsplat's 30k-step "
                 f"schedule); pass gs_vq/configs/{config}.yaml by path for the CPU schedule")
