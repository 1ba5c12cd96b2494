"""k-means for Euclidean and cosine (spherical) distance, full-batch or mini-batch.

Lloyd iterations make one chunked pass over the data each: nearest centre by matrix products
(:mod:`.search`), then per-centre sums and counts by ``index_add_`` / ``bincount``, never a Python
loop over clusters. Centres left without points are re-seeded from the points worst served.
Everything is deterministic for a given ``seed`` (and thread count, which sets the order of the
float sums): random numbers come from a CPU generator and are moved to the data's device, so CPU
and CUDA runs draw the same samples (CUDA's atomic ``index_add_`` may differ in the last bits).

k-means++ seeding is sequential (one pass over the seeding set per centre). To keep it from
dominating at large K it runs on a uniform subsample of at most ``init_max_points`` points
(default ``8 * K``), in the spirit of faiss, which trains on at most 256 points per centre.
"""

from dataclasses import dataclass, field
from typing import Iterable, List, Optional

import torch
from torch import Tensor

from ..errors import GsVqError
from .parallel import cpu_sharded, map_shards
from .search import check_metric, iter_nearest, nearest, prepare, segment_sum

INITS = ("kmeans++", "random")


@dataclass
class KMeansResult:
    """Outcome of :func:`kmeans`.

    Attributes:
        centroids: ``[K, D]`` float32 centres (unit length under the cosine metric).
        assignments: ``[N]`` int64 nearest centre of each point, for the final centres.
        inertia: sum over points of (weight x) squared distance to the assigned centre.
        mse: ``inertia / (sum of weights * D)``, the mean squared error per coordinate.
        counts: ``[K]`` float32 number (total weight) of points per centre.
        history: mse measured at each iteration's assignment step.
    """

    centroids: Tensor
    assignments: Tensor
    inertia: float
    mse: float
    counts: Tensor
    history: List[float] = field(default_factory=list)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _sample_rows(n: int, m: int, gen: torch.Generator, device) -> Tensor:
    """``m`` distinct row indices out of ``n``, uniformly (all rows, in order, when m >= n)."""
    if m >= n:
        return torch.arange(n, device=device)
    return torch.randperm(n, generator=gen)[:m].sort().values.to(device)


def _kmeanspp(
    x: Tensor, k: int, weights: Optional[Tensor], gen: torch.Generator
) -> Tensor:
    """k-means++ (D^2) seeding of ``k`` centres from prepared points ``x [S, D]``.

    Each new centre is drawn with probability proportional to weight x squared distance to the
    nearest centre chosen so far. No host synchronisation: the draws are pre-generated uniforms
    and the sampling is a ``searchsorted`` on the cumulative sum.
    """
    s = x.shape[0]
    uniforms = torch.rand(k, generator=gen, dtype=torch.float64).to(x.device)  # [k]
    x_sq = x.square().sum(dim=1)  # [S]
    centres = x.new_empty(k, x.shape[1])  # [k, D]
    d2 = torch.full((s,), float("inf"), device=x.device)  # [S]
    new = torch.empty_like(d2)
    cdf = torch.empty(s, dtype=torch.float64, device=x.device)
    # The first centre is drawn proportionally to the weights alone.
    prob = torch.ones(s, device=x.device) if weights is None else weights.float()
    for j in range(k):
        torch.cumsum(prob, 0, dtype=torch.float64, out=cdf)  # [S]
        pick = torch.searchsorted(cdf, (uniforms[j] * cdf[-1]).reshape(1), right=True)
        c = x.index_select(0, pick.clamp_max_(s - 1))[0]  # [D]
        centres[j] = c
        torch.addmv(x_sq, x, c, alpha=-2.0, out=new).add_(c.square().sum()).clamp_min_(0.0)
        torch.minimum(d2, new, out=d2)
        prob = d2 if weights is None else weights * d2
    return centres


