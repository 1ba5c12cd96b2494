"""The ``raw_<a>`` sections: an unquantized per-Gaussian attribute as float16 or float32 words."""

from typing import List, Tuple

import numpy as np
import torch

from ..check import Check
from ..coding import WORD_CODECS, decode_words, encode_words
from ..scene import PRECISIONS, CompressedScene
from .base import Entry, Job, Params, Section, SectionCodec


def encode_raw(values: np.ndarray, precision: str) -> Tuple[Params, bytes]:
    """[N, ...] floats stored as float16 or float32 words."""
    dtype, view = (np.float16, np.uint16) if precision == "float16" else (np.float32, np.uint32)
    codec, payload = encode_words(np.ascontiguousarray(values.astype(dtype)).view(view).reshape(-1))
    return {"codec": precision, "stream": codec}, payload


def decode_raw(params: Params, payload: bytes, count: int) -> np.ndarray:
    """-> [count] float32 values (the caller reshapes)."""
    half = params["codec"] == "float16"
    words = decode_words(params["stream"], payload, 2 if half else 4, count)
    return words.view(np.float16 if half else np.float32).astype(np.float32)


class Raw(SectionCodec):
    kind = "raw"
    prefix = "raw"

    def encode(self, job: Job) -> List[Section]:
        precision = job.scene.raw_precision
        return [self.attribute_section(name, value.shape[1:],
                                       *encode_raw(job.rows(value, np.float32), precision), precision=precision)
                for name, value in job.scene.raw.items()]

    def decode(self, entry: Entry, payload: bytes, n: int, scene: CompressedScene) -> None:
        shape = tuple(entry.get("shape", ()))
        values = decode_raw(entry["params"], payload, n * int(np.prod(shape)))
        scene.raw[entry["attr"]] = torch.from_numpy(values.reshape(n, *shape))
        scene.raw_precision = entry["params"]["codec"]

    def check(self, c: Check, entry: Entry, p: Params, where: str, size: int) -> None:
        c.choice(p, "codec", PRECISIONS, f"{where}.params")
        c.choice(p, "stream", WORD_CODECS, f"{where}.params")
