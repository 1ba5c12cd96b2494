"""Nearest-code search, chunked so that memory stays bounded.

Squared Euclidean distances are computed through one matrix product per chunk,
``|x|^2 - 2 x.c + |c|^2`` (``torch.addmm``), and the argmin is fused per chunk: only the
``[chunk, K]`` distance block of the current chunk exists at any time. The same code runs on
CPU and CUDA tensors, in float32.

On CPU the rows are split into one shard per thread, run concurrently (:mod:`.parallel`), and
codes of at most 16 dims go through a compiled kernel (:mod:`.ext`) that keeps each point's
distances in cache and never writes the ``[chunk, K]`` block.

``metric="cosine"`` normalises points and codes to unit length first; the squared distance between
unit vectors is ``2 - 2 cos``, so the nearest code is the one of largest cosine similarity.
"""

from typing import Iterator, Optional, Tuple

import torch
from torch import Tensor

from . import ext
from ..errors import GsVqError
from .parallel import cpu_sharded, map_shards

METRICS = ("l2", "cosine")

# Floats in one [chunk, K] distance block: 2^21 floats = 8 MiB (512 rows at K = 4096); smaller
# blocks are no faster and mean more parallel regions, which hurts on a loaded machine.
_BLOCK_FLOATS = 1 << 21
_GPU_BLOCK_FLOATS = 1 << 26  # 256 MiB per block on a GPU
# Width of the groups of the two-level argmin (see `_row_argmin`).
_GROUP = 128


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise GsVqError(f"unknown metric {metric!r}: expected one of {', '.join(METRICS)}")
    return metric


