"""Training configuration: one dataclass tree, YAML presets, command-line overrides.

Precedence, lowest first: dataclass defaults < ``--config`` YAML file < explicit command-line flags.
A YAML preset may set any field, nested sections (``strategy:``, ``vq:``, ``semantic:``) included,
and may ``base:`` another preset in ``configs/`` (merged first).
"""

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import yaml

from .errors import GsVqError

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


@dataclass
class StrategyConfig:
    """gsplat ``DefaultStrategy`` settings (densification and pruning), in training steps."""

    prune_opa: float = 0.005
    grow_grad2d: float = 0.0002
    grow_scale3d: float = 0.01
    prune_scale3d: float = 0.1
    refine_start_iter: int = 500
    refine_stop_iter: int = 15_000
    reset_every: int = 3000
    refine_every: int = 100
    absgrad: bool = False


@dataclass
class TrainConfig:
    """Everything ``train.py`` needs. Units: steps, pixels, scene units (means)."""

    source_path: Optional[str] = None  # COLMAP or NeRF-synthetic folder; None = demo scene
    source_path_rel: Optional[str] = None  # written by train.py: source_path relative to model_path
    model_path: Optional[str] = None  # output folder; default output/<scene name>
    iterations: int = 7000
    eval: bool = False  # hold out test views (every 8th COLMAP image / NeRF test split)
    resolution: int = 1  # image downscale factor: 1, 2, 4 or 8
    white_background: bool = False
    sh_degree: int = 3
    sh_degree_interval: int = 1000  # raise the SH degree by one every this many steps
    device: str = "auto"  # auto | cpu | cuda
    backend: str = "auto"  # rasterizer: auto | gsplat | cpp | torch
    seed: int = 0
    ssim_lambda: float = 0.2  # loss = (1 - l) * L1 + l * (1 - SSIM)
    # initialisation
    init_opacity: float = 0.1
    init_scale: float = 1.0  # times the mean distance to the 3 nearest neighbours
    init_num_points: int = 100_000  # random init (NeRF-synthetic / demo scenes)
    max_init_points: int = 0  # subsample SfM / random points to at most this many (0 = all)
    # learning rates (Adam), as in gsplat's simple_trainer
    means_lr: float = 1.6e-4  # times scene_scale; decays exponentially to 1% at the last step
    scales_lr: float = 5e-3
    quats_lr: float = 1e-3
    opacities_lr: float = 5e-2
    sh0_lr: float = 2.5e-3
    shN_lr: float = 2.5e-3 / 20
    opacity_reg: float = 0.0
    scale_reg: float = 0.0
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    # bookkeeping
    checkpoint_every: int = 1000  # 0 = only at the end
    log_every: int = 10
    resume: bool = False
    start_checkpoint: Optional[str] = None
    # plugin sections, parsed by the plugins' own dataclasses (kept as plain dicts here so the
    # core trainer does not depend on them)
    vq: Optional[Dict[str, Any]] = None  # enabled when not None (``--vq``)
    semantic: Optional[Dict[str, Any]] = None  # enabled when not None (``--semantic``)


def check_keys(cls, data: Dict[str, Any], section: str) -> None:
    """Raise a one-line :class:`GsVqError` naming the keys of ``data`` that dataclass ``cls`` lacks."""
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise GsVqError(f"unknown {section} config key(s): {', '.join(unknown)}")


def _from_dict(cls, data: Dict[str, Any], where: str):
    """Build dataclass ``cls`` from ``data``, recursing into dataclass-typed fields."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise GsVqError(f"unknown config key '{key}' in {where}")
        default = names[key].default_factory() if names[key].default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            value = _from_dict(type(default), {**dataclasses.asdict(default), **value}, f"{where}.{key}")
        kwargs[key] = value
    return cls(**kwargs)


def _merge(base: Dict[str, Any], over: Dict[str, Any]) -> Dict[str, Any]:
    """``over`` onto ``base``, mapping by mapping; a mapping with a ``type`` (a quantizer spec)
    replaces the base's whole, so options of another quantizer type are not carried over."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and "type" not in value:
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_preset(path_or_name: str, _seen: tuple = ()) -> Dict[str, Any]:
    """Read a YAML preset by path or by name in ``configs/`` (``cpu`` -> ``configs/cpu.yaml``)."""
    if not isinstance(path_or_name, str):
        raise GsVqError(f"config 'base:' must name a preset, got {path_or_name!r}")
    path = path_or_name
    if not os.path.exists(path):
        candidate = os.path.join(CONFIG_DIR, path_or_name + ("" if path.endswith(".yaml") else ".yaml"))
        if not os.path.exists(candidate):
            raise GsVqError(f"config file not found: {path_or_name}")
        path = candidate
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise GsVqError(f"cannot parse YAML {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise GsVqError(f"config file {path} must hold a mapping")
    base = data.pop("base", None)
    if os.path.realpath(path) in _seen:
        raise GsVqError(f"config 'base:' loop: {' -> '.join(_seen + (os.path.realpath(path),))}")
    return _merge(read_preset(base, _seen + (os.path.realpath(path),)), data) if base else data


def make_config(preset: Optional[str] = None, overrides: Optional[Dict[str, Any]] = None) -> TrainConfig:
    """Defaults, then the preset (path or name), then ``overrides`` (non-None entries only)."""
    data: Dict[str, Any] = read_preset(preset) if preset else {}
    data = _merge(data, {k: v for k, v in (overrides or {}).items() if v is not None})
    cfg = _from_dict(TrainConfig, data, preset or "overrides")
    from .validate import validate_config  # types, ranges, finiteness of every value

    validate_config(cfg)
    if cfg.resolution not in (1, 2, 4, 8):
        raise GsVqError(f"--resolution must be 1, 2, 4 or 8, got {cfg.resolution}")
    if cfg.iterations < 1:
        raise GsVqError(f"--iterations must be positive, got {cfg.iterations}")
    return cfg


def to_dict(cfg: TrainConfig) -> Dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: TrainConfig, path: str) -> None:
    from .errors import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w") as f:
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False)


def load_config(path: str) -> TrainConfig:
    """Load a resolved ``cfg.yaml`` written by :func:`save_config`."""
    if not os.path.exists(path):
        raise GsVqError(f"no cfg.yaml at {path}: is this a gs-vq model folder?")
    return make_config(path)
