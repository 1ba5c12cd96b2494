"""Start-up checks of a training config: every number's range and finiteness, by field name.

:func:`validate_config` walks the whole config (dataclass fields, nested dataclasses such as the
strategy section, and plain dicts such as ``vq.attributes``) and checks each value whose field
name it knows (:data:`RULES`, then the name suffixes of :data:`SUFFIX_RULES`). It raises one
:class:`~gs_vq.errors.GsVqError` naming the dotted field, e.g.
``config value vq.attributes.sh0.codebook_size must be an integer >= 2, got 0``. Rules go by
name, not by section, so they keep working when sections change shape (dicts -> dataclasses,
gsplat's strategy dataclasses).
"""

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Optional, Tuple

from .errors import GsVqError

MAX_LR = 1.0  # an Adam step of 1 per iteration on logits / log-scales / SH already diverges


@dataclass(frozen=True)
class Range:
    """``integer`` (else any real) in ``[low, high]``; ``open_low`` / ``open_high`` exclude the ends;
    ``also`` lists extra allowed values outside the range (e.g. 32 bits = lossless)."""

    integer: bool
    low: Optional[float] = None
    high: Optional[float] = None
    open_low: bool = False
    open_high: bool = False
    also: Tuple[float, ...] = ()

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.open_low else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.open_high else '<='} {self.high:g}")
        text = f"{kind} {' and '.join(parts)}".rstrip()
        return text + "".join(f" (or {a:g})" for a in self.also)

    def accepts(self, v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        if self.integer and not isinstance(v, int):
            return False
        if not math.isfinite(v):
            return False
        if v in self.also:
            return True
        if self.low is not None and (v <= self.low if self.open_low else v < self.low):
            return False
        return self.high is None or (v < self.high if self.open_high else v <= self.high)


def Int(low=None, high=None, also=()) -> Range:  # noqa: N802 (reads like a type in the table)
    return Range(True, low, high, also=tuple(also))


def Num(low=None, high=None, open_low=False, open_high=False) -> Range:  # noqa: N802
    return Range(False, low, high, open_low, open_high)


PROB = Num(0.0, 1.0)
POSITIVE = Num(0.0, open_low=True)
NONNEG = Num(0.0)

# field name -> allowed values, whatever section the field is in
RULES = {
    # training (TrainConfig)
    "iterations": Int(1), "sh_degree": Int(0, 3), "sh_degree_interval": Int(1), "seed": Int(0),
    "resolution": Int(1, also=(-1,)), "ssim_lambda": PROB, "init_opacity": Num(0.0, 1.0, True, True),
    "init_scale": POSITIVE, "init_num_points": Int(1), "max_init_points": Int(0),
    "checkpoint_every": Int(0), "log_every": Int(1),
    # densification (our StrategyConfig, gsplat's DefaultStrategy / MCMCStrategy)
    "prune_opa": Num(0.0, 1.0, open_high=True), "grow_grad2d": NONNEG, "grow_scale3d": NONNEG,
    "grow_scale2d": NONNEG, "prune_scale3d": POSITIVE, "prune_scale2d": POSITIVE,
    "refine_start_iter": Int(0), "refine_stop_iter": Int(0), "refine_scale2d_stop_iter": Int(0),
    "reset_every": Int(1), "refine_every": Int(1), "pause_refine_after_reset": Int(0),
    "cap_max": Int(1), "min_opacity": Num(0.0, 1.0, open_high=True), "noise_lr": NONNEG,
    # vq (VQConfig) and its quantizer specs
    "vq_start": Int(0), "vq_every": Int(1), "init_iters": Int(1), "refresh_iters": Int(1),
    "max_samples": Int(0), "max_k_fraction": PROB, "prune_window": Int(0), "prune_every": Int(1),
    "pos_bits": Int(1, 21, also=(32,)), "pos_contract": NONNEG, "pos_max_drop": NONNEG, "opacity_bits": Int(1, 16, also=(32,)),
    "codebook_size": Int(2), "levels": Int(2), "num_stages": Int(1), "num_codebooks": Int(1),
    "num_subvectors": Int(1), "beam_size": Int(1), "iters": Int(1), "encode_ils_rounds": Int(0),
    "num_vectors": Int(0), "temperature": POSITIVE, "clip_quantile": Num(0.0, 0.5, open_high=True),
    "clip_low": Num(0.0, 1.0, open_high=True),
    "chunk_size": Int(1), "batch_size": Int(1), "init_max_points": Int(1), "max_points": Int(1),
    # semantics (SemanticConfig)
    "map_downscale": Int(1), "feature_dim": Int(1, 64), "num_codes": Int(2), "decoder_hidden": Int(1),
    "kmeans_per_view": Int(1), "kmeans_samples": Int(1), "features_init_std": NONNEG, "tau": POSITIVE,
    "relevancy_tau": POSITIVE, "mask_tau": POSITIVE, "num_pixels": Int(1), "start_step": Int(0),
    "active_min_usage": NONNEG,
}
# name suffix -> allowed values, for fields RULES does not name
SUFFIX_RULES = (("_lr", Num(0.0, MAX_LR)), ("_reg", NONNEG), ("weight", NONNEG), ("_every", Int(1)))


def rule_for(name: str) -> Optional[Range]:
    """The :class:`Range` a field called ``name`` must satisfy, or None when it is not a number field."""
    if name in RULES:
        return RULES[name]
    return next((r for suffix, r in SUFFIX_RULES if name.endswith(suffix)), None)


def _check_value(path: str, value: Any) -> None:
    name = path.rsplit(".", 1)[-1]
    if isinstance(value, float) and not math.isfinite(value):
        raise GsVqError(f"config value {path} must be finite, got {value}")
    rule = rule_for(name)
    if rule is None or value is None:
        return
    values = value if isinstance(value, (list, tuple)) and name == "levels" else [value]  # per-axis levels
    for v in values:
        if not rule.accepts(v):
            raise GsVqError(f"config value {path} must be {rule.describe()}, got {value!r}")


def _walk(path: str, node: Any) -> None:
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        for f in dataclasses.fields(node):
            if f.init and not f.metadata.get("fractions"):  # fractions: checked by their owner
                where = f"{path}{f.name}"
                _check_value(where, getattr(node, f.name))
                _walk(where + ".", getattr(node, f.name))
    elif isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}{key}"
            _check_value(where, value)
            _walk(where + ".", value)


def validate_config(cfg: Any) -> None:
    """Check every number of ``cfg`` (a :class:`~gs_vq.config.TrainConfig`, its strategy and its
    plugin sections); raise a one-line GsVqError naming the first bad one. Types were checked when
    the config was built (:func:`gs_vq.config.build_dataclass`)."""
    plugins = getattr(cfg, "plugins", {})
    for f in dataclasses.fields(cfg):
        if f.name != "plugins":
            _check_value(f.name, getattr(cfg, f.name))
            _walk(f.name + ".", getattr(cfg, f.name))
    for name, plugin in plugins.items():  # named by their YAML sections: vq.vq_every, not plugins.vq...
        _walk(name + ".", plugin)
