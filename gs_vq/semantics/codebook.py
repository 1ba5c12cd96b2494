"""The semantic codebook: per-pixel low-dimensional features -> weights over K text-space codes.

A rendered feature ``f [F]`` (F = 8..16) is decoded by a small decoder (linear, or a 1x1 MLP) into
logits over ``K`` codebook entries; ``w = softmax(logits)`` and the decoded feature is
``sum_k w_k c_k`` with ``c_k`` the unit-normalised entries (``[K, D]``, D = the text encoder's
dimension). Queries then need one relevance value per entry, not per pixel
(:mod:`gs_vq.semantics.scoring`).

Losses (each with its own weight in :class:`~gs_vq.semantics.field_setup.SemanticConfig`):

- ``cos``: ``1 - cos(decoded, v_gt)``, the decoded feature against the 2D feature.
- ``ce``: cross-entropy of the logits against the nearest entry (cosine) of ``v_gt``.
- ``entropy``: GOI's Eq. 6, the entropy of ``softmax(tau * cos(v_gt, c))`` over the entries; only
  the codebook gets its gradient, and minimising it pulls entries onto the clusters of the 2D
  features (each ground-truth feature wants one clearly nearest entry).

The codebook starts from hierarchical cosine k-means over the 2D maps (per view, then over the
union of the per-view centroids, as GOI does) or, for ablations, uniformly at random.
"""

from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import GsVqError

DECODERS = ("linear", "mlp")
CODEBOOK_INITS = ("kmeans", "random", "lift")  # lift: training-free field (gs_vq.semantics.lift)


