"""Quantizers whose reconstruction is a sum of codewords, and residual quantization (RVQ).

``x_hat = sum_m C_m[b_m]`` with M full-dimensional codebooks ``C_m [K, D]``. Residual quantization
trains the codebooks greedily, stage ``m`` by k-means on what stages ``< m`` leave over, and encodes
by beam search (as faiss's ResidualQuantizer does, beam 5 by default).
"""

from typing import Optional

import torch
from torch import Tensor

from ..errors import GsVqError
from .base import Quantizer
from .kmeans import kmeans
from .parallel import cpu_sharded, map_shards
from .search import default_chunk_size, nearest, segment_count, segment_mean, segment_sum

# Largest K * K co-occurrence table the codebook update builds (4 MiB of float32 at K = 1024).
_MAX_PAIR_TABLE = 1 << 20


@cpu_sharded
def beam_search(
    x: Tensor, codebooks: Tensor, beam_size: int = 5, chunk_size: Optional[int] = None
) -> Tensor:
    """Sequential encoding of ``x [N, D]`` with codebooks ``[M, K, D]``, keeping the best partial
    encodings (smallest residual norm) at each stage.

    Returns ``[N, M]`` int64 codes of the best complete encoding. ``beam_size = 1`` is greedy
    residual encoding. Memory: one ``[chunk, beam, K]`` block of distances at a time.
    """
    n, dim = x.shape
    num_books, k, _ = codebooks.shape
    if beam_size <= 1:
        return _greedy(x, codebooks, chunk_size)
    rows = chunk_size or default_chunk_size(beam_size * k, codebooks.device)
    codes = torch.empty(n, num_books, dtype=torch.int64, device=codebooks.device)
    norms = codebooks.square().sum(dim=2)  # [M, K]

    def encode_rows(lo: int, hi: int) -> None:
        res = x[lo:hi].to(codebooks.device).float()[:, None, :]  # [n, 1, D]
        err = res.square().sum(dim=2)  # [n, B]
        path = torch.empty(res.shape[0], 1, 0, dtype=torch.int64, device=res.device)  # [n, B, m]
        for m in range(num_books):
            # |r - c|^2 = |r|^2 - 2 r.c + |c|^2 for every (beam entry, code) pair.
            cand = torch.addmm(norms[m], res.reshape(-1, dim), codebooks[m].T, alpha=-2.0)
            cand = cand.view(res.shape[0], -1, k).add_(err[:, :, None])  # [n, B, K]
            flat = smallest(cand.view(res.shape[0], -1), min(beam_size, cand.shape[1] * k))
            parent, code = flat // k, flat % k
            res = torch.gather(res, 1, parent[:, :, None].expand(-1, -1, dim)) - codebooks[m][code]
            err = res.square().sum(dim=2)  # exact residual norms, no drift across stages
            path = torch.gather(path, 1, parent[:, :, None].expand(-1, -1, m))
            path = torch.cat([path, code[:, :, None]], dim=2)
        codes[lo:hi] = path[:, 0]

    def shard(lo: int, hi: int) -> None:
        for start in range(lo, hi, rows):
            encode_rows(start, min(start + rows, hi))

    map_shards(shard, n, codebooks.device)
    return codes


