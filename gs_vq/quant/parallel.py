"""Row-sharded CPU execution that stays fast on a loaded machine.

ATen and MKL parallelise each operation with OpenMP: every op of a chunked loop is a parallel
region closed by a barrier. When the machine is oversubscribed (other processes compete for the
cores), a preempted thread stalls every barrier: a k-means pass of a few thousand small regions was
measured 5 to 20 times slower with 2 threads than with 1. So the library runs its ops with one
intra-op thread (:func:`single_threaded_ops`, restored on exit) and parallelises explicitly: the
heavy passes split their rows into one contiguous shard per thread and run the shards concurrently
on Python threads (the ops release the GIL), with no barriers; a preempted worker only delays its
own shard. On CUDA tensors, or with one thread, a pass simply runs once over all rows.
"""

import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator, List, TypeVar

import torch

T = TypeVar("T")

# Below this many rows per worker, sharding is not worth a thread pool.
MIN_ROWS_PER_WORKER = 2048

_local = threading.local()


def workers() -> int:
    """Threads available to :func:`map_shards`: torch's thread count outside the library."""
    return getattr(_local, "workers", None) or torch.get_num_threads()


@contextmanager
def single_threaded_ops() -> Iterator[None]:
    """Run torch ops with one intra-op thread for the duration; the count is restored after."""
    before = torch.get_num_threads()
    if before == 1:
        yield
        return
    _local.workers = before
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        _local.workers = None


def cpu_sharded(fn: Callable) -> Callable:
    """Decorator: run ``fn`` inside :func:`single_threaded_ops` (its passes use map_shards)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with single_threaded_ops():
            return fn(*args, **kwargs)

    return wrapper


def map_shards(fn: Callable[[int, int], T], n_rows: int, device) -> List[T]:
    """``[fn(start, stop) for each shard]``: contiguous row shards, one per thread, run
    concurrently on CPU. ``fn`` must only write to its own rows of shared outputs."""
    count = workers()
    if torch.device(device).type != "cpu" or count <= 1 or n_rows < 2 * MIN_ROWS_PER_WORKER:
        return [fn(0, n_rows)]
    count = min(count, n_rows // MIN_ROWS_PER_WORKER)
    bounds = [n_rows * i // count for i in range(count + 1)]

    def run(i: int) -> T:
        torch.set_num_threads(1)  # this thread's OpenMP setting (new threads start at the default)
        return fn(bounds[i], bounds[i + 1])

    with single_threaded_ops(), ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))
