"""Quantization-aware training as a trainer plugin (Compact3D's recipe, any gs_vq.quant quantizer).

Create it after the splats and their optimizers; each step ask it for the splats to render, add
its loss, call its post-backward hook. From ``vq_start`` on (default: when densification stops)
the configured attributes are rendered through their codebooks with a straight-through gradient
to the full-precision parameters:

* at ``vq_start`` each codebook is fitted by k-means on the current values;
* every ``vq_every`` steps after that, codes are re-assigned by a few k-means iterations
  warm-started from the current codebooks;
* on every other step each codeword is set to the mean of its members' current values.

Per-Gaussian codes live in the splats ``ParameterDict`` itself, under ``vq_codes`` (a
non-trainable ``[N, 1 + sum M]`` int64 parameter whose column 0 tags rows), so gsplat's
``strategy.ops`` (duplicate, split, remove, relocate, sample_add) carry them along with every other
attribute. When the plugin notices a new ``vq_codes`` tensor, rows whose tag now occurs twice
(copies, split children, relocated Gaussians, whose values may have changed) are re-encoded
against the current codebooks; all other rows keep their codes.
"""

import dataclasses
from typing import Any, Dict, Optional

import torch
from gsplat.strategy import ops
from torch import Tensor

from ..devices import timed
from ..errors import GsVqError
from ..quant.base import straight_through as identity_gradient
from .attributes import from_vectors, to_vectors
from .config import VQConfig
from .slot import Slot

CODES_KEY = "vq_codes"  # the plugin's entry in the splats ParameterDict


def _set_codes(splats, table: Tensor) -> torch.nn.Parameter:
    param = torch.nn.Parameter(table, requires_grad=False)
    splats[CODES_KEY] = param
    return param


