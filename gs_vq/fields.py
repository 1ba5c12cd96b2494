"""Typed dataclass trees: what a config field declares about itself, and the one walk that checks it.

A config section is a dataclass (:class:`gs_vq.config.TrainConfig`, a plugin such as
:class:`gs_vq.vq.VQConfig`, gsplat's strategies). Its fields carry their facts as metadata:

- ``steps(rule)``: a step count (``gs_vq.config.scale_steps`` multiplies it), within ``rule``;
- ``ranged(rule)``: a number within ``rule`` (an :func:`Int` or :func:`Num` range);
- ``FRACTIONS``: ``{step field: fraction of a span of the run}``, checked by the field's owner;
- ``SECTIONS``: ``{section name: dataclass}`` (the enabled plugins), each checked under its name;
- ``entries(rules)``: a mapping of mappings (``vq.attributes``) whose options follow ``rules``
  by option name (a quantizer's constructor options: :data:`gs_vq.quant.factory.OPTION_RULES`).

:func:`build_dataclass` builds a section from a YAML mapping, checking every value's type;
:func:`check_ranges` walks a built tree once and checks every number's range and finiteness. Both
raise one :class:`~gs_vq.errors.GsVqError` naming the dotted field, e.g.
``config value vq.attributes.sh0.codebook_size must be an integer >= 2, got 0``. Fields of
dataclasses gs-vq does not own (gsplat's strategies) get their rules from a table by name, given
by the owning field (``ranged_by(rules)``).
"""

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, Dict, Literal, Mapping, Optional, Tuple, Union

from .errors import GsVqError


@dataclass(frozen=True)
class Range:
    """``integer`` (else any real) in ``[low, high]``; ``open_low`` / ``open_high`` exclude the ends;
    ``also`` lists extra allowed values outside the range (e.g. 32 bits = lossless); ``items``: a
    list of such numbers is accepted too (one per axis)."""

    integer: bool
    low: Optional[float] = None
    high: Optional[float] = None
    open_low: bool = False
    open_high: bool = False
    also: Tuple[float, ...] = ()
    items: bool = False

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
        if self.items and isinstance(v, (list, tuple)):
            return len(v) > 0 and all(dataclasses.replace(self, items=False).accepts(x) for x in v)
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


def Int(low=None, high=None, also=(), items=False) -> Range:  # noqa: N802 (reads like a type)
    return Range(True, low, high, also=tuple(also), items=items)


def Num(low=None, high=None, open_low=False, open_high=False) -> Range:  # noqa: N802
    return Range(False, low, high, open_low, open_high)


MAX_LR = 1.0  # an Adam step of 1 per iteration on logits / log-scales / SH already diverges
PROB = Num(0.0, 1.0)
POSITIVE = Num(0.0, open_low=True)
NONNEG = Num(0.0)
LR = Num(0.0, MAX_LR)

FRACTIONS = {"fractions": True}  # {step field: fraction of a span of the run, in (0, 1]}


def steps(rule: Optional[Range] = None) -> Dict[str, Any]:
    """Metadata of a step count (scaled by ``scale_steps``), within ``rule`` when given."""
    return {"steps": True, **({"range": rule} if rule is not None else {})}


def ranged(rule: Range) -> Dict[str, Any]:
    """Metadata of a number within ``rule``."""
    return {"range": rule}


def ranged_by(rules: Mapping[str, Range]) -> Dict[str, Any]:
    """Metadata of a field holding a foreign dataclass whose fields follow ``rules`` by name."""
    return {"rules": rules}


def entries(rules: Mapping[str, Range]) -> Dict[str, Any]:
    """Metadata of a ``{name: {option: value}}`` field whose options follow ``rules`` by name."""
    return {"entries": rules}


STEPS = steps()
SECTIONS = {"sections": True}  # {section name: dataclass}: each checked under its own name


# ---- building from mappings -----------------------------------------------------------------------
def _typed(value: Any, tp: Any, where: str) -> Any:
    """``value`` checked against type ``tp`` (ints widen to floats; numeric strings are floats)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is typing.Any:
        return value
    if origin is Union:
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _typed(value, option, where)
            except GsVqError:
                continue
        raise GsVqError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise GsVqError(f"{where}: expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    ok = {bool: lambda v: isinstance(v, bool), int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          str: lambda v: isinstance(v, str), dict: lambda v: isinstance(v, dict),
          list: lambda v: isinstance(v, (list, tuple)), tuple: lambda v: isinstance(v, (list, tuple))}
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:  # YAML 1.1 reads 1e-3 (no dot) as a string
            return float(value) if isinstance(value, str) else _fail(where, tp, value)
        except ValueError:
            _fail(where, tp, value)
    check = ok.get(origin or tp)
    if check is not None and not check(value):
        _fail(where, tp, value)
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _fail(where: str, tp: Any, value: Any):
    raise GsVqError(f"{where}: expected {_type_name(tp)}, got {value!r}")


def build_dataclass(cls, data: Dict[str, Any], where: str):
    """Dataclass ``cls`` from a mapping: unknown keys and wrongly typed values are one-line errors."""
    if not isinstance(data, dict):
        raise GsVqError(f"{where} must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise GsVqError(f"unknown config key(s) in {where}: {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: _typed(v, hints.get(k, Any), f"{where}.{k}") for k, v in data.items()})


# ---- the one range walk -----------------------------------------------------------------------------
def check_value(where: str, value: Any, rule: Optional[Range]) -> None:
    """Finite, and within ``rule`` when there is one (None values are unset options)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise GsVqError(f"config value {where} must be finite, got {value}")
    if rule is not None and value is not None and not rule.accepts(value):
        raise GsVqError(f"config value {where} must be {rule.describe()}, got {value!r}")


def check_ranges(node: Any, where: str, rules: Optional[Mapping[str, Range]] = None) -> None:
    """Check every number in ``node`` (a dataclass, or a mapping of them) against its field's
    ``range`` metadata, or ``rules`` by field name for a dataclass gs-vq does not own; recurse
    into nested dataclasses, plugin mappings and ``entries`` fields."""
    if isinstance(node, dict):
        for key, value in node.items():
            check_ranges(value, f"{where}{key}.")
        return
    if not dataclasses.is_dataclass(node) or isinstance(node, type):
        return
    for f in dataclasses.fields(node):
        if not f.init or f.metadata.get("fractions"):  # fractions: checked by their owner
            continue
        value, path = getattr(node, f.name), f"{where}{f.name}"
        check_value(path, value, f.metadata.get("range") or (rules or {}).get(f.name))
        if "entries" in f.metadata:
            for name, entry in (value or {}).items():
                for option, v in (entry or {}).items():
                    check_value(f"{path}.{name}.{option}", v, f.metadata["entries"].get(option))
        elif f.metadata.get("sections"):  # plugins: named by their own YAML sections (vq.pos_bits)
            check_ranges(value, where)
        elif dataclasses.is_dataclass(value) or isinstance(value, dict):
            check_ranges(value, path + ".", f.metadata.get("rules"))
