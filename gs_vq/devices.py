"""Device helpers shared by the trainer and its plugins: timing that waits for the GPU, and
random-generator states that survive ``torch.load(map_location=...)``.

- CUDA kernels run asynchronously: a wall-clock interval around GPU work measures only the
  launches. :class:`BlockTimer` times blocks with CUDA events instead, read in one wait, so
  timing a per-step hook costs no host synchronisation.
- ``torch.Generator`` objects used for sampling live on the CPU, and ``Generator.set_state``
  takes only a CPU ``uint8`` tensor. A checkpoint loaded with ``map_location="cuda"`` moves every
  tensor in it, generator states included; :func:`rng_state` therefore stores the state as
  ``bytes`` (untouched by ``map_location``) and :func:`set_rng_state` accepts both that and the
  tensor of older checkpoints, on any device.
"""

import time
from contextlib import contextmanager
from typing import Dict, Iterator, List, Tuple, Union

import torch
from torch import Tensor

__all__ = ["synchronize", "BlockTimer", "rng_state", "set_rng_state"]


def synchronize(device: Union[str, torch.device, None]) -> None:
    """Wait for queued kernels on ``device`` (a no-op for the CPU)."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


class BlockTimer:
    """Wall time of ``with timer.block(seconds, key):`` blocks, the device's work included, added
    to ``seconds[key]``, without a host synchronisation per block.

    On the CPU a block is timed with ``perf_counter`` at both ends. On CUDA a pair of CUDA events
    is recorded around it; the times reach ``seconds`` at :meth:`settle` (one wait for the last
    event), which the owner calls before it reads ``seconds`` (and which runs by itself every
    ``max_pending`` blocks). An event pair measures the stream's time from the start event to the
    end event: the block's GPU work, and the host time in between when the GPU waits on the host.
    """

    def __init__(self, device: Union[str, torch.device, None] = None, max_pending: int = 4096):
        self.cuda = device is not None and torch.device(device).type == "cuda"
        self.max_pending = max_pending
        self._pending: List[Tuple[Dict[str, float], str, object, object]] = []

    @contextmanager
    def block(self, seconds: Dict[str, float], key: str) -> Iterator[None]:
        if not self.cuda:
            t0 = time.perf_counter()
            yield
            seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - t0
            return
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        yield
        end.record()
        self._pending.append((seconds, key, start, end))
        if len(self._pending) >= self.max_pending:
            self.settle()

    def settle(self) -> None:
        """Add the pending CUDA blocks' times to their ``seconds`` (waits for the last one)."""
        if not self._pending:
            return
        self._pending[-1][3].synchronize()
        for seconds, key, start, end in self._pending:
            seconds[key] = seconds.get(key, 0.0) + start.elapsed_time(end) / 1000.0  # ms -> s
        self._pending.clear()


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
