"""Training configuration: one typed dataclass tree, YAML presets, command-line overrides.

Precedence, lowest first: dataclass defaults < ``--config`` YAML file < explicit command-line flags.
Presets ship inside the package (``gs_vq/configs/``); a preset may ``base:`` another (merged
first). Sections:

- top-level keys: :class:`TrainConfig`'s fields;
- ``strategy: {type: default | mcmc, ...}``: gsplat's own ``DefaultStrategy`` / ``MCMCStrategy``
  dataclass (no ``type``: ``default``);
- any other section names a training plugin (``vq:``, ``semantic:``, or one registered with
  :func:`gs_vq.plugins.register_plugin`): the plugin's dataclass, built from the mapping. A
  plugin may give step-valued settings relative to the run; :func:`make_config` resolves them
  (``Plugin.resolve_schedule``) so that ``cfg.yaml`` records the steps it trains with.

Every value is checked against its field's type when the config loads, so a typo or a wrong type
anywhere is a one-line error at start-up, and ``cfg.yaml`` records every resolved value.
"""

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import yaml
from gsplat.strategy import DefaultStrategy, Strategy

from .data.images import check_resolution
from .errors import GsVqError
from .fields import (LR, NONNEG, POSITIVE, PROB, SECTIONS, Int, Num, build_dataclass, check_ranges, ranged,
                     ranged_by, steps)
from .plugins import Plugin, is_plugin, plugin_class
from .strategy import STEP_FIELDS, STRATEGIES, STRATEGY_RULES, refine_stop, strategy_type

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
# presets that became compression levels of --vq (gs_vq/configs/vq/): a one-line pointer
RENAMED = {"vq": "--vq", "vq_small": "--vq small", "vq_tiny": "--vq tiny", "compact3d": "--vq compact3d"}


def default_strategy() -> DefaultStrategy:
    """gsplat's ``DefaultStrategy`` with its own defaults (quiet)."""
    return DefaultStrategy(verbose=False)


@dataclass
class TrainConfig:
    """Everything ``train.py`` needs. Units: steps, pixels, scene units (means)."""

    source_path: Optional[str] = None  # COLMAP or NeRF-synthetic folder; None = demo scene
    source_path_rel: Optional[str] = None  # written by train.py: source_path relative to model_path
    model_path: Optional[str] = None  # output folder; default output/<scene name>
    iterations: int = field(default=7000, metadata=steps(Int(1)))
    eval: bool = False  # hold out test views (every 8th COLMAP image / NeRF test split)
    resolution: int = -1  # -r as Inria: factor 1, 2, 4 or 8, -1 auto (at most 1600 px wide) or a target width
    images: str = "images"  # -i: the image folder inside source_path (COLMAP)
    lens: str = "undistort"  # distorted COLMAP cameras: undistort at load, or raw: trained through the lens (CPU)
    white_background: bool = False
    sh_degree: int = field(default=3, metadata=ranged(Int(0, 3)))
    sh_degree_interval: int = field(default=1000, metadata=steps(Int(1)))  # raise the SH degree every this many steps
    device: str = "auto"  # auto | cpu | cuda
    backend: str = "auto"  # rasterizer: auto | gsplat | cpp | torch
    seed: int = field(default=0, metadata=ranged(Int(0)))
    ssim_lambda: float = field(default=0.2, metadata=ranged(PROB))  # loss = (1 - l) * L1 + l * (1 - SSIM)
    # initialisation
    init_opacity: float = field(default=0.1, metadata=ranged(Num(0.0, 1.0, True, True)))
    init_scale: float = field(default=1.0, metadata=ranged(POSITIVE))  # times the mean distance to the 3 nearest neighbours
    init_num_points: int = field(default=100_000, metadata=ranged(Int(1)))  # random init (NeRF-synthetic / demo scenes)
    max_init_points: int = field(default=0, metadata=ranged(Int(0)))  # subsample SfM / random points to at most this many (0 = all)
    # learning rates (Adam), as in gsplat's simple_trainer
    means_lr: float = field(default=1.6e-4, metadata=ranged(LR))  # times scene_scale; decays exponentially to 1% at the last step
    scales_lr: float = field(default=5e-3, metadata=ranged(LR))
    quats_lr: float = field(default=1e-3, metadata=ranged(LR))
    opacities_lr: float = field(default=5e-2, metadata=ranged(LR))
    sh0_lr: float = field(default=2.5e-3, metadata=ranged(LR))
    shN_lr: float = field(default=2.5e-3 / 20, metadata=ranged(LR))
    opacity_reg: float = field(default=0.0, metadata=ranged(NONNEG))  # weight of mean(sigmoid(opacity)) (gsplat's MCMC recipe uses 0.01)
    scale_reg: float = field(default=0.0, metadata=ranged(NONNEG))  # weight of mean(exp(scales)) (MCMC recipe: 0.01)
    strategy: Strategy = field(default_factory=default_strategy, metadata=ranged_by(STRATEGY_RULES))  # gsplat's DefaultStrategy / MCMCStrategy
    # bookkeeping
    checkpoint_every: int = field(default=1000, metadata=steps(Int(0)))  # 0 = only at the end
    log_every: int = field(default=10, metadata=ranged(Int(1)))
    resume: bool = False
    start_checkpoint: Optional[str] = None
    plugins: Dict[str, Plugin] = field(default_factory=dict, metadata=SECTIONS)  # enabled plugins, by section name

    @property
    def vq(self):
        """The ``vq:`` plugin (:class:`gs_vq.vq.VQPlugin`), or None."""
        return self.plugins.get("vq")

    @property
    def semantic(self):
        """The ``semantic:`` plugin (:class:`gs_vq.semantics.SemanticField`), or None."""
        return self.plugins.get("semantic")

    def scene_options(self) -> Dict[str, Any]:
        """The keyword arguments of :func:`gs_vq.data.load_scene` this config trains with."""
        return dict(resolution=self.resolution, eval=self.eval, white_background=self.white_background,
                    num_random_points=self.init_num_points, images=self.images, lens=self.lens)


