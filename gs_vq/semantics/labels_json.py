"""``labels.json``: a scene's object ids -> label texts, plus extra queries with the ids they mean.

``{"0": "background", "1": "red apple", ..., "queries": [{"text": "fruit", "ids": [1, 2]}]}``:
integer keys name the ids of the ``masks/`` images; ``"queries"`` (optional) lists natural-language
queries and the ids of the objects each one means. The label texts make the label feature maps
(:mod:`gs_vq.semantics.features`); labels and queries are what ``--eval-queries`` scores.
"""

from typing import Dict, List, Sequence, Tuple

from ..errors import GsVqError
from ..files import read_json


def read_labels(path: str) -> Dict:
    """The dict of the labels.json file ``path`` (one-line GsVqError unless it is a JSON object)."""
    labels = read_json(path)
    if not isinstance(labels, dict):
        raise GsVqError(f"{path} must map ids to label text")
    return labels


def label_table(labels: Dict) -> Tuple[List[int], List[str]]:
    """Object ids and label texts from a ``labels.json`` dict (``"queries"`` and non-integer keys skipped)."""
    ids = sorted(int(k) for k in labels if str(k).lstrip("-").isdigit())
    if not ids:
        raise GsVqError("labels.json maps no integer ids to label text")
    texts = [str(labels[str(i)]) for i in ids]
    return ids, texts


def label_queries(labels: Dict, skip_ids: Sequence[int] = (0,)) -> List[Tuple[str, List[int]]]:
    """``[(text, ids)]``: one query per label of ``labels.json`` (the background id 0 skipped)."""
    ids, texts = label_table(labels)
    return [(t, [i]) for i, t in zip(ids, texts) if i not in skip_ids]


def extra_queries(labels: Dict) -> List[Tuple[str, List[int]]]:
    """``[(text, ids)]`` from the ``"queries"`` list of ``labels.json``."""
    known = set(label_table(labels)[0])
    out = []
    for q in labels.get("queries", []) or []:
        if not isinstance(q, dict) or "text" not in q or not isinstance(q.get("ids"), list):
            raise GsVqError(f"labels.json: bad query entry {q!r} (expected text and ids)")
        ids = [int(i) for i in q["ids"]]
        missing = sorted(set(ids) - known)
        if missing:  # an id no label has would silently score IoU 0
            raise GsVqError(f"labels.json: query {q['text']!r} names ids {missing} that no label has")
        out.append((str(q["text"]), ids))
    return out
