"""Entropy-constrained assignment (ECVQ, Chou, Lookabaugh and Gray 1989): a rate term in the
nearest-code search.

Each vector goes to the code minimising ``|x - c_k|^2 + lam * len_k``, where ``len_k`` is the code
length in bits of index k under the current index frequencies. Frequent codes get cheaper, the
index stream's entropy drops, and an entropy coder turns that into fewer bytes, at some distortion.
The bias is folded into the plain search by one extra coordinate: with ``x' = [x, 0]`` and
``c'_k = [c_k, sqrt(lam * len_k)]``, ``|x' - c'_k|^2 = |x - c_k|^2 + lam * len_k``, so the compiled
nearest-code kernels serve unchanged.

Quantizers with several indices per vector (:func:`rate_codes`) price each index by its own
stream's code lengths: a residual quantizer stage by stage on what the earlier stages leave
(greedy), a product or scalar grid (``concat``) column block by column block.
"""

from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from .search import assign


def code_lengths(codes: Tensor, k: int) -> Tensor:
    """``[K]`` bits of each index under the frequencies of ``codes [N]`` (add-1/2 smoothed, so
    unused codes cost a finite length)."""
    counts = torch.bincount(codes.flatten(), minlength=k).double()  # [K]
    p = (counts + 0.5) / (counts.sum() + 0.5 * k)
    return (-torch.log2(p)).float()


def entropy_bits(codes: Tensor, k: int) -> float:
    """Empirical entropy (bits per index) of ``codes [N]`` with values in ``[0, K)``."""
    counts = torch.bincount(codes.flatten(), minlength=k).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * torch.log2(p)).sum())


def rate_assign(x: Tensor, centroids: Tensor, lengths: Tensor, lam: float) -> Tensor:
    """``[N]`` index minimising ``|x - c_k|^2 + lam * lengths[k]`` for ``x [N, D]``, ``centroids
    [K, D]``, ``lengths [K]`` (bits, >= 0); ``lam`` in squared-distance units per bit."""
    if lam <= 0:
        return assign(x, centroids)
    bias = (lam * lengths.to(centroids)).clamp_min(0).sqrt()[:, None]  # [K, 1]
    zeros = torch.zeros(x.shape[0], 1, dtype=x.dtype, device=x.device)  # [N, 1]
    return assign(torch.cat([x, zeros], dim=1), torch.cat([centroids, bias], dim=1))


def distortion(x: Tensor, centroids: Tensor, codes: Tensor) -> float:
    """Mean squared error per vector of ``x [N, D]`` coded as ``centroids[codes]``."""
    return float((x - centroids[codes]).square().sum(dim=1).mean())


def ecvq_step(x: Tensor, centroids: Tensor, codes: Tensor, rate: float,
              scale: Optional[float] = None) -> Tuple[Tensor, Tensor]:
    """One ECVQ iteration: re-assign ``x [N, D]`` with a rate term, then move each used code to its
    members' mean. ``rate`` is dimensionless: one bit is worth ``rate`` times ``scale``, a squared
    error per vector (default: the current mean squared error at ``codes``). Repeated steps
    should pass the same ``scale`` (e.g. the plain k-means distortion): with the current error
    the price of a bit grows as the codes merge, and the codes collapse onto a few entries.
    Returns ``(centroids [K, D], codes [N])``."""
    k = centroids.shape[0]
    if scale is None:
        scale = distortion(x, centroids, codes)
    new = rate_assign(x, centroids, code_lengths(codes, k), float(rate * scale))
    sums = torch.zeros_like(centroids).index_add_(0, new, x.to(centroids))  # [K, D]
    counts = torch.bincount(new, minlength=k).to(centroids)[:, None]  # [K, 1]
    moved = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
    return moved, new


def rate_codes(x: Tensor, codebooks: Sequence[Tensor], codes: Tensor, rule: str, lam: float) -> Tensor:
    """Rate-constrained re-assignment of ``x [N, D]`` coded by ``codes [N, M]`` into M codebooks
    (``[K_m, d_m]`` each): ``rule`` ``"sum"`` (residual stages, encoded greedily) or ``"concat"``
    (index m codes columns ``sum(d_<m) ..`` of x). Each index m minimises its squared error plus
    ``lam`` times its code length under ``codes[:, m]``'s frequencies. Returns ``[N, M]``."""
    out = []
    if rule == "sum":
        res = x.to(codebooks[0]).clone()  # [N, D] what the stages so far leave
        for m, table in enumerate(codebooks):
            idx = rate_assign(res, table, code_lengths(codes[:, m], table.shape[0]), lam)
            res -= table.index_select(0, idx)
            out.append(idx)
    elif rule == "concat":
        start = 0
        for m, table in enumerate(codebooks):
            block = x[:, start:start + table.shape[1]].to(table)  # [N, d_m]
            out.append(rate_assign(block, table, code_lengths(codes[:, m], table.shape[0]), lam))
            start += table.shape[1]
    else:
        raise ValueError(f"unknown decode rule {rule!r}")
    return torch.stack(out, dim=1)
