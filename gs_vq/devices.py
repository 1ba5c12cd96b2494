"""Device helpers shared by the trainer and its plugins: timing that waits for the GPU, and
random-generator states that survive ``torch.load(map_location=...)``.

- CUDA kernels run asynchronously: a wall-clock interval around GPU work measures only the
  launches unless the device is synchronized at both ends (:func:`synchronize`, :func:`timed`).
- ``torch.Generator`` objects used for sampling live on the CPU, and ``Generator.set_state``
  takes only a CPU ``uint8`` tensor. A checkpoint loaded with ``map_location="cuda"`` moves every
  tensor in it, generator states included; :func:`rng_state` therefore stores the state as
  ``bytes`` (untouched by ``map_location``) and :func:`set_rng_state` accepts both that and the
  tensor of older checkpoints, on any device.
"""

import time
from contextlib import contextmanager
from typing import Dict, Iterator, Union

import torch
from torch import Tensor

__all__ = ["synchronize", "timed", "rng_state", "set_rng_state"]


def synchronize(device: Union[str, torch.device, None]) -> None:
    """Wait for queued kernels on ``device`` (a no-op for the CPU)."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def timed(seconds: Dict[str, float], key: str, device: Union[str, torch.device, None] = None) -> Iterator[None]:
    """Add the wall time of the ``with`` block to ``seconds[key]``, the device's queued work
    included (synchronized before and after)."""
    synchronize(device)
    t0 = time.perf_counter()
    yield
    synchronize(device)
    seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - t0


def rng_state(generator: torch.Generator) -> bytes:
    """The state of a CPU ``generator`` as ``bytes`` (safe in checkpoints loaded onto any device)."""
    return bytes(generator.get_state().numpy().tobytes())


def set_rng_state(generator: torch.Generator, state: Union[bytes, Tensor]) -> None:
    """Restore ``generator`` from :func:`rng_state`'s bytes or a ``get_state()`` tensor that may
    have been moved to another device by ``map_location``."""
    if isinstance(state, (bytes, bytearray)):
        state = torch.frombuffer(bytearray(state), dtype=torch.uint8)
    else:
        state = state.detach().to(device="cpu", dtype=torch.uint8)
    generator.set_state(state.clone())