class VQPlugin:
    """Trainer plugin: quantized rendering, opacity regularisation/pruning, compressed export.

    Args:
        cfg: VQ options.
        splats: the splats ``ParameterDict`` (gsplat names); the plugin keeps a reference.
        optimizers: gsplat's ``{name: optimizer}``, used when the plugin prunes.
        vq_start: first quantized step (``cfg.vq_start`` wins when set).
        total_steps: number of training steps; at the last one the model is snapped to the
            precision compressed.ply stores (``cfg.snap``). None: call :meth:`finalize`.
        strategy_state: the densification strategy's state, kept consistent when pruning
            (without it the plugin prunes only after ``refine_stop``).
        refine_stop: step at which densification stops.
    """

    def __init__(self, cfg: VQConfig, splats: torch.nn.ParameterDict, optimizers: Dict[str, Any],
                 vq_start: int = 0, total_steps: Optional[int] = None,
                 strategy_state: Optional[Dict[str, Any]] = None, refine_stop: int = 0):
        cfg.validate()
        self.cfg, self.splats, self.optimizers = cfg, splats, optimizers
        self.vq_start = cfg.vq_start if cfg.vq_start is not None else vq_start
        self.total_steps, self.strategy_state, self.refine_stop = total_steps, strategy_state, refine_stop
        self.slots: Dict[str, Slot] = {}
        self.initialized = False
        self.frozen = False
        self.refresh_steps = []  # steps at which codes were re-assigned (k-means refresh)
        self.num_pruned = 0
        self.grid = None  # PositionGrid the means were snapped to
        self.seconds = {"fit": 0.0, "refresh": 0.0, "update": 0.0, "sync": 0.0}  # wall time
        self._last_step: Optional[int] = None
        self._codes: Optional[torch.nn.Parameter] = None
        self._check_specs()

    def _check_specs(self) -> None:
        """Build (without fitting) each configured quantizer now, so a bad option fails at
        start-up rather than at ``vq_start``."""
        from ..quant import build_quantizer
        from .fit import quantizer_spec

        n = max(int(self.splats["means"].shape[0]), 1)
        for name in self.cfg.attributes:
            if name in self.splats:
                dim = to_vectors(name, self.splats[name][:1].detach()).shape[1]
                build_quantizer(quantizer_spec(self.cfg, name, n, dim))

    @classmethod
    def from_config(cls, vq: Optional[Dict[str, Any]], splats, optimizers, train_cfg=None,
                    strategy_state=None) -> "VQPlugin":
        """Build from the YAML ``vq:`` mapping and gs_vq's TrainConfig (for the schedule)."""
        cfg = VQConfig.from_dict(vq)
        refine_stop = train_cfg.strategy.refine_stop_iter if train_cfg is not None else 0
        total = train_cfg.iterations if train_cfg is not None else None
        start = refine_stop if total is None or refine_stop < total else total // 2
        return cls(cfg, splats, optimizers, vq_start=start, total_steps=total,
                   strategy_state=strategy_state, refine_stop=refine_stop)

    # ------------------------------------------------------------------ hooks
    def splats_to_render(self, step: Optional[int], splats=None) -> Dict[str, Tensor]:
        """Quantized attributes (straight-through) to render instead of ``splats``'; {} before
        ``vq_start``. ``step=None`` only decodes (evaluation); a step runs its schedule once."""
        splats = self.splats if splats is None else splats
        if not self.initialized:
            if step is None or step < self.vq_start:
                return {}
            self._initialize(splats)
        elif step is not None and step != self._last_step and not self.frozen:
            self._sync(splats)
            if step > self.vq_start and (step - self.vq_start) % self.cfg.vq_every == 0:
                self._refresh(splats, step)
            else:
                self._update_codebooks(splats)
        else:
            self._sync(splats)
        if step is not None:
            self._last_step = step
        return self.quantized(splats, straight_through=True)

    def loss(self, step: int, batch=None, render=None) -> Optional[Tensor]:
        """Opacity regularisation ``opacity_reg * mean(sigmoid(opacity))`` inside the window."""
        if self.cfg.opacity_reg <= 0 or not self._in_window(step):
            return None
        return self.cfg.opacity_reg * torch.sigmoid(self.splats["opacities"]).mean()

    @torch.no_grad()
    def step_post_backward(self, step: int, splats=None, optimizers=None, info=None) -> None:
        """After the optimizer and the strategy: prune in the window, notice N changes, and
        snap the model at the last step."""
        splats = self.splats if splats is None else splats
        optimizers = self.optimizers if optimizers is None else optimizers
        if not self.initialized or self.frozen:
            return
        self._sync(splats)
        if (self.cfg.prune_opa > 0 and self._in_window(step) and step > self.vq_start
                and (step - self.vq_start) % self.cfg.prune_every == 0):
            self.prune(splats, optimizers, step)
        if self.cfg.snap and self.total_steps is not None and step >= self.total_steps - 1:
            self.finalize(splats)

    def state_dict(self) -> Dict[str, Any]:
        return {"initialized": self.initialized, "frozen": self.frozen, "vq_start": self.vq_start,
                "last_step": self._last_step, "refresh_steps": list(self.refresh_steps),
                "num_pruned": self.num_pruned,
                "grid": dataclasses.asdict(self.grid) if self.grid is not None else None,
                "codes": self._codes.detach().cpu() if self._codes is not None else None,
                "slots": {k: s.state() for k, s in self.slots.items()}}

    def load_state_dict(self, d: Dict[str, Any]) -> None:
        """Restore after the splats were restored; puts ``vq_codes`` back into the splats."""
        from . import restore

        restore.load_plugin_state(self, d)

    # ------------------------------------------------------------------ decoding
    def quantized(self, splats=None, straight_through: bool = False) -> Dict[str, Tensor]:
        """Decoded quantized attributes ``{name: [N, ...]}``; with ``straight_through`` the
        gradient of each reaches the full-precision parameter unchanged."""
        splats = self.splats if splats is None else splats
        if not self.initialized:
            return {}
        codes = splats[CODES_KEY]
        out = {}
        for name, slot in self.slots.items():
            q = slot.decode(codes[:, slot.cols])  # [N, d]
            if straight_through:  # value exactly q, gradient exactly identity to x
                q = identity_gradient(q, to_vectors(name, splats[name]))
            out[name] = from_vectors(q, slot.shape)
        return out

    # ------------------------------------------------------------------ schedule
    def _timed(self, what: str):
        """Adds the block's wall time to ``seconds[what]``, GPU work included (synchronized)."""
        return timed(self.seconds, what, self.splats["means"].device)

    def _in_window(self, step: Optional[int]) -> bool:
        return (step is not None and self.initialized
                and self.vq_start <= step < self.vq_start + self.cfg.prune_window)

    def _vectors(self, splats, name: str) -> Tensor:
        return to_vectors(name, splats[name].detach()).float()

    @torch.no_grad()
    def _initialize(self, splats) -> None:
        from .fit import build_slots

        n = splats["means"].shape[0]
        if n == 0:
            raise GsVqError("vq: cannot quantize a scene without Gaussians")
        with self._timed("fit"):
            self.slots, columns = build_slots(self.cfg, {k: self._vectors(splats, k) for k in
                                                         self.cfg.attributes if k in splats},
                                              {k: tuple(splats[k].shape[1:]) for k in splats.keys()})
        tags = torch.arange(n, device=splats["means"].device)[:, None]
        self._codes = _set_codes(splats, torch.cat([tags] + columns, dim=1))
        self.initialized = True

    @torch.no_grad()
    def _refresh(self, splats, step: int) -> None:
        from .fit import refresh_slot

        codes = splats[CODES_KEY].data
        with self._timed("refresh"):
            for name, slot in self.slots.items():
                codes[:, slot.cols] = refresh_slot(slot, self._vectors(splats, name), self.cfg)
        self.refresh_steps.append(step)

    @torch.no_grad()
    def _update_codebooks(self, splats) -> None:
        codes = splats[CODES_KEY]
        with self._timed("update"):
            for name, slot in self.slots.items():
                slot.quantizer.update_codebooks_from_assignments(self._vectors(splats, name),
                                                                 codes[:, slot.cols])

    @torch.no_grad()
    def _sync(self, splats) -> None:
        """Notice gsplat's ops having replaced ``vq_codes``; re-encode rows whose tag repeats."""
        param = splats[CODES_KEY] if CODES_KEY in splats else None
        if not self.initialized or (param is not None and param is self._codes):
            return
        n = splats["means"].shape[0]
        if param is None or param.shape[0] != n:  # lost track: re-encode everything
            table = torch.zeros(n, 1 + sum(s.num_codes for s in self.slots.values()),
                                dtype=torch.int64, device=splats["means"].device)
            stale = torch.ones(n, dtype=torch.bool, device=table.device)
        else:
            table = param.detach().clone()
            _, inverse, counts = torch.unique(table[:, 0], return_inverse=True, return_counts=True)
            stale = counts[inverse] > 1  # [N] copies / split children / relocated rows
        if stale.any():
            with self._timed("sync"):
                for name, slot in self.slots.items():
                    x = self._vectors(splats, name)[stale]
                    table[stale, slot.cols] = slot.quantizer.encode(x).to(table)
        table[:, 0] = torch.arange(n, device=table.device)
        self._codes = _set_codes(splats, table)

    # ------------------------------------------------------------------ pruning / export
    @torch.no_grad()
    def prune(self, splats, optimizers, step: Optional[int] = None) -> int:
        """Remove Gaussians with ``sigmoid(opacity) < prune_opa`` through gsplat's ops.remove."""
        if self.strategy_state is None and step is not None and step < self.refine_stop:
            return 0  # the strategy's per-Gaussian state would go stale
        opacities = splats["opacities"].flatten()
        mask = torch.sigmoid(opacities) < self.cfg.prune_opa  # [N]
        if mask.all():  # never leave an empty scene
            mask[torch.argmax(opacities)] = False
        count = int(mask.sum())
        if count:
            ops.remove(splats, optimizers, self.strategy_state if self.strategy_state is not None
                       else {}, mask)
            self.num_pruned += count
            self._sync(splats)
        return count

    @torch.no_grad()
    def finalize(self, splats=None) -> None:
        """Last codebook update, then round codebooks, means, opacities and unquantized
        attributes to what compressed.ply stores, and stop updating (idempotent)."""
        from .export import snap_splats

        splats = self.splats if splats is None else splats
        if not self.initialized:
            self._initialize(splats)
        if self.frozen:
            return
        self._sync(splats)
        self._update_codebooks(splats)
        for slot in self.slots.values():
            slot.snap()
        self.grid = snap_splats(splats, self.cfg, quantized=set(self.slots))
        self.frozen = True

    def export(self, model_path: str, splats=None) -> Dict[str, Any]:
        """Write ``model_path/compressed.ply``; returns sizes for train_stats.json."""
        from .export import export_compressed

        splats = self.splats if splats is None else splats
        self.finalize(splats)
        return export_compressed(self, splats, model_path)
