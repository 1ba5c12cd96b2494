"""Where the training images live during training: on the GPU when they fit, else in pinned host
memory.

Each step copies one view's uint8 pixels to the render device (and converts them there,
:meth:`~gs_vq.data.cameras.Camera.image_float`). From pageable host memory that copy is
synchronous: the host waits for it every step. gsplat's simple_trainer avoids it with a
``DataLoader(pin_memory=True)``; here the images are either moved to the GPU once (when all of them
take at most ``share`` of its free memory: a 185-view 1.6K scene is 0.95 GB as uint8) or pinned
(page-locked), so that the per-step copy runs asynchronously (``non_blocking``). On the CPU
nothing changes.
"""

from typing import Optional, Sequence

import torch

__all__ = ["DEVICE", "PINNED", "HOST", "images_nbytes", "choose_placement", "place_images"]

DEVICE, PINNED, HOST = "device", "pinned", "host"


def images_nbytes(cameras: Sequence) -> int:
    """Bytes of the cameras' stored pixels still in host memory (uint8 as read, or float32)."""
    return sum(c.pixels.numel() * c.pixels.element_size() for c in cameras
               if getattr(c, "pixels", None) is not None and c.pixels.device.type == "cpu")


def choose_placement(nbytes: int, device: str, free_bytes: Optional[int] = None, share: float = 0.25) -> str:
    """``DEVICE`` when ``device`` is CUDA and ``nbytes`` <= ``share`` x ``free_bytes`` (the GPU's
    free memory, bytes), ``PINNED`` on CUDA otherwise, ``HOST`` on any other device."""
    if torch.device(device).type != "cuda":
        return HOST
    return DEVICE if free_bytes is not None and nbytes <= share * free_bytes else PINNED


def place_images(cameras: Sequence, device: str, share: float = 0.25) -> str:
    """Move (``DEVICE``) or pin (``PINNED``) every camera's pixels for training on ``device``, as
    :func:`choose_placement` decides from the GPU's free memory; returns the choice. Masks and
    the CPU reads (``Camera.image``, ``alpha``) are unchanged."""
    free = torch.cuda.mem_get_info(torch.device(device))[0] if torch.device(device).type == "cuda" else None
    where = choose_placement(images_nbytes(cameras), device, free, share)
    if where == HOST:
        return where
    for c in cameras:  # pixels already on a GPU (a second trainer on the same scene) stay there
        if getattr(c, "pixels", None) is not None and c.pixels.device.type == "cpu":
            c.pixels = c.pixels.to(device) if where == DEVICE else c.pixels.pin_memory()
    return where