def default_chunk_size(k: int, device=None) -> int:
    """Rows per chunk so that a ``[chunk, K]`` distance block holds about 2^21 floats (8 MiB,
    cache-sized) on the CPU, or 2^26 floats (256 MiB) on a GPU: there each chunk is a few kernel
    launches, and millions of Gaussians in 8 MiB blocks would mean thousands of tiny ones."""
    if device is not None and torch.device(device).type == "cuda":
        return int(min(1 << 20, max(1024, _GPU_BLOCK_FLOATS // max(k, 1))))
    return int(min(1 << 16, max(64, _BLOCK_FLOATS // max(k, 1))))


def prepare(x: Tensor, metric: str = "l2") -> Tensor:
    """Points as float32 ``[n, D]``, unit length under the cosine metric."""
    x = x.float()
    if metric == "cosine":
        x = torch.nn.functional.normalize(x, dim=-1)
    return x


def segment_sum(
    values: Tensor,
    index: Tensor,
    k: int,
    weights: Optional[Tensor] = None,
    out: Optional[Tuple[Tensor, Tensor]] = None,
) -> Tuple[Tensor, Tensor]:
    """Per-segment sums and sizes: no Python loop over segments.

    Args:
        values: ``[n, D]`` rows to add up.
        index: ``[n]`` int64 segment of each row, in ``[0, k)``.
        k: number of segments.
        weights: optional ``[n]`` row weights.
        out: ``(sums [k, D], counts [k])`` to add into (accumulation over chunks).

    Returns:
        sums ``[k, D]`` and counts ``[k]`` (sum of weights; 0 for empty segments), float.
    """
    if out is None:
        out = (values.new_zeros(k, values.shape[1]), values.new_zeros(k))
    sums, counts = out
    sums.index_add_(0, index, values if weights is None else values * weights[:, None])
    segment_count(index, k, weights, out=counts)
    return sums, counts


def segment_count(index: Tensor, k: int, weights: Optional[Tensor] = None, out: Optional[Tensor] = None,
                  dtype: Optional[torch.dtype] = None) -> Tensor:
    """``[k]`` rows (or summed ``weights [n]``) per segment of ``index [n]`` (int64 in ``[0, k)``).

    ``torch.bincount``'s result, by ``index_add_``: bincount reads the largest index back to the
    host (a CUDA sync, every step in the training plugin), this does not. Counts are exact while
    they stay below 2^24 in float32. ``out``: ``[k]`` to add into; else a new tensor of ``dtype``
    (default: ``weights``' dtype, or float32).
    """
    if out is None:
        dtype = dtype or (weights.dtype if weights is not None else torch.float32)
        out = torch.zeros(k, dtype=dtype, device=index.device)
    ones = weights if weights is not None else torch.ones((), dtype=out.dtype, device=out.device).expand(index.shape[0])
    return out.index_add_(0, index, ones.to(out.dtype))


def segment_mean(values: Tensor, index: Tensor, table: Tensor, weights: Optional[Tensor] = None) -> Tensor:
    """Mean (``weights``-weighted) of the rows of each segment; segments without rows (or weight)
    keep their row of ``table``.

    Args:
        values: ``[n, D]``; index: ``[n]`` int64 in ``[0, K)``; table: ``[K, D]`` current rows;
        weights: optional ``[n]`` non-negative row weights.

    Returns:
        ``[K, D]`` new table (``table`` itself is not modified).
    """
    sums, counts = segment_sum(values.to(table.dtype), index, table.shape[0], weights)
    filled = counts > 0
    return torch.where(filled[:, None], sums / counts.clamp_min(1)[:, None], table)


def _padded_codes(centroids: Tensor, shift: Tensor) -> Tuple[Tensor, Tensor]:
    """Transposed, shifted codes ``[D, Kp]`` and their squared norms ``[Kp]``.

    When the two-level argmin is used, K is padded to a multiple of the group width with dummy
    codes whose squared norm is +inf, so that they never win.
    """
    k, d = centroids.shape
    kp = k if k <= 4 * _GROUP else -(-k // _GROUP) * _GROUP
    ct = centroids.new_zeros(d, kp)  # [D, Kp]
    ct[:, :k] = (centroids - shift).T
    c_sq = centroids.new_full((kp,), float("inf"))  # [Kp]
    c_sq[:k] = ct[:, :k].square().sum(0)
    return ct, c_sq


def _row_argmin(dist: Tensor) -> Tensor:
    """Row-wise argmin ``[n]`` of ``[n, Kp]``, first index on ties (as ``torch.argmin``).

    ``torch.argmin(dim=1)`` runs a scalar loop on CPU, several times slower than the distance
    product itself at K = 4096. For wide rows we take the vectorised ``amin`` over groups of 128
    columns, pick the first group holding the row minimum, and search only inside it.
    """
    n, kp = dist.shape
    if kp <= 4 * _GROUP:
        return dist.argmin(dim=1)
    groups = dist.view(n, kp // _GROUP, _GROUP)  # [n, G, W]
    best_group = groups.amin(dim=2).argmin(dim=1)  # [n]
    inside = groups[torch.arange(n, device=dist.device), best_group]  # [n, W]
    return best_group * _GROUP + inside.argmin(dim=1)


def iter_nearest(
    x: Tensor,
    centroids: Tensor,
    metric: str = "l2",
    chunk_size: Optional[int] = None,
) -> Iterator[Tuple[int, Tensor, Tensor, Tensor]]:
    """Walk over ``x`` in chunks, yielding each chunk's nearest codes.

    Args:
        x: ``[N, D]`` points (any float dtype, any device; moved to the codes' device per chunk).
        centroids: ``[K, D]`` codes, already unit length under the cosine metric.
        metric: ``"l2"`` or ``"cosine"``.
        chunk_size: rows per chunk (default: a ``[chunk, K]`` block of 8 MiB).

    Yields:
        ``(start, xc, d2, idx)``: chunk offset, the prepared chunk ``[n, D]`` (float32, unit length
        under cosine), squared distance to the nearest code ``[n]`` and its index ``[n]`` int64.
    """
    check_metric(metric)
    n_points, dim = x.shape
    k = centroids.shape[0]
    if centroids.shape[1] != dim:
        raise GsVqError(f"points have {dim} dims but the codebook has {centroids.shape[1]}")
    centroids = centroids.float()
    # Distances are translation invariant; centring on the codes' mean keeps |x|^2 - 2x.c + |c|^2
    # accurate in float32 when the data sit far from the origin (log-scales, for example).
    shift = centroids.mean(dim=0)  # [D]
    fused = ext.usable(centroids, dim)  # low D on CPU: the compiled kernel, no [n, K] block
    if fused:
        codes = (centroids - shift).contiguous()  # [K, D]
        c_sq = codes.square().sum(dim=1)  # [K]
        rows = chunk_size or default_chunk_size(k, centroids.device)
    else:
        ct, c_sq = _padded_codes(centroids, shift)  # [D, Kp], [Kp]
        rows = chunk_size or default_chunk_size(ct.shape[1], ct.device)
        block = torch.empty(min(rows, max(n_points, 1)), ct.shape[1], device=ct.device)  # [rows, Kp]
    for start in range(0, n_points, rows):
        xc = prepare(x[start : start + rows].to(centroids.device), metric)  # [n, D]
        xs = xc - shift
        if fused:
            idx = ext.nearest_small(xs.contiguous(), codes, c_sq)  # [n]
        else:
            dist = torch.addmm(c_sq, xs, ct, alpha=-2.0, out=block[: xs.shape[0]])  # [n, Kp]
            idx = _row_argmin(dist).clamp_max_(k - 1)  # [n]
        # The expanded form loses precision to cancellation; the winner's distance is cheap to
        # recompute exactly (O(n D) against the O(n K D) product).
        d2 = (xc - centroids.index_select(0, idx)).square().sum(dim=1)  # [n]
        yield start, xc, d2, idx


def nearest(
    x: Tensor, centroids: Tensor, metric: str = "l2", chunk_size: Optional[int] = None
) -> Tuple[Tensor, Tensor]:
    """Nearest code of each point: ``(d2 [N] float32 squared distance, idx [N] int64)``."""
    n = x.shape[0]
    d2 = torch.empty(n, device=centroids.device)
    idx = torch.empty(n, dtype=torch.int64, device=centroids.device)

    def shard(lo: int, hi: int) -> None:
        for start, _, d2_c, idx_c in iter_nearest(x[lo:hi], centroids, metric, chunk_size):
            d2[lo + start : lo + start + d2_c.shape[0]] = d2_c
            idx[lo + start : lo + start + idx_c.shape[0]] = idx_c

    map_shards(shard, n, centroids.device)
    return d2, idx


@torch.no_grad()
@cpu_sharded
def assign(
    x: Tensor, centroids: Tensor, metric: str = "l2", chunk_size: Optional[int] = None
) -> Tensor:
    """Index ``[N]`` int64 of the nearest code in ``centroids [K, D]`` for each row of ``x [N, D]``.

    Under ``metric="cosine"`` both sides are normalised, so the code of largest cosine wins.
    """
    if metric == "cosine":
        centroids = prepare(centroids, metric)
    return nearest(x, centroids, metric, chunk_size)[1]