# ---- typed construction ---------------------------------------------------------------------------
def build_strategy(data: Any, where: str = "strategy") -> Strategy:
    """gsplat strategy from ``{type: default | mcmc, **its fields}`` (or an existing strategy)."""
    if isinstance(data, Strategy):
        return data
    if not isinstance(data, dict):
        raise GsVqError(f"{where} must be a mapping like {{type: default}} or {{type: mcmc, cap_max: 100000}}, "
                        f"got {data!r}")
    data = dict(data)
    kind = data.pop("type", "default")
    if kind not in STRATEGIES:
        raise GsVqError(f"{where}.type must be one of {', '.join(STRATEGIES)}, got {kind!r}")
    return build_dataclass(STRATEGIES[kind], {"verbose": False, **data}, f"{where} ({kind})")


def build_plugin(name: str, data: Any) -> Plugin:
    """The plugin of section ``name`` from its mapping (``{}`` or None-free values)."""
    cls = plugin_class(name)
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise GsVqError(f"{name} must be a mapping of its options, got {data!r}")
    if hasattr(cls, "from_dict"):
        return cls.from_dict(data if data is not None else {})
    return build_dataclass(cls, data if data is not None else {}, name)


def config_from_dict(data: Dict[str, Any], where: str = "config") -> TrainConfig:
    """A :class:`TrainConfig` from a merged mapping (see the module doc for the sections)."""
    data = dict(data)
    plugins = {}
    for key in [k for k in data if k not in {f.name for f in dataclasses.fields(TrainConfig)}]:
        if not is_plugin(key):
            raise GsVqError(f"unknown config key '{key}' in {where} (not a TrainConfig field nor a plugin section)")
        section = data.pop(key)
        if section is not None:  # `vq: null` disables a plugin a base preset enabled
            plugins[key] = build_plugin(key, section)
    if "strategy" in data:
        data["strategy"] = build_strategy(data["strategy"])
    if "plugins" in data:
        raise GsVqError(f"{where}: enable plugins by their own sections (vq:, semantic:), not 'plugins:'")
    cfg = build_dataclass(TrainConfig, data, where)
    cfg.plugins = plugins
    return cfg


