"""The ``ints_<a>`` sections: per-Gaussian non-negative integers (semantic labels, ids)."""

from typing import List, Tuple

import numpy as np
import torch

from ...errors import GsVqError
from ..check import Check
from ..coding import INT_CODECS, decode_ints, encode_ints
from ..scene import CompressedScene
from .base import Entry, Job, Params, Section, SectionCodec


def encode_int_attribute(values: np.ndarray) -> Tuple[Params, bytes]:
    """[N, ...] non-negative integers (labels, ids) -> params {alphabet, stream} and payload."""
    flat = np.asarray(values).reshape(-1)
    if flat.size and (flat.min() < 0 or flat.max() >= 2**62):
        raise ValueError("integer attributes must be in [0, 2**62)")
    alphabet = int(flat.max()) + 1 if flat.size else 1
    codec, payload = encode_ints(flat, alphabet, ordered=values.ndim == 1 or values.shape[1] == 1)
    return {"codec": "ints", "alphabet": alphabet, "stream": codec}, payload


def decode_int_attribute(params: Params, payload: bytes, count: int) -> np.ndarray:
    """-> [count] int64 values (the caller reshapes)."""
    return decode_ints(params["stream"], payload, int(params["alphabet"]), count).astype(np.int64)


class Ints(SectionCodec):
    kind = "ints"
    prefix = "ints"

    def encode(self, job: Job) -> List[Section]:
        out = []
        for name, value in job.scene.ints.items():
            try:
                params, payload = encode_int_attribute(job.rows(value, np.int64))
            except ValueError as e:
                raise GsVqError(f"compressed ply: integer attribute {name}: {e}") from None
            out.append(self.attribute_section(name, value.shape[1:], params, payload))
        return out

    def decode(self, entry: Entry, payload: bytes, n: int, scene: CompressedScene) -> None:
        shape = tuple(entry.get("shape", ()))
        values = decode_int_attribute(entry["params"], payload, n * int(np.prod(shape)))
        scene.ints[entry["attr"]] = torch.from_numpy(values.reshape(n, *shape))

    def check(self, c: Check, entry: Entry, p: Params, where: str, size: int) -> None:
        c.choice(p, "codec", ("ints",), f"{where}.params")
        c.int(p, "alphabet", 1, 1 << 62, f"{where}.params")
        c.choice(p, "stream", INT_CODECS, f"{where}.params")
