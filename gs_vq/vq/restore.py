"""Restoring a :class:`VQPlugin` from its ``state_dict`` (checkpoints, ``--resume``)."""

from typing import Any, Dict

from ..io.streams import PositionGrid
from ..quant import build_quantizer
from .slot import Slot


def load_plugin_state(plugin, d: Dict[str, Any]) -> None:
    """Rebuild the quantizers and put the code table back into ``plugin.splats``."""
    from .plugin import CODES_KEY, _set_codes

    plugin.initialized, plugin.frozen = bool(d["initialized"]), bool(d["frozen"])
    plugin.vq_start = d.get("vq_start", plugin.vq_start)
    plugin._last_step = d.get("last_step")
    plugin.refresh_steps = list(d.get("refresh_steps", []))
    plugin.num_pruned = int(d.get("num_pruned", 0))
    grid = d.get("grid")
    plugin.grid = None if grid is None else PositionGrid(tuple(grid["lo"]), tuple(grid["step"]),
                                                         int(grid["bits"]))
    plugin.slots = {}
    if not plugin.initialized:
        return
    device = plugin.splats["means"].device
    for name, s in d["slots"].items():
        quantizer = build_quantizer(s["spec"]).to(device)
        quantizer.load_state_dict(s["quantizer"])
        frozen = [t.to(device) for t in s["frozen"]] if s.get("frozen") is not None else None
        plugin.slots[name] = Slot(name, tuple(s["shape"]), quantizer, int(s["start"]),
                                  int(s["num_codes"]), s["precision"], dict(s["spec"]),
                                  s["combine"], frozen)
    codes = d["codes"].to(device)
    if codes.shape[0] != plugin.splats["means"].shape[0]:
        codes = None  # splats and codes disagree: _sync re-encodes every row
    plugin._codes = _set_codes(plugin.splats, codes) if codes is not None else None
    if codes is None and CODES_KEY in plugin.splats:
        del plugin.splats[CODES_KEY]
    plugin._sync(plugin.splats)