def smallest(values: Tensor, count: int, group: int = 32) -> Tensor:
    """Column indices ``[n, count]`` of the ``count`` smallest entries of each row of ``values
    [n, L]``, in increasing order.

    ``topk`` is slow on long rows on CPU; the ``count`` smallest entries always lie in the ``count``
    groups (of ``group`` columns) with the smallest minima, so ``topk`` only runs over the
    vectorised group minima and then over the ``count * group`` entries of the chosen groups.
    """
    n, length = values.shape
    if length % group or length < 8 * group or count > length // group:
        return _few_smallest(values, count)
    groups = values.view(n, length // group, group)  # [n, G, W]
    best = _few_smallest(groups.amin(dim=2), count)  # [n, c]
    inside = torch.gather(groups, 1, best[:, :, None].expand(-1, -1, group))  # [n, c, W]
    pos = _few_smallest(inside.flatten(1), count)  # [n, c]
    return torch.gather(best, 1, pos // group) * group + pos % group


def _few_smallest(values: Tensor, count: int) -> Tensor:
    """``topk(count, largest=False)`` indices; for small counts, repeated argmin is much faster
    than ``topk``'s per-row partial sort on CPU."""
    if count > 8:
        return values.topk(count, dim=1, largest=False, sorted=True).indices
    work = values.clone()
    out = torch.empty(values.shape[0], count, dtype=torch.int64, device=values.device)
    for j in range(count):
        out[:, j] = work.argmin(dim=1)
        work.scatter_(1, out[:, j : j + 1], float("inf"))
    return out


def sum_codewords(codes: Tensor, codebooks) -> Tensor:
    """``[N, D]`` sum over ``m < codes.shape[1]`` of ``codebooks[m][codes[:, m]]``."""
    out = codebooks[0].new_zeros(codes.shape[0], codebooks[0].shape[1])  # [N, D]
    for m in range(codes.shape[1]):
        out += codebooks[m].index_select(0, codes[:, m])
    return out


def _greedy(x: Tensor, codebooks: Tensor, chunk_size: Optional[int]) -> Tensor:
    """Greedy residual encoding: each stage takes the code nearest to what is left."""
    res = x.to(codebooks.device).float().clone()  # [N, D]
    codes = []
    for table in codebooks:
        _, idx = nearest(res, table, "l2", chunk_size)
        res -= table.index_select(0, idx)
        codes.append(idx)
    return torch.stack(codes, dim=1)  # [N, M]


class SumQuantizer(Quantizer):
    """Base of RVQ and AQ: M codebooks ``[K, D]`` whose selected codewords add up to x."""

    decode_rule = "sum"

    def __init__(self, dim: int, num_codebooks: int, codebook_size: int, chunk_size=None):
        super().__init__(dim)
        if int(num_codebooks) < 1 or int(codebook_size) < 1:
            raise GsVqError("num_codebooks and codebook_size must be >= 1")
        self.chunk_size = chunk_size
        self._register_codebooks([(int(codebook_size), self.dim)] * int(num_codebooks))

    def stacked(self) -> Tensor:
        """Codebooks as one ``[M, K, D]`` tensor (a copy)."""
        return torch.stack(self.codebooks)

    def _decode(self, codes: Tensor) -> Tensor:
        if codes.shape[-1] != self.num_codebooks:
            raise GsVqError(f"expected codes [..., {self.num_codebooks}], got {tuple(codes.shape)}")
        return sum_codewords(codes.to(self.codebook_0.device), self.codebooks)

    def _update_from_assignments(self, x: Tensor, codes: Tensor, weights: Optional[Tensor] = None) -> None:
        """Block coordinate step: code ``j`` of codebook ``m`` becomes the mean, over its members,
        of ``x`` minus the other codebooks' codewords. Empty codes keep their value.

        By linearity the member sums of the other codewords are co-occurrence counts times
        codebooks: ``sum_{i: b_im = j} C_l[b_il] = (P_ml @ C_l)[j]`` with ``P_ml [K, K]``
        counting rows coded ``j`` in book ``m`` and ``j'`` in book ``l``. So one segment sum
        of ``x`` per codebook replaces several passes over ``[N, D]`` (the training plugin
        calls this every step). Books are updated in order, each with the others' latest values.
        """
        codes = codes.to(self.codebook_0.device)
        x = x.to(self.codebook_0.device)
        weights = None if weights is None else weights.to(x)
        tables = self.codebooks
        k = tables[0].shape[0]
        if k * k > _MAX_PAIR_TABLE:  # pair counts too large: explicit residual targets
            return self._update_by_residuals(x, codes, weights)
        sums, counts = zip(*(segment_sum(x, codes[:, m], k, weights) for m in range(len(tables))))
        pairs = {}
        for m in range(len(tables)):
            for l in range(m + 1, len(tables)):
                pair = segment_count(codes[:, m] * k + codes[:, l], k * k, weights, dtype=x.dtype)
                pairs[m, l] = pair.view(k, k)  # [K, K]
                pairs[l, m] = pairs[m, l].T
        for m, table in enumerate(tables):
            target = sums[m].clone()  # [K, D]
            for l, other in enumerate(tables):
                if l != m:
                    target -= pairs[m, l] @ other
            filled = counts[m] > 0
            table.copy_(torch.where(filled[:, None], target / counts[m].clamp_min(1)[:, None], table))

    def _update_by_residuals(self, x: Tensor, codes: Tensor, weights: Optional[Tensor] = None) -> None:
        x_hat = self._decode(codes)
        for m, table in enumerate(self.codebooks):
            own = table.index_select(0, codes[:, m])
            target = x - x_hat + own  # [N, D]
            new = segment_mean(target, codes[:, m], table, weights)
            x_hat += new.index_select(0, codes[:, m]) - own
            table.copy_(new)


class ResidualQuantizer(SumQuantizer):
    """Residual vector quantization: L stages of K codes, each quantizing the residual of the
    previous ones; ``decode`` sums the stages. ``bits_per_vector = L * ceil(log2 K)``.

    Args:
        dim: D.
        num_stages: L.
        codebook_size: K.
        beam_size: beam width of encoding (1 = greedy); also used between training stages.
        iters, init, seed, chunk_size: k-means settings per stage (stage ``m`` uses ``seed + m``).
        refine_iters: after the greedy stages, this many rounds of (beam encode, block coordinate
            codebook update) that lower the error further.
    """

    def __init__(
        self,
        dim: int,
        num_stages: int = 4,
        codebook_size: int = 256,
        beam_size: int = 5,
        iters: int = 25,
        init: str = "kmeans++",
        seed: int = 0,
        chunk_size: Optional[int] = None,
        refine_iters: int = 2,
    ):
        super().__init__(dim, num_stages, codebook_size, chunk_size)
        self.beam_size = int(beam_size)
        self.iters, self.init, self.seed = int(iters), init, int(seed)
        self.refine_iters = int(refine_iters)

    def _encode(self, x: Tensor) -> Tensor:
        return beam_search(x, self.stacked(), self.beam_size, self.chunk_size)

    def _fit(self, x: Tensor) -> None:
        k = self.codebook_0.shape[0]
        if x.shape[0] < k:
            raise GsVqError(f"need at least {k} vectors to fit, got {x.shape[0]}")
        x = x.to(self.codebook_0.device)
        for m in range(self.num_codebooks):
            # Residuals of the best encoding with the stages trained so far.
            if m == 0:
                res = x
            else:
                codes = beam_search(x, self.stacked()[:m], self.beam_size, self.chunk_size)
                res = x - sum_codewords(codes, self.codebooks)
            result = kmeans(
                res, k, self.iters, self.init, "l2", self.seed + m, chunk_size=self.chunk_size
            )
            self.codebooks[m].copy_(result.centroids)
        self._refit(x, self.refine_iters)

    def _refit(self, x: Tensor, iters: int) -> None:
        for _ in range(iters):
            self._update_from_assignments(x, self._encode(x))