# ---- presets ------------------------------------------------------------------------------------
def merge(base: Dict[str, Any], over: Dict[str, Any]) -> Dict[str, Any]:
    """``over`` onto ``base``, mapping by mapping; a mapping with a ``type`` (a quantizer spec, a
    strategy) replaces the base's whole, so options of another type are not carried over."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and "type" not in value:
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str) -> Dict[str, Any]:
    """The mapping a YAML file holds (empty file: ``{}``); a one-line error otherwise."""
    if os.path.isdir(path):
        raise GsVqError(f"config file {path} is a folder, not a YAML file")
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise GsVqError(f"cannot parse YAML {path}: {str(e).splitlines()[0]}") from None
    except OSError as e:
        raise GsVqError(f"cannot read config file {path}: {e.strerror}") from None
    if not isinstance(data, dict):
        raise GsVqError(f"config file {path} must hold a mapping")
    return data


def yaml_names(folder: str) -> list:
    """The names of the YAML files in ``folder`` (without ``.yaml``), sorted."""
    return sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml"))


def preset_names() -> list:
    """The presets shipped in the package (names for ``--config``)."""
    return yaml_names(CONFIG_DIR)


def read_preset(path_or_name: str, _seen: Optional[tuple] = None) -> Dict[str, Any]:
    """Read a YAML preset by path or by name in ``gs_vq/configs/`` (``cpu`` -> ``cpu.yaml``)."""
    if not isinstance(path_or_name, str):
        raise GsVqError(f"config 'base:' must name a preset, got {path_or_name!r}")
    path = path_or_name
    if not os.path.exists(path):
        if path_or_name in RENAMED:
            raise GsVqError(f"preset '{path_or_name}' is now a compression level: use {RENAMED[path_or_name]} "
                            f"with any --config ({', '.join(preset_names())} or a YAML file)")
        candidate = os.path.join(CONFIG_DIR, path_or_name + ("" if path.endswith(".yaml") else ".yaml"))
        if not os.path.exists(candidate):
            raise GsVqError(f"config file not found: {path_or_name} (presets: {', '.join(preset_names())})")
        path = candidate
    seen = (_seen or ()) + (os.path.realpath(path),)
    if os.path.realpath(path) in (_seen or ()):
        raise GsVqError(f"config presets base each other in a loop: {' -> '.join(seen)}")
    data = read_yaml(path)
    base = data.pop("base", None)
    return merge(read_preset(base, seen), data) if base else data


def make_config(preset: Optional[str] = None, overrides: Optional[Dict[str, Any]] = None) -> TrainConfig:
    """Defaults, then the preset (path or name), then ``overrides`` (non-None entries only)."""
    data: Dict[str, Any] = read_preset(preset) if preset else {}
    data = merge(data, {k: v for k, v in (overrides or {}).items() if v is not None})
    cfg = config_from_dict(data, preset or "overrides")
    resolve_schedules(cfg)
    check_ranges(cfg, "")  # ranges and finiteness of every value, plugins and strategy included
    check_resolution(cfg.resolution)  # a factor 1, 2, 4, 8, -1 (auto) or a target width
    return cfg


def resolve_schedules(cfg: TrainConfig) -> None:
    """Let every plugin turn settings given relative to the run into steps (in place)."""
    for plugin in cfg.plugins.values():
        plugin.resolve_schedule(cfg.iterations, refine_stop(cfg.strategy))


def to_dict(cfg: TrainConfig) -> Dict[str, Any]:
    """The resolved config as the mapping ``cfg.yaml`` holds (loads back to an equal config)."""
    out = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in ("strategy", "plugins")}
    out["strategy"] = {"type": strategy_type(cfg.strategy),
                       **{k: v for k, v in dataclasses.asdict(cfg.strategy).items() if k != "verbose"}}
    for name, plugin in cfg.plugins.items():
        out[name] = plugin.config_dict()
    return out


def save_config(cfg: TrainConfig, path: str) -> None:
    from .files import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w") as f:
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False)


def load_config(path: str) -> TrainConfig:
    """Load a resolved ``cfg.yaml`` written by :func:`save_config`."""
    if not os.path.exists(path):
        raise GsVqError(f"no cfg.yaml at {path}: is this a gs-vq model folder?")
    return make_config(path)


# ---- shorter schedules ------------------------------------------------------------------------------
def _scaled(obj, factor: float, names) -> Dict[str, Any]:
    """Replacements for ``obj``'s step-valued fields ``names``, times ``factor`` (None / 0 kept)."""
    out = {}
    for name in names:
        value = getattr(obj, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            out[name] = max(1, int(round(value * factor)))
    return out


def step_fields(obj) -> list:
    """Names of ``obj``'s fields that count steps (``metadata={"steps": True}``, or gsplat's)."""
    names = [f.name for f in dataclasses.fields(obj) if f.metadata.get("steps")]
    return names + [n for n in STEP_FIELDS if isinstance(obj, Strategy) and hasattr(obj, n)]


def scale_steps(cfg: TrainConfig, factor: float) -> TrainConfig:
    """A copy of ``cfg`` with every step-valued setting (the run, the strategy's schedule, the
    plugins' schedules) multiplied by ``factor``, like gsplat's ``steps_scaler``."""
    if factor == 1.0:
        return dataclasses.replace(cfg, plugins=dict(cfg.plugins))
    strategy = dataclasses.replace(cfg.strategy, **_scaled(cfg.strategy, factor, step_fields(cfg.strategy)))
    plugins = {k: dataclasses.replace(p, **_scaled(p, factor, step_fields(p))) for k, p in cfg.plugins.items()}
    out = dataclasses.replace(cfg, strategy=strategy, plugins=plugins, **_scaled(cfg, factor, step_fields(cfg)))
    resolve_schedules(out)  # settings relative to the run follow the new length exactly
    return out