def _initial_centroids(
    x: Tensor, k: int, init: str, metric: str, weights: Optional[Tensor],
    gen: torch.Generator, init_max_points: Optional[int],
) -> Tensor:
    n = x.shape[0]
    if init == "random":
        rows = _sample_rows(n, k, gen, x.device)
        return prepare(x.index_select(0, rows), metric)
    cap = init_max_points if init_max_points is not None else 8 * k
    rows = _sample_rows(n, max(cap, k), gen, x.device)
    sub = prepare(x.index_select(0, rows), metric)  # [S, D]
    sub_w = None if weights is None else weights.index_select(0, rows)
    return _kmeanspp(sub, k, sub_w, gen)


def _lloyd_pass(x, centroids, metric, chunk_size, weights, d2_out, idx_out):
    """One assignment pass: fills ``d2_out`` / ``idx_out`` ``[N]``, returns sums and counts."""
    k, dim = centroids.shape

    def shard(lo: int, hi: int):
        acc = (centroids.new_zeros(k, dim), centroids.new_zeros(k))  # sums [K, D], counts [K]
        for start, xc, d2, idx in iter_nearest(x[lo:hi], centroids, metric, chunk_size):
            start, stop = lo + start, lo + start + xc.shape[0]
            w = None if weights is None else weights[start:stop].to(xc.device).float()
            segment_sum(xc, idx, k, w, out=acc)
            d2_out[start:stop] = d2
            idx_out[start:stop] = idx
        return acc

    parts = map_shards(shard, x.shape[0], centroids.device)
    sums, counts = parts[0]
    for more_sums, more_counts in parts[1:]:  # in shard order: deterministic
        sums += more_sums
        counts += more_counts
    return sums, counts


def _reseed_dead(centroids, counts, x, d2, metric, max_rounds: int = 64) -> int:
    """Move centres without points onto the points worst served, in place; returns their number.

    Farthest-point style: after each pick the distances ``d2 [N]`` are lowered to account for the
    new centre, so that several dead centres do not all land in the same badly served region.
    Dead centres are handled in at most ``max_rounds`` rounds (one pass over ``x`` each).
    """
    dead = torch.nonzero(counts <= 0).flatten()
    n_dead = min(int(dead.numel()), d2.shape[0])
    if n_dead == 0:
        return 0
    for block in dead[:n_dead].tensor_split(min(n_dead, max_rounds)):
        worst = torch.topk(d2, block.numel()).indices
        fresh = prepare(x.index_select(0, worst.to(x.device)), metric).to(centroids.device)
        centroids[block] = fresh
        d2_fresh, _ = nearest(x, fresh, metric)
        torch.minimum(d2, d2_fresh, out=d2)
    return n_dead


def _finish_centroids(sums, counts, old, metric) -> Tensor:
    """Centres = mean of their points (unit mean direction under cosine); empty ones unchanged."""
    means = sums / counts.clamp_min(1e-12)[:, None]
    if metric == "cosine":
        means = torch.nn.functional.normalize(means, dim=1)
    return torch.where((counts > 0)[:, None], means, old)


def _weighted_inertia(d2: Tensor, weights: Optional[Tensor]) -> float:
    if weights is None:
        return float(d2.double().sum())
    return float((d2.double() * weights.to(d2.device).double()).sum())


