"""Every nested config field as a command-line flag: ``--SECTION.FIELD VALUE``.

``--vq.prune_fraction 0.5``, ``--strategy.cap_max 1000000`` or ``--vq.attributes.sh0.codebook_size
2048`` (also ``--vq.sh_drop=0.2``) set one field of the config tree, as a YAML key under that
section would; the value is read as YAML (``0.5``, ``true``, ``[1, 2]``, ``mcmc``). The names are
checked where YAML keys are (:func:`gs_vq.config.make_config`: an unknown one is one ``error:``
line), so the config dataclasses stay the one description of every field. The Inria flags
(``-s``, ``-r``, ``--iterations``, ...) are unchanged.
"""

from typing import Any, Dict, List

import yaml

from ..errors import GsVqError

__all__ = ["dotted_overrides"]


def dotted_overrides(tokens: List[str]) -> Dict[str, Any]:
    """``["--vq.prune_fraction", "0.5", "--strategy.cap_max=9"]`` -> ``{"vq": {"prune_fraction": 0.5},
    "strategy": {"cap_max": 9}}``. Any token that is not a dotted flag or its value is an error."""
    out: Dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        flag = tokens[i]
        name, eq, value = flag[2:].partition("=") if flag.startswith("--") else ("", "", "")
        if "." not in name or not all(part.isidentifier() for part in name.split(".")):
            raise GsVqError(f"unrecognized argument {flag} (nested config fields are --SECTION.FIELD VALUE)")
        if not eq:
            if i + 1 >= len(tokens) or tokens[i + 1].startswith("--"):
                raise GsVqError(f"{flag} needs a value")
            value, i = tokens[i + 1], i + 1
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            raise GsVqError(f"{flag}: {value!r} is not a YAML value") from None
        *sections, key = name.split(".")
        node = out
        for part in sections:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise GsVqError(f"{flag}: {part} is set to a value and to fields at once")
        node[key] = parsed
        i += 1
    return out
