"""The semantic head: what queries need besides the per-Gaussian features, and its file.

A :class:`SemanticHead` holds the decoder + codebook (:class:`~gs_vq.semantics.codebook.SemanticCodebook`:
rendered features ``[..., F]`` -> entry weights ``[..., K]``), the text encoder the 2D maps were
made with, which entries the training views use, and the query temperatures. Training and
lifting write it as ``MODEL/semantic_head.pt`` (:data:`HEAD_NAME`); every query path reads it
back. Scoring a text against its entries is :mod:`gs_vq.semantics.scoring`'s.
"""

import os
from dataclasses import dataclass
from typing import Sequence, Tuple

import torch
from torch import Tensor

from ..errors import GsVqError
from ..files import atomic_path
from .codebook import SemanticCodebook
from .encoders import EncoderSpec, load_text_encoder
from .scoring import CANONICAL_NEGATIVES, check_rule, entry_scores

HEAD_NAME = "semantic_head.pt"


@dataclass
class SemanticHead:
    """What queries need besides the per-Gaussian features: decoder + codebook, the text encoder
    the 2D features came from, and which entries the training views use."""

    codebook: SemanticCodebook
    encoder: EncoderSpec
    active: Tensor  # [K] bool
    relevancy_tau: float = 10.0
    mask_tau: float = 20.0
    negatives: Tuple[str, ...] = CANONICAL_NEGATIVES
    texts: Tuple[str, ...] = ()  # label texts the 2D maps were made from (labels source); () if unknown

    def save(self, path: str) -> int:
        """Write a ``semantic_head.pt`` (plain tensors and dicts; loads with weights_only). Returns bytes."""
        blob = {"codebook": self.codebook.head_state(), "encoder": self.encoder.to_dict(),
                "active": self.active.cpu(), "relevancy_tau": self.relevancy_tau, "mask_tau": self.mask_tau,
                "negatives": list(self.negatives), "texts": list(self.texts)}
        with atomic_path(path) as tmp:
            torch.save(blob, tmp)
        return os.path.getsize(path)

    @classmethod
    def load(cls, path: str, device: str = "cpu") -> "SemanticHead":
        """Read a head file (or ``MODEL/semantic_head.pt`` given a model folder)."""
        if os.path.isdir(path):
            path = os.path.join(path, HEAD_NAME)
        if not os.path.isfile(path):
            raise GsVqError(f"no semantic head at {path}: train with --semantic")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            codebook = SemanticCodebook.from_head_state(blob["codebook"]).to(device).eval()
        except GsVqError:
            raise
        except Exception as e:
            raise GsVqError(f"cannot read semantic head {path}: {type(e).__name__}: {e}") from None
        return cls(codebook, EncoderSpec.from_dict(blob["encoder"]), blob["active"].bool().to(device),
                   float(blob.get("relevancy_tau", 10.0)), float(blob.get("mask_tau", 20.0)),
                   tuple(blob.get("negatives", CANONICAL_NEGATIVES)), tuple(blob.get("texts", ())))

    @torch.no_grad()
    def weights(self, feats: Tensor) -> Tensor:
        """Rendered features ``[..., F]`` -> entry weights ``[..., K]``."""
        return self.codebook.weights(feats)

    @torch.no_grad()
    def entry_scores(self, texts: Sequence[str], rule: str = "codebook", encoder=None) -> Tensor:
        """Per-entry scores of each text under ``rule``: ``[T, K]`` (:func:`gs_vq.semantics.scoring.entry_scores`;
        ``encoder``: the loaded text encoder, else :attr:`encoder` is loaded)."""
        check_rule(rule)
        return entry_scores(self, texts, rule, encoder or load_text_encoder(self.encoder))
