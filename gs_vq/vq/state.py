"""The VQ plugin's state: :class:`VQState`, what it learns (saved in checkpoints), and
:class:`VQRun`, what the trainer gives it for one run (not saved: given again on resume).

Together with the config (:class:`~gs_vq.vq.config.VQConfig`, the ``vq:`` section) these are all
the plugin holds, as gsplat's strategies keep their config in the dataclass and their state apart."""

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from torch import Tensor

from ..devices import BlockTimer
from ..io.streams import PositionGrid
from .slot import Slot


@dataclass
class VQState:
    """Everything the VQ plugin learns during a run (the code table itself lives in the splats)."""

    vq_start: int  # first quantized step of this run
    initialized: bool = False  # codebooks fitted (from vq_start on)
    frozen: bool = False  # snapped to the stored precision; no more updates
    slots: Dict[str, Slot] = field(default_factory=dict)  # one per quantized attribute
    refresh_steps: List[int] = field(default_factory=list)  # steps at which codes were re-assigned
    num_pruned: int = 0
    reduced: bool = False  # significance pruning / SH dropping done (gs_vq.vq.importance)
    reduce_rounds: int = 0  # pruning rounds done (of VQConfig.prune_rounds)
    reduce_from: int = 0  # Gaussians at the first round (the fraction is of this count)
    num_sh_dropped: int = 0  # Gaussians rendered at SH degree 0 when that was done
    grid: Optional[PositionGrid] = None  # the grid the means were snapped to (None: lossless)
    pos_drops: Dict[int, float] = field(default_factory=dict)  # bits -> PSNR drop measured to choose them
    seconds: Dict[str, float] = field(default_factory=lambda: {"fit": 0.0, "refresh": 0.0, "update": 0.0,
                                                                "sync": 0.0, "reduce": 0.0,
                                                                "positions": 0.0})  # wall time per kind of work

    def to_dict(self, codes: Optional[Tensor], sh_degrees: Optional[Tensor] = None) -> Dict[str, Any]:
        """Tensors, numbers, strings, lists and dicts only (safe for ``torch.load(weights_only=True)``)."""
        return {"vq_start": self.vq_start, "initialized": self.initialized, "frozen": self.frozen,
                "refresh_steps": list(self.refresh_steps), "num_pruned": self.num_pruned,
                "reduced": self.reduced, "num_sh_dropped": self.num_sh_dropped,
                "reduce_rounds": self.reduce_rounds, "reduce_from": self.reduce_from,
                "grid": dataclasses.asdict(self.grid) if self.grid is not None else None,
                "seconds": dict(self.seconds), "pos_drops": {str(k): v for k, v in self.pos_drops.items()},
                "codes": codes.detach().cpu() if codes is not None else None,
                "sh_degrees": sh_degrees.detach().cpu() if sh_degrees is not None else None,
                "slots": {k: s.state() for k, s in self.slots.items()}}

    @classmethod
    def from_dict(cls, d: Dict[str, Any], device) -> Tuple["VQState", Optional[Tensor]]:
        """Inverse of :meth:`to_dict`: the state and the saved code table (on ``device``)."""
        grid = d.get("grid")
        state = cls(vq_start=int(d["vq_start"]), initialized=bool(d["initialized"]), frozen=bool(d["frozen"]),
                    refresh_steps=list(d.get("refresh_steps", [])), num_pruned=int(d.get("num_pruned", 0)),
                    reduced=bool(d.get("reduced", False)), num_sh_dropped=int(d.get("num_sh_dropped", 0)),
                    reduce_rounds=int(d.get("reduce_rounds", 0)), reduce_from=int(d.get("reduce_from", 0)),
                    grid=None if grid is None else PositionGrid.from_params(grid))
        state.seconds.update(d.get("seconds", {}))
        state.pos_drops = {int(k): float(v) for k, v in d.get("pos_drops", {}).items()}
        if state.initialized:
            state.slots = {name: Slot.from_state(s, device) for name, s in d["slots"].items()}
        codes = d.get("codes")
        return state, (codes.to(device) if codes is not None and state.initialized else None)


@dataclass
class VQRun:
    """What :meth:`VQPlugin.initialize` is given for one run (from the splats and the
    :class:`~gs_vq.plugins.TrainContext`); references, not saved in checkpoints."""

    splats: Any = None  # the trained ParameterDict: load_state_dict puts the code table back into it
    strategy_state: Optional[Dict[str, Any]] = None  # the strategy's state: pruning removes its per-Gaussian rows
    refine_stop: int = 0  # step at which densification stops (pruning before it needs strategy_state)
    device: Any = "cpu"  # where the splats are
    cameras: Optional[Sequence] = None  # training views (significance pruning, position-bits search)
    background: Optional[List[float]] = None  # RGB the views are composited on
    timer: BlockTimer = field(default_factory=BlockTimer)  # hook timing (CUDA events on a GPU)
