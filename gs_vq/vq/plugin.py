"""Quantization-aware training as a plugin (Compact3D's recipe, any gs_vq.quant quantizer).

From ``vq_start`` on (default: when densification stops) the configured attributes render through
their codebooks with a straight-through gradient to the full-precision parameters. The schedule
(:mod:`.schedule`) runs in :meth:`VQPlugin.step_pre_forward`; :meth:`VQPlugin.splats_to_render` only
decodes. Per-Gaussian codes ride in the splats (:mod:`.codes`), the run state is a
:class:`~.state.VQState`, and :mod:`.export` writes compressed.ply.

At the window's first pruning step (or its first ``prune_rounds`` steps) :meth:`VQPlugin.reduce`
removes the least significant Gaussians and sets the SH degree of the least view-dependent ones
to 0 (:mod:`.importance`); their shN renders as zero and compressed.ply stores no shN indices for them.
"""

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch
from torch import Tensor

from ..data.cameras import background_of
from ..devices import BlockTimer
from ..errors import GsVqError
from ..plugins import Plugin, TrainContext
from ..quant.base import straight_through
from ..render.contribution import contribution
from ..splats import sh_degree_of
from ..strategy import remove
from .attributes import from_vectors, to_vectors
from .codes import CODES_KEY, SH_DEGREES_KEY, CodeTable
from .config import VQConfig
from .export import COMPRESSED_NAME, SUPERSPLAT_NAME, export_compressed, snap_splats
from .fit import build_slots, present_attributes, quantizer_spec, refresh_slot
from .importance import footprint_weight, lowest, prune_count, sh_drop_mask, view_subset
from .positions import position_grid
from .schedule import FIT, REFRESH, UPDATE, VQSchedule, default_vq_start
from .state import VQRun, VQState


