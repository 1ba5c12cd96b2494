"""Soft indices (VQ-AD, Takikawa et al. 2022): each vector owns trainable logits over a codebook.

During training the vector is the softmax-weighted sum of the codewords, so both the logits and the
codebook get gradients; afterwards only the argmax index is kept (``ceil(log2 K)`` bits). The
logits are ``[N, K]`` floats: meant for small codebooks (K of 16 to 1024) or moderate N.
"""

from typing import Optional

import torch
from torch import Tensor, nn

from ..errors import GsVqError
from .base import Quantizer
from .kmeans import kmeans
from .search import default_chunk_size, segment_mean


class SoftIndexQuantizer(Quantizer):
    """Per-vector logits ``[N, K]`` over one codebook ``[K, D]``, both ``nn.Parameter``.

    ``forward(x)`` returns ``softmax(logits / temperature) @ codebook`` in training mode and the
    hard ``codebook[argmax]`` in eval mode; ``x`` only fixes the shape (row i is vector i). Its
    content enters through ``fit(x)``, which runs k-means for the codebook and sets the logits to
    ``-|x_i - c_k|^2 / mean_i min_k |x_i - c_k|^2``, so that training starts near the hard
    assignment. ``encode`` returns the argmax indices ``[N, 1]``.

    Args:
        dim: D.
        codebook_size: K.
        num_vectors: N before ``fit`` (``fit`` and ``load_state_dict`` resize).
        temperature: softmax temperature.
        iters, init, seed, chunk_size: k-means settings of ``fit``.
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int = 256,
        num_vectors: int = 0,
        temperature: float = 1.0,
        iters: int = 25,
        init: str = "kmeans++",
        seed: int = 0,
        chunk_size: Optional[int] = None,
    ):
        super().__init__(dim)
        self._register_codebooks([(int(codebook_size), self.dim)], trainable=True)
        self.logits = nn.Parameter(torch.zeros(int(num_vectors), int(codebook_size)))  # [N, K]
        self.temperature = float(temperature)
        self.kmeans_args = dict(iters=iters, init=init, seed=seed, chunk_size=chunk_size)

    @property
    def codebook(self) -> Tensor:
        return self.codebook_0

    def _check_rows(self, n: int) -> None:
        if n != self.logits.shape[0]:
            raise GsVqError(f"soft-index quantizer holds {self.logits.shape[0]} vectors, got {n}")

    def _fit(self, x: Tensor) -> None:
        x = x.to(self.codebook_0.device).float()
        result = kmeans(x, self.codebook_0.shape[0], **self.kmeans_args)
        self.codebook_0.data.copy_(result.centroids)
        scale = max(result.inertia / x.shape[0], 1e-12)
        rows = default_chunk_size(self.codebook_0.shape[0], x.device)
        logits = torch.cat(
            [-torch.cdist(x[s : s + rows], result.centroids).square() / scale
             for s in range(0, x.shape[0], rows)]
        )
        self.logits = nn.Parameter(logits)  # [N, K]

    def _encode(self, x: Tensor) -> Tensor:
        self._check_rows(x.shape[0])
        return self.logits.argmax(dim=1, keepdim=True)  # [N, 1]

    def _decode(self, codes: Tensor) -> Tensor:
        return self.codebook_0.index_select(0, codes[:, 0].to(self.codebook_0.device))

    def weights(self) -> Tensor:
        """``[N, K]`` softmax weights of each vector over the codebook."""
        return torch.softmax(self.logits / self.temperature, dim=1)

    def forward(self, x: Tensor) -> Tensor:
        self._check_rows(self._flat(x).shape[0])
        if not self.training:
            return self.quantize(x).to(x.dtype)
        return (self.weights() @ self.codebook_0).reshape(x.shape).to(x.dtype)

    def _update_from_assignments(self, x: Tensor, codes: Tensor, weights: Optional[Tensor] = None) -> None:
        table = self.codebook_0.data
        weights = None if weights is None else weights.to(table.device)
        table.copy_(segment_mean(x.to(table.device), codes[:, 0].to(table.device), table, weights))

    def _refit(self, x: Tensor, iters: int) -> None:
        args = dict(self.kmeans_args, iters=iters)
        table = self.codebook_0.data
        table.copy_(kmeans(x, table.shape[0], init_centroids=table, **args).centroids)

    @torch.no_grad()
    def reindex(self, index: Tensor) -> None:
        """Keep / duplicate vectors: ``logits <- logits[index]`` (after densification or pruning).
        The parameter is replaced, so an optimizer holding it must be updated by the caller."""
        self.logits = nn.Parameter(self.logits.data.index_select(0, index.to(self.logits.device)))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        stored = state_dict.get(prefix + "logits")
        if stored is not None and stored.shape != self.logits.shape:
            self.logits = nn.Parameter(torch.zeros_like(stored, device=self.logits.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