@torch.no_grad()
@cpu_sharded
def kmeans(
    x: Tensor,
    k: int,
    iters: int = 25,
    init: str = "kmeans++",
    metric: str = "l2",
    seed: int = 0,
    init_centroids: Optional[Tensor] = None,
    chunk_size: Optional[int] = None,
    batch_size: Optional[int] = None,
    weights: Optional[Tensor] = None,
    init_max_points: Optional[int] = None,
    tol: float = 0.0,
) -> KMeansResult:
    """Cluster ``x [N, D]`` into ``k`` centres.

    Args:
        x: ``[N, D]`` points, CPU or CUDA, any float dtype (computed in float32).
        k: number of centres, ``1 <= k <= N``.
        iters: Lloyd iterations (full batch), or mini-batch steps when ``batch_size`` is set.
        init: ``"kmeans++"`` (D^2 seeding on a subsample of ``init_max_points``) or ``"random"``
            (``k`` distinct points drawn uniformly, as faiss does).
        metric: ``"l2"`` or ``"cosine"`` (spherical k-means: unit-length points and centres).
        seed: seed of every random draw; equal seeds give equal results.
        init_centroids: ``[k, D]`` warm start; replaces ``init``.
        chunk_size: rows per distance block (default: 8 MiB blocks).
        batch_size: mini-batch mode (Sculley 2010): each step assigns ``batch_size`` random points
            and moves each centre towards their mean with rate 1 / (points it has seen so far).
        weights: optional ``[N]`` non-negative point weights.
        init_max_points: size of the k-means++ seeding subsample (default ``8 * k``).
        tol: stop early when the relative decrease of the mse falls below ``tol`` (full batch).

    Returns:
        :class:`KMeansResult`; assignments and mse are measured against the final centres with
        one extra assignment pass.
    """
    check_metric(metric)
    if init not in INITS:
        raise GsVqError(f"unknown k-means init {init!r}: expected one of {', '.join(INITS)}")
    if x.dim() != 2:
        raise GsVqError(f"k-means expects [N, D] points, got shape {tuple(x.shape)}")
    n, dim = x.shape
    if not 1 <= k <= n:
        raise GsVqError(f"k-means needs 1 <= k <= N, got k={k} for N={n} points")
    if weights is not None and weights.shape != (n,):
        raise GsVqError(f"weights must have shape [{n}], got {tuple(weights.shape)}")
    gen = _generator(seed)
    if init_centroids is not None:
        if tuple(init_centroids.shape) != (k, dim):
            raise GsVqError(
                f"init_centroids must be [{k}, {dim}], got {tuple(init_centroids.shape)}"
            )
        centroids = prepare(init_centroids.to(x.device), metric).clone()
    else:
        centroids = _initial_centroids(x, k, init, metric, weights, gen, init_max_points)

    if batch_size is not None:
        centroids = _minibatch(x, centroids, iters, metric, chunk_size, batch_size, weights, gen)
        history: List[float] = []
    else:
        centroids, history = _lloyd(x, centroids, iters, metric, chunk_size, weights, tol)

    d2 = torch.empty(n, device=centroids.device)
    idx = torch.empty(n, dtype=torch.int64, device=centroids.device)
    _, counts = _lloyd_pass(x, centroids, metric, chunk_size, weights, d2, idx)
    inertia = _weighted_inertia(d2, weights)
    total_w = n if weights is None else float(weights.double().sum())
    return KMeansResult(
        centroids=centroids,
        assignments=idx,
        inertia=inertia,
        mse=inertia / max(total_w * dim, 1e-30),
        counts=counts,
        history=history,
    )


def _lloyd(x, centroids, iters, metric, chunk_size, weights, tol):
    n = x.shape[0]
    d2 = torch.empty(n, device=centroids.device)
    idx = torch.empty(n, dtype=torch.int64, device=centroids.device)
    total_w = n if weights is None else float(weights.double().sum())
    history: List[float] = []
    for _ in range(iters):
        sums, counts = _lloyd_pass(x, centroids, metric, chunk_size, weights, d2, idx)
        history.append(_weighted_inertia(d2, weights) / max(total_w * x.shape[1], 1e-30))
        centroids = _finish_centroids(sums, counts, centroids, metric)
        _reseed_dead(centroids, counts, x, d2, metric)
        if tol > 0 and len(history) > 1 and history[-2] - history[-1] <= tol * history[-2]:
            break
    return centroids, history


