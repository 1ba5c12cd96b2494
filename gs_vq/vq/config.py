"""VQ options: the ``vq:`` section of a YAML preset, or a compression level (:mod:`.levels`).

Steps are training steps (``window`` gives them as fractions of the quantization window
instead); bit counts are per value. The dataclass defaults are Compact3D's recipe with absolute
steps; the levels of ``--vq`` (``gs_vq/configs/vq/*.yaml``) start from them. Each entry of ``attributes`` names a splat
key and how to quantize it: a ``gs_vq.quant.build_quantizer`` spec (``type`` and its
constructor options, e.g. ``{type: vq, codebook_size: 4096}`` or
``{type: rvq, num_stages: 2, codebook_size: 256}``; ``dim`` is filled in) plus the plugin's own
keys: ``precision``, the codebook storage (``float16`` or ``float32``), and ``codebook_step``, a
power of two the float16 codebook values are rounded to multiples of (absolute resolution, for
codebooks of small values such as shN; default none). Presets merge onto the defaults below; ``null``
removes an entry.
"""

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ..fields import FRACTIONS, NONNEG, PROB, Int, Num, build_dataclass, check_ranges, entries, ranged, steps
from ..errors import GsVqError
from ..io.scene import is_codebook_step
from ..quant.factory import OPTION_RULES
from .levels import expand_level
from .schedule import default_vq_start

# attributes the plugin knows how to view as [N, d] vectors (see gs_vq.vq.attributes)
KNOWN_ATTRIBUTES = ("sh0", "shN", "scales", "quats", "features")
PLUGIN_KEYS = ("precision", "codebook_step", "rate")  # keys of an attribute entry that are not quantizer options
ENTRY_RULES = {**OPTION_RULES, "rate": NONNEG}  # ranges of an attribute entry's numbers (codebook_step: validate)


def compact3d_attributes() -> Dict[str, Dict[str, Any]]:
    """Compact3D's codebooks: 4096 entries for DC colour, scales and rotations, 512 for shN.

    Compact3D sized them for scenes of millions of Gaussians; ``max_k_fraction`` caps them for
    small scenes (at N/16 entries by default, so every codeword keeps ~16 members on average).
    """
    return {
        "sh0": {"type": "vq", "codebook_size": 4096},
        "shN": {"type": "vq", "codebook_size": 512},
        "scales": {"type": "vq", "codebook_size": 4096},
        "quats": {"type": "vq", "codebook_size": 4096},
    }


def default_attributes() -> Dict[str, Dict[str, Any]]:
    """Compact3D's four codebooks plus one for the semantic features (used when they are trained,
    ``--semantic``; LEGaussians quantizes its per-Gaussian features the same way)."""
    return {**compact3d_attributes(), "features": {"type": "vq", "codebook_size": 256}}


