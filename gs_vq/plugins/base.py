"""The plugin base class: what a training plugin can hook into, in the spirit of gsplat's
``Strategy``.

A plugin is a dataclass whose fields are its configuration (its YAML section, e.g. ``vq:``) and
whose methods are hooks with no-op defaults. Per-run state is created in :meth:`Plugin.initialize`
and kept in explicit attributes that :meth:`Plugin.state_dict` saves. The built-in plugins keep
it in declared objects: what they learn (``VQState``, ``SemanticState``: checkpointed) apart from
what the trainer gave them for the run (``VQRun``: the splats, the strategy's state, the views). The trainer (or a fork of
gsplat's ``simple_trainer.py``) calls the hooks of every enabled plugin in this order each step::

    p.step_pre_forward(step, splats, optimizers)        # schedules run here (k-means, refreshes)
    over = p.splats_to_render(splats)                     # pure: tensors to render instead
    extra = p.extra_channels(splats)                      # [N, F] channels rendered after RGB
    loss += p.loss(step, splats, batch, render)           # None or a scalar
    ... backward, optimizers, strategy.step_post_backward ...
    p.step_post_backward(step, splats, optimizers, info)  # N may have changed: stay consistent

and at the end ``p.export(model_dir, splats)``, in ascending :attr:`Plugin.export_order`. ``splats`` is the ``ParameterDict`` with gsplat's
names and raw (pre-activation) values; ``optimizers`` is gsplat's ``{name: Adam}``.
"""

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, List, Optional, Tuple

from torch import Tensor


@dataclass
class TrainContext:
    """What a plugin may need to know about the run it joins (passed to :meth:`Plugin.initialize`)."""

    total_steps: Optional[int] = None  # steps of the whole run (None: open-ended)
    refine_stop: int = 0  # step at which the strategy stops densifying (0: never densifies)
    strategy_state: Optional[Dict[str, Any]] = None  # the strategy's state (kept consistent when pruning)
    scene: Any = None  # gs_vq.data.Scene, when the trainer has one
    device: str = "cpu"
    resolution: int = 1  # image downscale factor of the run
    backend: str = "auto"  # the run's rasterizer (auto | gsplat | cpp | torch), for a plugin's own renders


@dataclass
class Plugin:
    """Base class of training plugins (see the module doc for the call order).

    Subclasses are dataclasses; their fields are the configuration, read from the YAML section
    named :attr:`name` and written back to ``cfg.yaml``. Register a subclass with
    :func:`gs_vq.plugins.register_plugin` so that a config section enables it.
    """

    name: ClassVar[str] = ""
    order: ClassVar[int] = 0  # hooks run in ascending order (then config order)
    outputs: ClassVar[Tuple[str, ...]] = ()  # every file :meth:`export` may write into the model folder
    export_order: ClassVar[int] = 0  # exports run in ascending order: a plugin that rewrites another's
    # files (the semantic labels of compressed.ply) exports after it
    derived: ClassVar[Tuple[str, ...]] = ()  # per-Gaussian values export writes into the files that
    # describe the finished model; dropped when a run starts from such a model (they would go stale)

    def output_files(self) -> List[str]:
        """The files of :attr:`outputs` that this configuration writes. A new run removes the
        others from the model folder, and every plugin's files when it does not use the plugin."""
        return list(self.outputs)

    def resolve_schedule(self, total_steps: int, refine_stop: int) -> None:
        """Turn settings given relative to the run (``total_steps`` long, densifying until
        ``refine_stop``) into steps, in place and idempotently. Called when the config loads (so
        ``cfg.yaml`` records the steps) and may be called again from :meth:`initialize`."""

    def initialize(self, splats, optimizers: Dict[str, Any], ctx: TrainContext) -> None:
        """Create the run's state; may add parameters (and their optimizers) to ``splats``."""

    def step_pre_forward(self, step: int, splats, optimizers: Dict[str, Any]) -> None:
        """Before rendering step ``step``: run schedules (fits, refreshes, codebook updates)."""

    def splats_to_render(self, splats) -> Dict[str, Tensor]:
        """Tensors to render instead of ``splats``' own (same names, raw values). Pure: it may be
        called any number of times (training, evaluation, export) without changing state."""
        return {}

    def extra_channels(self, splats) -> Optional[Tensor]:
        """``[N, F]`` per-Gaussian channels to rasterize after RGB, or None. Unlike the other hooks,
        ``splats`` here are the tensors to render (every plugin's :meth:`splats_to_render`
        applied), so a channel another plugin quantizes is rendered quantized."""
        return None

    def loss(self, step: int, splats, batch: Dict[str, Any], render) -> Optional[Tensor]:
        """A scalar added to the loss, or None. ``batch`` has ``camera``, ``image [C,H,W,3]``,
        ``viewmats``, ``Ks``; ``render`` is a :class:`gs_vq.splats.RenderOutput` (``rgb``,
        ``alpha``, ``extra`` (this run's extra channels, all plugins'), ``info``)."""
        return None

    def step_post_backward(self, step: int, splats, optimizers: Dict[str, Any], info: Dict[str, Any]) -> None:
        """After the optimizers and the strategy stepped (the number of Gaussians may have changed)."""

    def export(self, model_dir: str, splats) -> Dict[str, Any]:
        """Write the plugin's files into ``model_dir``; return facts for ``train_stats.json``."""
        return {}

    def state_dict(self) -> Dict[str, Any]:
        """Run state for checkpoints: tensors, numbers, strings, lists and dicts only."""
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (called after :meth:`initialize`)."""

    def config_dict(self) -> Dict[str, Any]:
        """The configuration fields, as written to ``cfg.yaml``."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.init}

    def fresh(self) -> "Plugin":
        """A new instance with the same configuration and no run state."""
        return dataclasses.replace(self)


def _plain(value: Any) -> Any:
    """Dataclasses, tuples and dicts as plain YAML-safe containers."""
    if dataclasses.is_dataclass(value):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
