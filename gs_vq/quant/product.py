"""Vector and product quantization: one k-means codebook per group of dimensions."""

from typing import List, Optional

import torch
from torch import Tensor

from ..errors import GsVqError
from .base import Quantizer
from .kmeans import kmeans
from .search import assign, check_metric, prepare, segment_mean


def split_dims(dim: int, parts: int) -> List[int]:
    """Sizes of ``parts`` contiguous groups covering ``dim`` dimensions, as equal as possible."""
    if not 1 <= parts <= dim:
        raise GsVqError(f"cannot split {dim} dimensions into {parts} sub-vectors")
    return [dim // parts + (1 if m < dim % parts else 0) for m in range(parts)]


class ProductQuantizer(Quantizer):
    """Split the D dimensions into M contiguous sub-vectors, one codebook of K codes each.

    ``decode`` concatenates the M selected sub-codes. ``bits_per_vector = M * ceil(log2 K)``.
    D need not be divisible by M: the first ``D % M`` groups get one more dimension.

    Args:
        dim: D.
        num_subvectors: M.
        codebook_size: K, codes per sub-codebook.
        metric: ``"l2"`` or ``"cosine"`` (each sub-vector normalised).
        iters, init, seed, chunk_size, batch_size, init_max_points: passed to :func:`kmeans`
            (sub-codebook ``m`` uses ``seed + m``).
        max_points: fit on a uniform random subset of at most this many vectors (None: all).
    """

    decode_rule = "concat"

    def __init__(
        self,
        dim: int,
        num_subvectors: int = 1,
        codebook_size: int = 256,
        metric: str = "l2",
        iters: int = 25,
        init: str = "kmeans++",
        seed: int = 0,
        chunk_size: Optional[int] = None,
        batch_size: Optional[int] = None,
        init_max_points: Optional[int] = None,
        max_points: Optional[int] = None,
    ):
        super().__init__(dim)
        if int(codebook_size) < 1:
            raise GsVqError(f"codebook_size must be >= 1, got {codebook_size}")
        self.metric = check_metric(metric)
        self.sub_dims = split_dims(self.dim, int(num_subvectors))
        self.kmeans_args = dict(
            iters=iters, init=init, chunk_size=chunk_size, batch_size=batch_size,
            init_max_points=init_max_points,
        )
        self.seed = int(seed)
        self.max_points = max_points
        self._register_codebooks([(int(codebook_size), d) for d in self.sub_dims])

    def _slices(self, x: Tensor) -> List[Tensor]:
        return list(torch.split(x, self.sub_dims, dim=-1))

    def _training_rows(self, x: Tensor) -> Tensor:
        if self.max_points is None or x.shape[0] <= self.max_points:
            return x
        gen = torch.Generator().manual_seed(self.seed)
        rows = torch.randperm(x.shape[0], generator=gen)[: self.max_points].to(x.device)
        return x.index_select(0, rows)

    def _fit(self, x: Tensor) -> None:
        self._run_kmeans(self._training_rows(x), warm=False, iters=self.kmeans_args["iters"])

    def _refit(self, x: Tensor, iters: int) -> None:
        self._run_kmeans(self._training_rows(x), warm=True, iters=iters)

    def _run_kmeans(self, x: Tensor, warm: bool, iters: int) -> None:
        args = dict(self.kmeans_args, iters=iters)
        for m, (part, table) in enumerate(zip(self._slices(x), self.codebooks)):
            if part.shape[0] < table.shape[0]:
                need, got = table.shape[0], part.shape[0]
                raise GsVqError(f"need at least {need} vectors to fit, got {got}")
            init_centroids = table if warm else None
            result = kmeans(
                part, table.shape[0], metric=self.metric, seed=self.seed + m,
                init_centroids=init_centroids, **args,
            )
            table.copy_(result.centroids)

    def _encode(self, x: Tensor) -> Tensor:
        chunk = self.kmeans_args["chunk_size"]
        parts = self._slices(x.to(self.codebook_0.device))
        codes = [assign(p, c, self.metric, chunk) for p, c in zip(parts, self.codebooks)]
        return torch.stack(codes, dim=1)  # [N, M]

    def _decode(self, codes: Tensor) -> Tensor:
        if codes.shape[-1] != self.num_codebooks:
            raise GsVqError(f"expected codes [..., {self.num_codebooks}], got {tuple(codes.shape)}")
        codes = codes.to(self.codebook_0.device)
        parts = [c.index_select(0, codes[:, m]) for m, c in enumerate(self.codebooks)]
        return torch.cat(parts, dim=1)  # [N, D]

    def _update_from_assignments(self, x: Tensor, codes: Tensor, weights: Optional[Tensor] = None) -> None:
        codes = codes.to(self.codebook_0.device)
        weights = None if weights is None else weights.to(self.codebook_0.device)
        for m, (part, table) in enumerate(zip(self._slices(x), self.codebooks)):
            new = segment_mean(prepare(part, self.metric), codes[:, m], table, weights)
            if self.metric == "cosine":
                new = torch.nn.functional.normalize(new, dim=1)
            table.copy_(new)


class VectorQuantizer(ProductQuantizer):
    """One k-means codebook of K codes over the whole vector (a product quantizer with M = 1).

    Args:
        dim: D.
        codebook_size: K; ``bits_per_vector = ceil(log2 K)``.
        **kwargs: as :class:`ProductQuantizer` (metric, iters, init, seed, ...).
    """

    decode_rule = "sum"  # one codebook: the codeword itself

    def __init__(self, dim: int, codebook_size: int = 4096, **kwargs):
        super().__init__(dim, num_subvectors=1, codebook_size=codebook_size, **kwargs)

    @property
    def codebook(self) -> Tensor:
        """The ``[K, D]`` codebook."""
        return self.codebook_0