class SemanticCodebook(nn.Module):
    """Decoder ``F -> K`` logits plus ``K x D`` codebook entries.

    Args:
        feature_dim: F, channels of the rendered per-Gaussian features.
        num_codes: K, codebook entries.
        code_dim: D, dimension of the text/2D feature space.
        decoder: ``"linear"`` or ``"mlp"`` (one hidden ReLU layer of ``hidden`` units).
    """

    def __init__(self, feature_dim: int, num_codes: int, code_dim: int, decoder: str = "linear", hidden: int = 64):
        super().__init__()
        if decoder not in DECODERS:
            raise GsVqError(f"semantic decoder must be one of {DECODERS}, got {decoder}")
        if feature_dim < 1 or num_codes < 2 or code_dim < 1:
            raise GsVqError(f"bad semantic codebook sizes F={feature_dim}, K={num_codes}, D={code_dim}")
        self.feature_dim, self.num_codes, self.code_dim, self.decoder_kind = feature_dim, num_codes, code_dim, decoder
        if decoder == "linear":
            self.decoder = nn.Linear(feature_dim, num_codes)
        else:
            self.decoder = nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(), nn.Linear(hidden, num_codes))
        self.codes = nn.Parameter(F.normalize(torch.randn(num_codes, code_dim), dim=-1))  # [K, D]

    # ---- decoding ---------------------------------------------------------------------------
    def unit_codes(self) -> Tensor:
        """``[K, D]`` unit-normalised entries."""
        return F.normalize(self.codes, dim=-1)

    def logits(self, feats: Tensor) -> Tensor:
        """``feats [..., F]`` -> ``[..., K]``."""
        if feats.shape[-1] != self.feature_dim:
            raise GsVqError(f"semantic features have {feats.shape[-1]} channels, the decoder expects {self.feature_dim}")
        return self.decoder(feats)

    def weights(self, feats: Tensor) -> Tensor:
        """``feats [..., F]`` -> softmax weights ``[..., K]``."""
        return torch.softmax(self.logits(feats), dim=-1)

    def decode(self, feats: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """``feats [..., F]`` -> ``(logits [..., K], weights [..., K], decoded [..., D])``."""
        logits = self.logits(feats)
        weights = torch.softmax(logits, dim=-1)
        return logits, weights, weights @ self.unit_codes()

    @torch.no_grad()
    def nearest(self, targets: Tensor) -> Tensor:
        """Index of the nearest entry (cosine) of each ``targets [P, D]`` -> ``[P]`` int64."""
        return (F.normalize(targets, dim=-1) @ self.unit_codes().T).argmax(dim=-1)

    # ---- initialisation ---------------------------------------------------------------------
    @torch.no_grad()
    def init_random(self, seed: int = 0) -> None:
        """Entries uniform in ``[-1, 1]^D`` (then normalised): the ablation baseline."""
        g = torch.Generator().manual_seed(seed)
        self.codes.copy_(F.normalize(torch.rand(self.num_codes, self.code_dim, generator=g) * 2 - 1, dim=-1))

    @torch.no_grad()
    def init_kmeans(self, views: Sequence[Tensor], k_per_view: int = 16, seed: int = 0) -> None:
        """Hierarchical cosine k-means: ``k_per_view`` centroids per view (``views``: ``[P_i, D]``
        samples of each 2D map), then ``K`` centroids over their union (GOI's initialisation)."""
        from ..quant import hierarchical_kmeans

        chunks = [F.normalize(v.float(), dim=-1) for v in views if len(v)]
        if not chunks:
            raise GsVqError("no 2D features to initialise the semantic codebook from")
        if chunks[0].shape[-1] != self.code_dim:
            raise GsVqError(f"2D features are {chunks[0].shape[-1]}-d, the codebook is {self.code_dim}-d")
        # label maps hold a few distinct vectors per view: cluster those (k-means on heavily
        # duplicated points is slow), as long as enough remain for K entries
        unique = [torch.unique(c, dim=0) for c in chunks]
        if sum(min(len(u), k_per_view) for u in unique) >= self.num_codes:
            chunks = unique
        total = sum(min(len(c), k_per_view) for c in chunks)
        if total < self.num_codes:
            raise GsVqError(f"only {total} first-level k-means centres for a {self.num_codes}-entry codebook: "
                            "raise kmeans_per_view or lower num_codes")
        result = hierarchical_kmeans(chunks, k_per_view, self.num_codes, metric="cosine", seed=seed)
        self.codes.copy_(F.normalize(result.centroids.to(self.codes), dim=-1))  # [K, D]

    def head_state(self) -> Dict:
        """Everything needed to rebuild this module (sizes + tensors), for export files."""
        return {"feature_dim": self.feature_dim, "num_codes": self.num_codes, "code_dim": self.code_dim,
                "decoder": self.decoder_kind, "hidden": self._hidden(), "state": {k: v.detach().cpu() for k, v in
                                                                                   self.state_dict().items()}}

    @classmethod
    def from_head_state(cls, d: Dict) -> "SemanticCodebook":
        cb = cls(d["feature_dim"], d["num_codes"], d["code_dim"], d["decoder"], d.get("hidden") or 64)
        cb.load_state_dict(d["state"])
        return cb

    def _hidden(self) -> Optional[int]:
        return self.decoder[0].out_features if self.decoder_kind == "mlp" else None


# ---- losses ---------------------------------------------------------------------------------
def entry_usage(codebook: SemanticCodebook, targets: Sequence[Tensor]) -> Tensor:
    """Fraction of 2D feature pixels (``targets``: ``[P_i, D]`` per view) whose nearest entry is
    each entry -> ``[K]``."""
    counts = torch.zeros(codebook.num_codes)
    for t in targets:
        idx = codebook.nearest(t.to(codebook.codes.device)).cpu()
        counts += torch.bincount(idx, minlength=codebook.num_codes).float()
    return counts / counts.sum().clamp_min(1)


def cosine_loss(decoded: Tensor, targets: Tensor) -> Tensor:
    """``1 - cos(decoded, targets)`` averaged over pixels. Both ``[P, D]``."""
    return 1.0 - F.cosine_similarity(decoded, targets, dim=-1).mean()


def code_ce_loss(logits: Tensor, targets: Tensor, codes: Tensor) -> Tensor:
    """Cross-entropy of ``logits [P, K]`` against the nearest entry of ``targets [P, D]`` among
    ``codes [K, D]`` (unit vectors; the target index carries no gradient)."""
    with torch.no_grad():
        index = (F.normalize(targets, dim=-1) @ codes.T).argmax(dim=-1)  # [P]
    return F.cross_entropy(logits, index)


def entropy_loss(targets: Tensor, codes: Tensor, tau: float = 10.0) -> Tensor:
    """GOI Eq. 6: mean over pixels of ``H(softmax(tau * cos(v_gt, c)))`` (nats).

    ``targets [P, D]`` (no gradient), ``codes [K, D]`` (any norm; normalised here). Lower when each
    target has one clearly nearest entry, i.e. when entries sit on the clusters of the targets.
    """
    sim = F.normalize(targets.detach(), dim=-1) @ F.normalize(codes, dim=-1).T  # [P, K]
    logp = torch.log_softmax(tau * sim, dim=-1)
    return -(logp.exp() * logp).sum(dim=-1).mean()


def semantic_losses(codebook: SemanticCodebook, feats: Tensor, targets: Tensor, tau: float = 10.0,
                    which: Sequence[str] = ("cos", "ce", "entropy")) -> Dict[str, Tensor]:
    """The named losses for rendered ``feats [P, F]`` against 2D features ``targets [P, D]``."""
    logits, _, decoded = codebook.decode(feats)
    codes = codebook.unit_codes()
    out: Dict[str, Tensor] = {}
    if "cos" in which:
        out["cos"] = cosine_loss(decoded, targets)
    if "ce" in which:
        out["ce"] = code_ce_loss(logits, targets, codes.detach())
    if "entropy" in which:
        out["entropy"] = entropy_loss(targets, codebook.codes, tau)
    return out
