"""When the VQ plugin does what: a pure function of the step.

From ``vq_start`` on the configured attributes render through their codebooks:

* at ``vq_start`` each codebook is fitted by k-means on the current values (``fit``);
* every ``vq_every`` steps after that, codes are re-assigned by k-means iterations warm-started
  from the current codebooks (``refresh``);
* on every other step each codeword is set to the mean of its members' current values (``update``).

Inside the window ``[vq_start, vq_start + prune_window)`` the opacity regulariser is on, and every
``prune_every`` steps after ``vq_start`` Gaussians below ``prune_opa`` are pruned.
"""

from dataclasses import dataclass
from typing import Optional

IDLE, FIT, REFRESH, UPDATE = "idle", "fit", "refresh", "update"


@dataclass(frozen=True)
class VQSchedule:
    """The plugin's schedule, in training steps."""

    vq_start: int  # first quantized step
    vq_every: int  # refresh interval
    prune_window: int  # length of the regularise-and-prune window
    prune_every: int  # pruning interval inside the window
    total_steps: Optional[int] = None  # the run's length (None: no automatic snapping)

    def action(self, step: int, fitted: bool) -> str:
        """What :meth:`VQPlugin.step_pre_forward` does at ``step`` (``fitted``: the codebooks
        exist already): idle | fit | refresh | update."""
        if not fitted:
            return FIT if step >= self.vq_start else IDLE
        if step > self.vq_start and (step - self.vq_start) % self.vq_every == 0:
            return REFRESH
        return UPDATE

    def in_window(self, step: int) -> bool:
        return self.vq_start <= step < self.vq_start + self.prune_window

    def prunes_at(self, step: int) -> bool:
        return self.in_window(step) and step > self.vq_start and (step - self.vq_start) % self.prune_every == 0

    def snaps_at(self, step: int) -> bool:
        """The last step: the model is rounded to what compressed.ply stores."""
        return self.total_steps is not None and step >= self.total_steps - 1


def default_vq_start(refine_stop: int, total_steps: Optional[int]) -> int:
    """When densification stops, or half-way when it stops after the run ends."""
    if total_steps is None or refine_stop < total_steps:
        return refine_stop
    return total_steps // 2
