"""The per-Gaussian code table, carried through gsplat's strategy ops.

Codes live in the splats ``ParameterDict`` itself, under ``vq_codes``: a non-trainable
``[N, 1 + sum M]`` int64 parameter whose column 0 tags rows and whose other columns hold each
slot's indices. gsplat's ``strategy.ops`` (duplicate, split, remove, relocate, sample_add) index
every entry of the dict, so the codes follow every Gaussian. When :meth:`CodeTable.sync` sees a
new tensor there, rows whose tag now occurs twice (copies, split children, relocated Gaussians,
whose values may have changed) are re-encoded against the current codebooks; all other rows keep
their codes, and the tags are renumbered.
"""

from typing import Callable, Dict, Optional

import torch
from torch import Tensor

from .slot import Slot

CODES_KEY = "vq_codes"  # the table's entry in the splats ParameterDict
SH_DEGREES_KEY = "sh_degrees"  # [N] int64 per-Gaussian SH degree (frozen), once SH bands were dropped


class CodeTable:
    """Tracks ``splats[CODES_KEY]`` ``[N, 1 + sum M]`` int64 (column 0: row tags)."""

    def __init__(self):
        self.param: Optional[torch.nn.Parameter] = None  # the tensor last installed or synced

    def install(self, splats, table: Tensor) -> None:
        """Put ``table`` [N, 1 + sum M] (column 0 = tags) into ``splats`` as a frozen parameter."""
        self.param = torch.nn.Parameter(table, requires_grad=False)
        splats[CODES_KEY] = self.param

    def remove(self, splats) -> None:
        if CODES_KEY in splats:
            del splats[CODES_KEY]
        self.param = None

    @staticmethod
    def columns(splats, slot: Slot) -> Tensor:
        """``[N, M]`` codes of ``slot``."""
        return splats[CODES_KEY][:, slot.cols]

    @torch.no_grad()
    def sync(self, splats, slots: Dict[str, Slot], vectors: Callable[[str], Tensor]) -> int:
        """Notice gsplat's ops having replaced the table; re-encode rows whose tag repeats (all
        rows if the table is missing or its length differs from N). ``vectors(name)`` gives the
        attribute's current ``[N, d]`` values. Returns the number of rows re-encoded."""
        param = splats[CODES_KEY] if CODES_KEY in splats else None
        if param is not None and param is self.param:
            return 0
        n = splats["means"].shape[0]
        if param is None or param.shape[0] != n:  # lost track: re-encode everything
            table = torch.zeros(n, 1 + sum(s.num_codes for s in slots.values()),
                                dtype=torch.int64, device=splats["means"].device)
            stale = torch.ones(n, dtype=torch.bool, device=table.device)
        else:
            table = param.detach().clone()
            _, inverse, counts = torch.unique(table[:, 0], return_inverse=True, return_counts=True)
            stale = counts[inverse] > 1  # [N] copies / split children / relocated rows
        if stale.any():
            for name, slot in slots.items():
                table[stale, slot.cols] = slot.quantizer.encode(vectors(name)[stale]).to(table)
        table[:, 0] = torch.arange(n, device=table.device)
        self.install(splats, table)
        return int(stale.sum())