def _minibatch(x, centroids, steps, metric, chunk_size, batch_size, weights, gen):
    """Mini-batch k-means: per-centre learning rate 1 / (weight seen), dead centres re-seeded."""
    n, k = x.shape[0], centroids.shape[0]
    seen = centroids.new_zeros(k)  # [K]
    for _ in range(steps):
        rows = torch.randint(0, n, (min(batch_size, n),), generator=gen).to(x.device)
        xb = x.index_select(0, rows)  # [B, D]
        wb = None if weights is None else weights.index_select(0, rows)
        d2 = torch.empty(xb.shape[0], device=centroids.device)
        idx = torch.empty(xb.shape[0], dtype=torch.int64, device=centroids.device)
        sums, counts = _lloyd_pass(xb, centroids, metric, chunk_size, wb, d2, idx)
        seen += counts
        step = (sums - counts[:, None] * centroids) / seen.clamp_min(1e-12)[:, None]
        centroids = centroids + step
        if metric == "cosine":
            centroids = torch.nn.functional.normalize(centroids, dim=1)
        _reseed_dead(centroids, seen, xb, d2, metric)
    return centroids


@torch.no_grad()
def hierarchical_kmeans(
    chunks: Iterable[Tensor],
    k_per_chunk: int,
    k: int,
    metric: str = "l2",
    iters: int = 25,
    chunk_iters: int = 10,
    init: str = "kmeans++",
    seed: int = 0,
    chunk_size: Optional[int] = None,
) -> KMeansResult:
    """Two-level k-means for data that does not fit at once.

    Each chunk (for example one view's ``[H*W, F]`` feature map) is clustered into ``k_per_chunk``
    centres (all its points are kept when it has fewer); the union of these centres, weighted by
    their cluster sizes, is then clustered into ``k`` centres. Only one chunk is in memory at a
    time.

    Args:
        chunks: iterable of ``[n_i, D]`` tensors (any device; results live on the first one's).
        k_per_chunk: centres per chunk at the first level.
        k: final number of centres.
        metric, init, seed, chunk_size: as in :func:`kmeans`; chunk ``i`` uses ``seed + i``.
        iters / chunk_iters: Lloyd iterations at the second / first level.

    Returns:
        :class:`KMeansResult` whose ``assignments [sum_i k_i]`` map each first-level centre (in
        chunk order) to its final centre, ``counts`` are the final clusters' point counts, and
        ``inertia`` adds both levels' errors (exact for l2 up to the first level's last update;
        an estimate under cosine).
    """
    check_metric(metric)
    centres, sizes = [], []
    inertia1, total, dim = 0.0, 0.0, None
    for i, chunk in enumerate(chunks):
        if chunk.dim() != 2 or chunk.shape[0] == 0:
            shape = tuple(chunk.shape)
            raise GsVqError(f"chunk {i} must be a non-empty [n, D] tensor, got {shape}")
        dim = chunk.shape[1] if dim is None else dim
        if chunk.shape[1] != dim:
            raise GsVqError(f"chunk {i} has {chunk.shape[1]} dims, expected {dim}")
        device = centres[0].device if centres else chunk.device
        if chunk.shape[0] <= k_per_chunk:
            centres.append(prepare(chunk, metric).to(device))
            sizes.append(torch.ones(chunk.shape[0], device=device))
        else:
            r = kmeans(
                chunk, k_per_chunk, chunk_iters, init, metric, seed + i, chunk_size=chunk_size
            )
            centres.append(r.centroids.to(device))
            sizes.append(r.counts.to(device))
            inertia1 += r.inertia
        total += chunk.shape[0]
    if not centres:
        raise GsVqError("hierarchical k-means got no chunks")
    union, weights = torch.cat(centres), torch.cat(sizes)  # [M, D], [M]
    if union.shape[0] < k:
        raise GsVqError(
            f"hierarchical k-means: only {union.shape[0]} first-level centres for k={k}"
        )
    top = kmeans(union, k, iters, init, metric, seed, chunk_size=chunk_size, weights=weights)
    inertia = inertia1 + top.inertia
    return KMeansResult(
        centroids=top.centroids,
        assignments=top.assignments,
        inertia=inertia,
        mse=inertia / max(total * dim, 1e-30),
        counts=top.counts,
        history=top.history,
    )