@dataclass
class VQPlugin(VQConfig, Plugin):
    """Quantized rendering, opacity regularisation and pruning, compressed export.

    Its fields are :class:`VQConfig`'s (the ``vq:`` section). After :meth:`initialize` it holds
    ``state`` (:class:`VQState`: what it learns, checkpointed), ``run`` (:class:`VQRun`: what the
    trainer gave it), ``schedule`` (:class:`VQSchedule`) and ``codes`` (:class:`CodeTable`).
    """

    name = "vq"
    outputs = (COMPRESSED_NAME, SUPERSPLAT_NAME)

    def output_files(self) -> List[str]:
        return [COMPRESSED_NAME] + ([SUPERSPLAT_NAME] if self.export_supersplat else [])

    def __post_init__(self):
        self.state = VQState(vq_start=self.vq_start or 0)  # replaced by initialize()
        self.codes = CodeTable()
        self.schedule: Optional[VQSchedule] = None
        self.run = VQRun()

    def initialize(self, splats, optimizers: Dict[str, Any], ctx: TrainContext) -> None:
        """Check every quantizer spec (a bad option fails now, not at ``vq_start``) and start the
        schedule: ``vq_start`` defaults to ``ctx.refine_stop`` (half-way if that is past the end),
        and the options a level gives relative to the quantization window become steps.

        Significance pruning and SH dropping need the training views: ``ctx.scene`` is the
        trainer's :class:`~gs_vq.data.Scene`; a fork of gsplat's simple_trainer passes
        ``gs_vq.data.scene_from_gsplat(self.parser, self.trainset)``."""
        if ctx.total_steps is not None:
            self.resolve_schedule(ctx.total_steps, ctx.refine_stop)
        self.validate()
        start = self.vq_start if self.vq_start is not None else default_vq_start(ctx.refine_stop, ctx.total_steps)
        self.schedule = VQSchedule(start, self.vq_every, self.prune_window, self.prune_every, ctx.total_steps)
        self.state = VQState(vq_start=start)
        self.codes = CodeTable()
        device = splats["means"].device
        self.run = VQRun(splats=splats, strategy_state=ctx.strategy_state, refine_stop=ctx.refine_stop,
                         device=device, cameras=getattr(ctx.scene, "train_cameras", None),
                         background=background_of(ctx.scene), timer=BlockTimer(device))
        if self.prunes_insignificant and not self.run.cameras:
            raise GsVqError("vq.prune_fraction, vq.prune_budget and vq.sh_drop need the training views: "
                            "pass TrainContext(scene=...) (with gsplat's simple_trainer: "
                            "gs_vq.data.scene_from_gsplat(parser, trainset))")
        from ..quant import build_quantizer

        n = max(int(splats["means"].shape[0]), 1)
        for name in present_attributes(self, splats):  # none present fails now, not at vq_start
            dim = to_vectors(name, splats[name][:1].detach()).shape[1]
            build_quantizer(quantizer_spec(self, name, n, dim))

    # ------------------------------------------------------------------ hooks
    @torch.no_grad()
    def step_pre_forward(self, step: int, splats, optimizers: Dict[str, Any]) -> None:
        """Fit at ``vq_start``, then refresh every ``vq_every`` steps and update codewords between."""
        if self.state.frozen:
            return
        action = self.schedule.action(step, self.state.initialized)
        if action == FIT:
            self._fit(splats)
            return
        if action in (REFRESH, UPDATE):
            self.sync(splats)
            (self._refresh if action == REFRESH else self._update_codebooks)(splats, step)

    def splats_to_render(self, splats) -> Dict[str, Tensor]:
        """Quantized attributes (straight-through to the full-precision ones); {} before ``vq_start``."""
        return self.quantized(splats, differentiable=True)

    def loss(self, step: int, splats, batch=None, render=None) -> Optional[Tensor]:
        """Opacity regularisation ``opacity_reg * mean(sigmoid(opacity))`` inside the window."""
        if self.opacity_reg <= 0 or not self.state.initialized or not self.schedule.in_window(step):
            return None
        return self.opacity_reg * torch.sigmoid(splats["opacities"]).mean()

    @torch.no_grad()
    def step_post_backward(self, step: int, splats, optimizers: Dict[str, Any], info=None) -> None:
        """After the optimizers and the strategy: follow N changes, prune in the window, and snap
        the model at the last step."""
        if not self.state.initialized or self.state.frozen:
            return
        self.sync(splats)
        if self.prunes_insignificant and not self.state.reduced and self.schedule.prunes_at(step):
            self.prune_insignificant(splats, optimizers, self.prune_rounds)
        if self.prune_opa > 0 and self.schedule.prunes_at(step):
            self.prune_transparent(splats, optimizers, step)
        if self.snap and self.schedule.snaps_at(step):
            self.finalize(splats)

    def export(self, model_dir: str, splats) -> Dict[str, Any]:
        """Write ``model_dir/compressed.ply``; returns sizes for train_stats.json."""
        self.finalize(splats)
        return export_compressed(self, splats, model_dir)

    def state_dict(self) -> Dict[str, Any]:
        self.timings()
        splats = self.run.splats
        return self.state.to_dict(self.codes.param, splats[SH_DEGREES_KEY]
                                  if splats is not None and SH_DEGREES_KEY in splats else None)

    def load_state_dict(self, d: Dict[str, Any]) -> None:
        """Restore after :meth:`initialize`, once the splats hold the checkpoint's values; the code
        table goes back into the splats given to :meth:`initialize`."""
        splats, device = self.run.splats, self.run.device
        if splats is None:
            raise GsVqError("VQPlugin.load_state_dict: call initialize(splats, ...) first")
        self.state, table = VQState.from_dict(d, device)
        degrees = d.get("sh_degrees")
        if degrees is not None and degrees.shape[0] == splats["means"].shape[0]:
            splats[SH_DEGREES_KEY] = torch.nn.Parameter(degrees.to(device), requires_grad=False)
        if table is not None and table.shape[0] == splats["means"].shape[0]:
            self.codes.install(splats, table)
        else:  # splats and codes disagree: sync re-encodes every row
            self.codes.remove(splats)
        if self.state.initialized:
            self.sync(splats)

    # ------------------------------------------------------------------ decoding
    def quantized(self, splats, differentiable: bool = False) -> Dict[str, Tensor]:
        """Decoded quantized attributes ``{name: [N, ...]}``; ``differentiable``: straight through,
        the gradient of each reaches the full-precision parameter unchanged."""
        if not self.state.initialized:
            return {}
        out = {}
        for name, slot in self.state.slots.items():
            q = slot.decode(CodeTable.columns(splats, slot))  # [N, d]
            if differentiable:  # value exactly q, gradient exactly identity to x
                q = straight_through(q, to_vectors(name, splats[name]))
            out[name] = from_vectors(q, slot.shape)
        rows = self.rows(splats, "shN")
        if rows is not None:  # SH degree 0: no view-dependent colour
            out["shN"] = out.get("shN", splats["shN"]) * rows[:, None, None]
        return out

    @staticmethod
    def rows(splats, name: str) -> Optional[Tensor]:
        """``[N]`` bool: the Gaussians that keep attribute ``name`` (None: all). Only ``shN``
        is ever dropped (per-Gaussian SH degree 0, :meth:`reduce`)."""
        if name != "shN" or SH_DEGREES_KEY not in splats:
            return None
        return splats[SH_DEGREES_KEY] > 0

    # ------------------------------------------------------------------ schedule work
    def _timed(self, what: str):
        """Adds the block's time to ``state.seconds[what]``, GPU work included (:class:`BlockTimer`:
        read at :meth:`timings`, no host sync per block)."""
        return self.run.timer.block(self.state.seconds, what)

    def timings(self) -> Dict[str, float]:
        """Seconds spent in each hook so far (``state.seconds``, pending CUDA timings settled)."""
        self.run.timer.settle()
        return self.state.seconds

    @staticmethod
    def _vectors(splats, name: str) -> Tensor:
        return to_vectors(name, splats[name].detach()).float()

    def _weights(self, splats, name: str) -> Optional[Tensor]:
        """``[N]`` importance weights of attribute ``name``'s codeword means (None: plain means)."""
        return footprint_weight(splats) if name in self.weighted else None

    def sync(self, splats) -> None:
        """Follow gsplat's ops: re-encode the Gaussians they copied, split or relocated."""
        with self._timed("sync"):
            self.codes.sync(splats, self.state.slots, lambda name: self._vectors(splats, name))

    def _fit(self, splats) -> None:
        n = splats["means"].shape[0]
        if n == 0:
            raise GsVqError("vq: cannot quantize a scene without Gaussians")
        with self._timed("fit"):
            present = [k for k in self.attributes if k in splats]
            slots, columns = build_slots(self, {k: self._vectors(splats, k) for k in present},
                                         {k: tuple(splats[k].shape[1:]) for k in splats.keys()},
                                         {k: self._weights(splats, k) for k in present})
        tags = torch.arange(n, device=splats["means"].device)[:, None]
        self.codes.install(splats, torch.cat([tags] + columns, dim=1))
        self.state.slots, self.state.initialized = slots, True

    def _refresh(self, splats, step: int) -> None:
        with self._timed("refresh"):
            for name, slot in self.state.slots.items():
                self._reassign(splats, name, slot)
        self.state.refresh_steps.append(step)

    def _reassign(self, splats, name: str, slot) -> None:
        """Refresh ``slot``'s codes on the Gaussians that keep the attribute (:meth:`rows`); the
        others store no codes (index 0)."""
        table, x, rows = splats[CODES_KEY].data, self._vectors(splats, name), self.rows(splats, name)
        w = self._weights(splats, name)  # [N] or None
        if rows is None:
            table[:, slot.cols] = refresh_slot(slot, x, self, w)
            return
        if rows.any():
            table[rows, slot.cols] = refresh_slot(slot, x[rows], self, None if w is None else w[rows])
        table[~rows, slot.cols] = 0

    def _update_codebooks(self, splats, step: Optional[int] = None) -> None:
        """Every codeword to the (weighted) mean of its members. Gaussians without the attribute
        (:meth:`rows`) get weight 0 rather than being filtered out: a boolean index would read its
        size back to the host (a CUDA sync every step)."""
        with self._timed("update"):
            for name, slot in self.state.slots.items():
                x, codes, rows = self._vectors(splats, name), CodeTable.columns(splats, slot), self.rows(splats, name)
                w = self._weights(splats, name)  # [N] or None
                if rows is not None:
                    w = rows.to(x.dtype) if w is None else w * rows
                if x.shape[0]:
                    slot.quantizer.update_codebooks_from_assignments(x, codes, w)

    # ------------------------------------------------------------------ pruning / snapping
    @torch.no_grad()
    def prune_transparent(self, splats, optimizers, step: Optional[int] = None) -> int:
        """Remove Gaussians with ``sigmoid(opacity) < prune_opa`` through gsplat's ops.remove."""
        if self.run.strategy_state is None and step is not None and step < self.run.refine_stop:
            return 0  # the strategy's per-Gaussian state would go stale
        opacities = splats["opacities"].flatten()
        mask = torch.sigmoid(opacities) < self.prune_opa  # [N]
        if mask.all():  # never leave an empty scene
            mask[torch.argmax(opacities)] = False
        count = int(mask.sum())
        if count:
            remove(splats, optimizers, self.run.strategy_state, mask)
            self.state.num_pruned += count
            self.sync(splats)
        return count

    @torch.no_grad()
    def prune_insignificant(self, splats, optimizers, rounds: int = 1) -> Dict[str, int]:
        """The next of ``rounds`` reduction rounds (1: all at once). Together the rounds remove the
        least significant Gaussians (``prune_fraction`` / ``prune_budget`` of the count at the first
        round), each round keeping the same share of what is left, with the significance measured
        afresh; the last round also drops the SH bands of the ``sh_drop`` fraction with the least
        view-dependent colour times significance (their ``sh_degrees`` entry becomes 0).
        Returns this round's two counts."""
        with self._timed("reduce"):
            done = self.state.reduce_rounds
            views = view_subset(self.run.cameras, self.significance_views, done)
            score = contribution(splats, views, self.significance_downscale)  # [N] significance
            n = score.shape[0]
            if done == 0:
                self.state.reduce_from = n
            first = self.state.reduce_from
            kept = first - prune_count(first, self.prune_fraction, self.prune_budget)  # after all rounds
            target = round(first * (kept / max(first, 1)) ** ((done + 1) / rounds))  # after this round
            removed = max(0, n - target)
            if removed:
                mask = lowest(score, removed)  # [N]
                remove(splats, optimizers, self.run.strategy_state, mask)
                self.state.num_pruned += int(mask.sum())
                score = score[~mask]
                self.sync(splats)
            self.state.reduce_rounds = done + 1
            dropped = 0
            if self.state.reduce_rounds >= rounds:
                dropped = self._drop_sh(splats, score)
                self.state.reduced, self.state.num_sh_dropped = True, dropped
        return {"pruned": removed, "sh_dropped": dropped}

    def _drop_sh(self, splats, score: Tensor) -> int:
        """SH degree 0 for the ``sh_drop`` fraction least worth their bands (``score`` [N]:
        significance); refits shN on the rest. Returns how many were dropped."""
        if not (self.sh_drop > 0 and "shN" in splats and splats["shN"].shape[1] > 0):
            return 0
        drop = sh_drop_mask(splats["shN"], score, self.sh_drop)  # [N]
        degree = sh_degree_of(splats)
        degrees = torch.full((drop.shape[0],), degree, dtype=torch.int64, device=drop.device)
        degrees[drop] = 0
        splats[SH_DEGREES_KEY] = torch.nn.Parameter(degrees, requires_grad=False)
        if "shN" in self.state.slots:  # refit shN on the Gaussians that keep it
            self._reassign(splats, "shN", self.state.slots["shN"])
        return int(drop.sum())

    @torch.no_grad()
    def finalize(self, splats) -> None:
        """Last codebook update, then round codebooks, means, opacities and unquantized
        attributes to what compressed.ply stores, and stop updating (idempotent)."""
        if not self.state.initialized:
            self._fit(splats)
        if self.state.frozen:
            return
        self.sync(splats)
        self._update_codebooks(splats)
        for slot in self.state.slots.values():
            slot.snap()
        with self._timed("positions"):
            model = splats if self.pos_max_drop <= 0 else {  # the rendered model, only to search the bits
                **{k: v for k, v in splats.items() if k != CODES_KEY}, **self.quantized(splats)}
            self.state.grid, self.state.pos_drops = position_grid(model, self, self.run.cameras, self.run.background)
        snap_splats(splats, self, set(self.state.slots), self.state.grid)
        self.state.frozen = True
