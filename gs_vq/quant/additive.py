"""Additive quantization in the spirit of LSQ++ (Martinez et al., 2018).

M full-dimensional codebooks whose selected codewords add up to x. Unlike residual quantization the
codebooks are trained jointly:

* codes by iterated conditional modes (ICM): one codebook at a time takes the code nearest to
  ``x`` minus the other codebooks' codewords, which can never raise the error; iterated local
  search (ILS) perturbs a few codes of each vector, re-runs ICM and keeps whichever is better;
* codebooks by least squares given the codes: ``min_C |X - B C|^2 + ridge |C - C_old|^2`` with
  ``B [N, M*K]`` the one-hot code matrix, solved through the ``[MK, MK]`` normal equations.

Training starts from greedy residual stages (default) or from random codes (LSQ++'s schedule);
LSQ++'s stochastic relaxation jitters the codebooks during training. Encoding is a beam search
followed by ILS.
"""

from typing import Optional

import torch
from torch import Tensor

from ..errors import GsVqError
from .kmeans import kmeans
from .residual import SumQuantizer, beam_search, sum_codewords
from .search import nearest

# Above this many codewords in total the [MK, MK] normal equations are not formed; codebooks are
# updated by block coordinate descent instead (SumQuantizer._update_from_assignments).
MAX_JOINT_CODEWORDS = 4096


def least_squares_codebooks(
    x: Tensor, codes: Tensor, old: Tensor, ridge: float = 1e-2
) -> Tensor:
    """Codebooks ``[M, K, D]`` minimising ``|x - sum_m C_m[codes_m]|^2 + ridge |C - old|^2``.

    Args:
        x: ``[N, D]`` vectors; codes: ``[N, M]`` int64; old: ``[M, K, D]`` current codebooks
            (the ridge pulls towards them: unused codes keep their value, and the gauge freedom of
            additive codebooks, a shift moved from one codebook to another, is fixed).

    Solved in float64 with a Cholesky factorisation of the ``[MK, MK]`` Gram matrix ``B^T B``,
    whose entries are code co-occurrence counts gathered with ``bincount``.
    """
    num_books, k, dim = old.shape
    mk = num_books * k
    flat = codes.to(old.device) + torch.arange(num_books, device=old.device) * k  # [N, M]
    gram = torch.zeros(mk * mk, dtype=torch.float64, device=old.device)
    rhs = ridge * old.reshape(mk, dim).double()  # [MK, D]
    x64 = x.to(old.device).double()
    for m in range(num_books):
        pairs = (flat[:, m : m + 1] * mk + flat).flatten()  # [N * M]
        gram += torch.bincount(pairs, minlength=mk * mk).double()
        rhs.index_add_(0, flat[:, m], x64)
    gram = gram.view(mk, mk)
    gram.diagonal().add_(ridge)
    factor = torch.linalg.cholesky(gram)
    return torch.cholesky_solve(rhs, factor).float().view(num_books, k, dim)


def icm(x: Tensor, codes: Tensor, codebooks: Tensor, sweeps: int, chunk_size=None) -> Tensor:
    """Iterated conditional modes: ``sweeps`` passes over the codebooks, each code replaced by the
    nearest codeword to ``x`` minus the other codewords. Returns new ``[N, M]`` codes."""
    codes = codes.clone()
    x_hat = sum_codewords(codes, codebooks)  # [N, D]
    for _ in range(sweeps):
        for m, table in enumerate(codebooks):
            own = table.index_select(0, codes[:, m])
            _, idx = nearest(x - x_hat + own, table, "l2", chunk_size)
            x_hat += table.index_select(0, idx) - own
            codes[:, m] = idx
    return codes


def _errors(x: Tensor, codes: Tensor, codebooks: Tensor) -> Tensor:
    return (x - sum_codewords(codes, codebooks)).square().sum(dim=1)  # [N]


def iterated_local_search(
    x: Tensor, codes: Tensor, codebooks: Tensor, rounds: int, sweeps: int, num_perturb: int,
    gen: torch.Generator, chunk_size=None,
) -> Tensor:
    """ICM, then ``rounds`` of (perturb ``num_perturb`` random codes of every vector, ICM, keep
    the better encoding per vector). The error of every vector never increases."""
    num_books, k, _ = codebooks.shape
    best = icm(x, codes, codebooks, sweeps, chunk_size)
    best_err = _errors(x, best, codebooks)
    for _ in range(rounds):
        pos = torch.randint(0, num_books, (x.shape[0], num_perturb), generator=gen).to(x.device)
        val = torch.randint(0, k, (x.shape[0], num_perturb), generator=gen).to(x.device)
        cand = icm(x, best.scatter(1, pos, val), codebooks, sweeps, chunk_size)
        err = _errors(x, cand, codebooks)
        better = err < best_err
        best = torch.where(better[:, None], cand, best)
        best_err = torch.where(better, err, best_err)
    return best


# Training schedules. "residual" starts from greedy residual k-means stages and needs little
# search; "lsq" is LSQ++'s: random codes, long training with strong local search. Measured against
# faiss's LocalSearchQuantizer (4 x 8 bits, 48-d Gaussian data, MSE on the fitted data): N = 50k,
# "residual" 1% lower at 40% of the fit time, "lsq" about equal at 2x it; N = 5k (20 points per
# code), "residual" 7% higher, "lsq" 1-3% higher. On 3-d colours "lsq", like faiss's LSQ, is
# orders of magnitude worse than "residual".
SCHEDULES = {
    "residual": dict(init="residual", iters=10, rounds=2, sweeps=2, perturb=2),
    "lsq": dict(init="random", iters=25, rounds=4, sweeps=4, perturb=4),
}


