"""The semantic plugin's run state, as saved in checkpoints."""

from dataclasses import dataclass, field
from typing import Any, Dict, Sequence

import torch

from ..devices import rng_state, set_rng_state
from .codebook import SemanticCodebook
from .features import FeatureMaps


@dataclass
class SemanticState:
    """What :class:`~gs_vq.semantics.plugin.SemanticField` holds during a run, besides its config
    (:class:`~gs_vq.semantics.field_setup.SemanticConfig`) and the ``features [N, F]`` parameter
    (which lives in the splats, with its optimizer in the trainer's)."""

    maps: FeatureMaps  # the train views' 2D feature maps ([h, w, D] float16 each, on the CPU)
    codebook: SemanticCodebook  # decoder F -> K and the K x D entries, on ``device``
    optimizer: torch.optim.Optimizer  # Adam over the decoder and the entries
    generator: torch.Generator  # the CPU generator of the sampled pixels
    device: str  # where the splats (and the codebook) are
    train_cameras: Sequence = ()  # the training views: per-Gaussian labels are lifted from them at export
    backend: str = "auto"  # rasterizer backend of the run (label lifting at export)
    last: Dict[str, float] = field(default_factory=dict)  # the latest step's losses (cos, ce, entropy)

    def to_dict(self) -> Dict[str, Any]:
        """Checkpoint entry: plain tensors and dicts (``torch.load(weights_only=True)``); the maps,
        cameras and losses are not saved (the scene gives them again)."""
        return {"codebook": self.codebook.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": rng_state(self.generator)}

    def load_dict(self, d: Dict[str, Any]) -> None:
        """Inverse of :meth:`to_dict`, into the codebook, optimizer and generator of this state
        (checkpoints without ``generator`` keep the seeded one)."""
        self.codebook.load_state_dict(d["codebook"])
        self.optimizer.load_state_dict(d["optimizer"])
        if "generator" in d:
            set_rng_state(self.generator, d["generator"])  # a CPU generator, whatever map_location did