@dataclass
class VQConfig:
    """Quantization-aware training and compressed export."""

    level: Optional[str] = None  # the compression level these options start from (gs_vq/configs/vq/)
    # --- schedule (steps) ---
    vq_start: Optional[int] = field(default=None, metadata=steps(Int(0)))  # first quantized step; None = when densification stops
    vq_every: int = field(default=100, metadata=steps(Int(1)))  # re-assign codes every this many steps (k-means warm-started)
    window: Dict[str, float] = field(default_factory=dict, metadata=FRACTIONS)  # step options as fractions
    # of the quantization window [vq_start, last step), e.g. {vq_every: 0.0066667}: every 100 steps of a
    # 15k-step window, every 7 of a 1000-step one (resolve_schedule); they override the steps above
    init_iters: int = field(default=5, metadata=ranged(Int(1)))  # k-means iterations of the first fit at vq_start
    refresh_iters: int = field(default=2, metadata=ranged(Int(1)))  # k-means iterations (assign + update) of each refresh
    max_samples: int = field(default=131072, metadata=ranged(Int(0)))  # fit codebooks on at most this many Gaussians (0 = all); all are assigned
    seed: int = field(default=0, metadata=ranged(Int(0)))
    # --- what is quantized ---
    attributes: Dict[str, Any] = field(default_factory=default_attributes, metadata=entries(ENTRY_RULES))
    precision: str = "float16"  # default codebook storage for entries that do not set one
    codebook_mantissa: int = field(default=10, metadata=ranged(Int(0, 10)))  # mantissa bits float16 codebooks keep (10: plain float16; 5 cost lego
    # -0.009 dB post hoc, bench/codec.py)
    rate: float = field(default=0.0, metadata=ranged(NONNEG))  # ECVQ rate term at each refresh: one bit of index entropy is worth `rate` x the
    # plain assignment's mean squared error per vector at the first refresh (fixed from then on; 0 =
    # plain nearest code). vq: one index; rvq: each stage (greedy); pq, fsq: each block or axis. An
    # attribute's own `rate:` overrides it; aq takes none
    weighted: List[str] = field(default_factory=list)  # attributes whose codewords are importance-
    # weighted means of their members (sigmoid(opacity) x footprint area, importance.footprint_weight)
    max_k_fraction: float = field(default=0.0625, metadata=ranged(PROB))  # cap codebooks at N/16 entries (small scenes); 0 = no cap
    # --- opacity regularisation and pruning, in a window after vq_start ---
    opacity_reg: float = field(default=0.01, metadata=ranged(NONNEG))  # weight of mean(sigmoid(opacity)) added to the loss in the window
    prune_opa: float = field(default=0.005, metadata=ranged(Num(0.0, 1.0, open_high=True)))  # prune Gaussians whose sigmoid(opacity) is below this (0 = never)
    prune_window: int = field(default=500, metadata=steps(Int(0)))  # the window: [vq_start, vq_start + prune_window)
    prune_every: int = field(default=100, metadata=steps(Int(1)))  # prune every this many steps inside the window
    # --- fewer Gaussians, fewer SH bands: at the window's first pruning step(s) (gs_vq.vq.importance) ---
    prune_fraction: float = field(default=0.0, metadata=ranged(Num(0.0, 1.0, open_high=True)))  # remove this fraction of the Gaussians, least significant first
    # (significance: summed alpha x transmittance over the training views, as in LightGaussian)
    prune_budget: int = field(default=0, metadata=ranged(Int(0)))  # ... or as many as it takes to keep at most this many (0 = no budget)
    prune_rounds: int = field(default=1, metadata=ranged(Int(1)))  # ... in this many rounds at the window's first pruning steps, each keeping the
    # same share of what is left, significance measured afresh (SH bands are dropped at the last round)
    significance_downscale: int = field(default=1, metadata=ranged(Int(1)))  # render the significance at 1/this of the training resolution (2 on
    # the CPU scenes, 200-250 px wide, leaves many Gaussians sub-pixel: fern post hoc, pruning 20% cost
    # -1.08 dB at 2 and -0.006 dB at 1)
    significance_views: int = field(default=0, metadata=ranged(Int(0)))  # ... from at most this many training views, evenly spaced, a different
    # subset each round (0 = all; lego's 100 views at 34: 99.8% of the kept significance, a third of the time)
    sh_drop: float = field(default=0.0, metadata=ranged(PROB))  # fraction of the Gaussians whose SH bands above 0 are dropped (degree 0;
    # least view-dependent colour x significance first); compressed.ply stores no shN indices for them
    # --- export (MODEL/compressed.ply) ---
    pos_bits: int = field(default=16, metadata=ranged(Int(1, 21, also=(32,))))  # bits per axis of positions (32 = float32, lossless)
    pos_max_drop: float = field(default=0.0, metadata=ranged(Num(0.0, 100.0, open_high=True)))  # > 0: pos_bits is where the search starts; the plugin keeps the fewest bits
    # (pos_bits + 4 at most) whose rounding costs at most this many dB on 16 training views (gs_vq.vq.positions)
    pos_contract: float = field(default=0.0, metadata=ranged(Num(0.0, 1e6, open_high=True)))  # grid in contracted space beyond this many times the training cameras'
    # spread from their centroid (gs_vq.io.grid; 0 = uniform grid). Post hoc on fern at 10 bits, 4:
    # -0.27 dB at 8.1 bits per Gaussian where the uniform grid gives -0.72 dB at 6.9 (bench.ablation)
    opacity_bits: int = field(default=8, metadata=ranged(Int(1, 16, also=(32,))))  # bits of sigmoid(opacity) (32 = float32 logits, lossless)
    raw_precision: str = "float16"  # storage of attributes that are not quantized
    snap: bool = True  # at the last step, round means/opacities/codebooks to what is stored
    export_supersplat: bool = False  # also write MODEL/supersplat.compressed.ply (gsplat)

    @classmethod
    def from_dict(cls, data: Optional[Dict[str, Any]]) -> "VQConfig":
        """Build from a YAML ``vq:`` mapping (unknown keys are an error)."""
        data = expand_level(dict(data or {}))
        attrs = default_attributes()
        given = data.pop("attributes", None) or {}
        if not isinstance(given, dict):
            raise GsVqError(f"vq.attributes must be a mapping, got {given!r}")
        for name, spec in given.items():
            if spec is None or (isinstance(spec, dict) and spec.get("type") in (None, "none")):
                attrs.pop(name, None)
            elif isinstance(spec, dict):
                attrs[name] = dict(spec)
            else:
                raise GsVqError(f"vq.attributes.{name} must be a mapping with a 'type', got {spec!r}")
        cfg = build_dataclass(cls, data, "vq")
        cfg.attributes = attrs
        cfg.validate()
        return cfg

    def config_dict(self) -> Dict[str, Any]:
        """The resolved options; default attributes this config drops are written as ``null`` so
        that the mapping loads back to the same config."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(VQConfig)}
        out["attributes"] = {**{k: None for k in default_attributes() if k not in self.attributes},
                             **{k: dict(v) for k, v in self.attributes.items()}}
        return out

    def resolve_schedule(self, total_steps: int, refine_stop: int) -> None:
        """Set each option of ``window`` to its fraction of the quantization window, in steps (at
        least 1; the pruning window at least long enough for every pruning round), for a run of
        ``total_steps`` densifying until ``refine_stop`` (idempotent)."""
        if not self.window:
            return
        start = self.vq_start if self.vq_start is not None else default_vq_start(refine_stop, total_steps)
        length = max(int(total_steps) - start, 1)
        for name, fraction in self.window.items():
            setattr(self, name, max(1, int(round(fraction * length))))
        if self.prunes_insignificant and "prune_window" in self.window:  # very short windows: room for every round
            self.prune_window = max(self.prune_window, self.prune_every * self.prune_rounds + 1)
        self.validate()

    def validate(self) -> None:
        """Every number's range and finiteness (field metadata, :func:`gs_vq.fields.check_ranges`),
        then what no single field can say: window fractions, attribute names and storage, the
        pruning rounds inside the pruning window."""
        check_ranges(self, "vq.")
        relative = [f.name for f in dataclasses.fields(VQConfig) if f.metadata.get("steps") and f.name != "vq_start"]
        for name, fraction in self.window.items():
            if name not in relative:
                raise GsVqError(f"vq.window.{name}: only {', '.join(relative)} can be given as a fraction of the "
                                "quantization window")
            if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
                raise GsVqError(f"vq.window.{name} must be a fraction of the quantization window in (0, 1], "
                                f"got {fraction!r}")
        unknown = [name for name in self.weighted if name not in self.attributes]
        if unknown:
            raise GsVqError(f"vq.weighted: {', '.join(map(str, unknown))} not among vq.attributes "
                            f"({', '.join(self.attributes)})")
        for name, spec in self.attributes.items():
            if name not in KNOWN_ATTRIBUTES:
                raise GsVqError(f"vq.attributes: cannot quantize '{name}' "
                                f"(known: {', '.join(KNOWN_ATTRIBUTES)})")
            if spec.get("rate", self.rate) > 0 and spec.get("type") == "aq":
                raise GsVqError(f"vq.attributes.{name}: the rate term does not apply to aq (its joint "
                                "encoding has no per-index search); give it rate: 0")
            if spec.get("precision", self.precision) not in ("float16", "float32"):
                raise GsVqError(f"vq.attributes.{name}.precision must be float16 or float32")
            step = spec.get("codebook_step", 0.0)
            if isinstance(step, bool) or not isinstance(step, (int, float)) or not (step == 0 or is_codebook_step(step)):
                raise GsVqError(f"vq.attributes.{name}.codebook_step must be 0 or a power of two in "
                                f"[2**-14, 1] (e.g. 0.00390625 = 2**-8), got {step!r}")
        if self.raw_precision not in ("float16", "float32"):
            raise GsVqError("vq.raw_precision must be float16 or float32")
        if self.prunes_insignificant and self.prune_every * self.prune_rounds >= self.prune_window:
            raise GsVqError(f"vq.prune_fraction/prune_budget/sh_drop act at steps vq_start + prune_every x "
                            f"1..prune_rounds, inside the window: vq.prune_window ({self.prune_window}) must "
                            f"exceed vq.prune_every x vq.prune_rounds ({self.prune_every} x {self.prune_rounds})")

    @property
    def prunes_insignificant(self) -> bool:
        """Whether significance pruning or SH-band dropping is configured."""
        return self.prune_fraction > 0 or self.prune_budget > 0 or self.sh_drop > 0

    def quantizer_spec(self, name: str) -> Dict[str, Any]:
        """The ``build_quantizer`` spec of attribute ``name`` (without the plugin's own keys)."""
        return {k: v for k, v in self.attributes[name].items() if k not in PLUGIN_KEYS}

    def rate_of(self, name: str) -> float:
        """The rate term of attribute ``name``: its own ``rate`` entry, else ``rate``."""
        return float(self.attributes[name].get("rate", self.rate))

    def codebook_precision(self, name: str) -> str:
        return self.attributes[name].get("precision", self.precision)

    def codebook_step(self, name: str) -> float:
        """Absolute resolution of attribute ``name``'s float16 codebook values (0: float16's own)."""
        return float(self.attributes[name].get("codebook_step", 0.0))
