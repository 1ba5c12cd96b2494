"""What every benchmark hands back: a Markdown table on stdout and a JSON file, written then renamed."""

import json
import os
from typing import Any, Iterable, Sequence

from gs_vq.files import atomic_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def markdown_row(cells: Sequence[Any]) -> str:
    """One Markdown table line of (already formatted) ``cells``."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def markdown(head: Sequence[str], rows: Iterable[Sequence[Any]] = ()) -> str:
    """A Markdown table: ``head`` cells, its rule, then one line per row of cells (with no rows:
    the head alone, for benchmarks that print each row as it is measured)."""
    return "\n".join([markdown_row(head), "|" + "---|" * len(head)] + [markdown_row(r) for r in rows])


def write_json(path: str, obj: Any, indent: int = 2) -> None:
    """Write ``obj`` to ``path`` (folders made as needed) so that no reader sees half a file."""
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        json.dump(obj, fh, indent=indent)


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` (write, then rename)."""
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write(text)