class AdditiveQuantizer(SumQuantizer):
    """M codebooks of K full-dimensional codewords whose sum approximates x (LSQ++ style).

    Args:
        dim: D.
        num_codebooks: M; ``bits_per_vector = M * ceil(log2 K)``.
        codebook_size: K.
        schedule: training schedule, ``"residual"`` or ``"lsq"`` (better for high-dimensional data
            with few vectors per code); see ``SCHEDULES``.
        iters: training iterations (least squares, relaxation, local search), overriding the
            schedule's.
        beam_size, encode_ils_rounds, icm_sweeps, num_perturb: encoding = beam search, then ILS
            with this many rounds, ICM sweeps per round and codes perturbed per vector.
        ridge: weight of the pull towards the previous codebooks in the least-squares step.
        relax: scale of LSQ++'s stochastic relaxation during ``fit``: after each least-squares
            step, Gaussian noise of std ``relax * (1 - t / iters)^0.5 * rms error / M`` (per
            dimension) is added to the codewords (0 disables it).
        init_iters: k-means iterations per stage of the residual initialisation.
        seed, chunk_size: as elsewhere.
    """

    def __init__(
        self,
        dim: int,
        num_codebooks: int = 4,
        codebook_size: int = 256,
        schedule: str = "residual",
        iters: Optional[int] = None,
        beam_size: int = 16,
        encode_ils_rounds: int = 8,
        icm_sweeps: int = 2,
        num_perturb: int = 2,
        ridge: float = 1e-2,
        relax: float = 1.0,
        init_iters: int = 25,
        seed: int = 0,
        chunk_size: Optional[int] = None,
    ):
        super().__init__(dim, num_codebooks, codebook_size, chunk_size)
        if schedule not in SCHEDULES:
            raise GsVqError(f"unknown additive quantizer schedule {schedule!r}")
        self.schedule, self.iters, self.beam_size = schedule, iters, int(beam_size)
        self.encode_ils_rounds, self.icm_sweeps = int(encode_ils_rounds), int(icm_sweeps)
        self.num_perturb = min(int(num_perturb), self.num_codebooks)
        self.ridge, self.relax, self.init_iters = float(ridge), float(relax), int(init_iters)
        self.seed = int(seed)

    def _search(self, x, codes, gen, rounds, sweeps=None, perturb=None) -> Tensor:
        sweeps = self.icm_sweeps if sweeps is None else sweeps
        perturb = min(self.num_perturb if perturb is None else perturb, self.num_codebooks)
        return iterated_local_search(
            x, codes, self.stacked(), rounds, sweeps, perturb, gen, self.chunk_size
        )

    def _encode(self, x: Tensor) -> Tensor:
        x = x.to(self.codebook_0.device).float()
        codes = beam_search(x, self.stacked(), self.beam_size, self.chunk_size)
        gen = torch.Generator().manual_seed(self.seed)
        return self._search(x, codes, gen, self.encode_ils_rounds)

    def plan(self) -> dict:
        """The training schedule, with the ``iters`` override applied."""
        plan = dict(SCHEDULES[self.schedule])
        if self.iters is not None:
            plan["iters"] = int(self.iters)
        return plan

    def _fit(self, x: Tensor) -> None:
        x = x.to(self.codebook_0.device)
        gen = torch.Generator().manual_seed(self.seed)
        k = self.codebook_0.shape[0]
        plan = self.plan()
        if plan["init"] == "random":
            codes = torch.randint(0, k, (x.shape[0], self.num_codebooks), generator=gen)
            codes = codes.to(x.device)
        else:
            res = x.clone()
            for m, table in enumerate(self.codebooks):  # greedy residual stages
                r = kmeans(res, k, self.init_iters, seed=self.seed + m, chunk_size=self.chunk_size)
                table.copy_(r.centroids)
                res -= r.centroids.index_select(0, r.assignments)
            codes = beam_search(x, self.stacked(), self.beam_size, self.chunk_size)
        self._train(x, codes, plan, self.relax, gen)

    def _refit(self, x: Tensor, iters: int) -> None:
        x = x.to(self.codebook_0.device).float()
        gen = torch.Generator().manual_seed(self.seed)
        plan = dict(self.plan(), iters=iters)
        self._train(x, self._encode(x), plan, 0.0, gen)

    def _train(self, x: Tensor, codes: Tensor, plan: dict, relax: float, gen) -> None:
        iters = plan["iters"]
        for it in range(iters):
            self._update_codebooks(x, codes)
            temp = relax * (1.0 - (it + 1.0) / iters) ** 0.5
            if temp > 0:
                # LSQ++'s stochastic relaxation: jitter the codebooks, less and less. The jitter is
                # scaled by the current error per dimension (LSQ++ uses the data's spread, which
                # is the same thing from random codes but wrecks a good start).
                spread = (x - sum_codewords(codes, self.codebooks)).square().mean(dim=0).sqrt()
                for table in self.codebooks:
                    noise = torch.randn(table.shape, generator=gen).to(table.device)
                    table += noise * spread * (temp / self.num_codebooks)
            codes = self._search(x, codes, gen, plan["rounds"], plan["sweeps"], plan["perturb"])
        self._update_codebooks(x, codes)

    def _update_codebooks(self, x: Tensor, codes: Tensor) -> None:
        if self.num_codebooks * self.codebook_0.shape[0] > MAX_JOINT_CODEWORDS:
            self._update_from_assignments(x, codes)
            return
        new = least_squares_codebooks(x, codes, self.stacked(), self.ridge)
        for table, value in zip(self.codebooks, new):
            table.copy_(value)
