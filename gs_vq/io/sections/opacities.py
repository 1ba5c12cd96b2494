"""The ``opacities`` section: bins of sigmoid(opacity) (1..16 bits), or float32 logits (32)."""

from typing import List, Tuple

import numpy as np
import torch

from .. import streams as S
from ..check import Check
from ..coding import INT_CODECS, WORD_CODECS, decode_ints, decode_words, encode_ints, encode_words
from ..scene import CompressedScene
from .base import Entry, Job, Params, Section, SectionCodec


def encode_opacities(logits: np.ndarray, bits: int) -> Tuple[Params, bytes]:
    """[N] logits -> (params, payload): ``bits`` bins of sigmoid (1..16), or float32 as is (32)."""
    if bits == 32:
        codec, payload = encode_words(np.ascontiguousarray(logits, np.float32).view(np.uint32))
        return {"codec": "float32", "bits": 32, "stream": codec}, payload
    codec, payload = encode_ints(S.quantize_opacity(logits, bits), 1 << bits, ordered=True)
    return {"codec": "bins", "bits": bits, "stream": codec}, payload


def decode_opacities(params: Params, payload: bytes, n: int) -> np.ndarray:
    """-> [n] float32 logits (bin centres for bins)."""
    bits = int(params["bits"])
    if params["codec"] == "float32":
        return decode_words(params["stream"], payload, 4, n).view(np.float32)
    return S.dequantize_opacity(decode_ints(params["stream"], payload, 1 << bits, n), bits)


class Opacities(SectionCodec):
    kind = "opacities"

    def encode(self, job: Job) -> List[Section]:
        return [Section("opacities", *encode_opacities(job.opacities[job.order], job.opacity_bits))]

    def decode(self, entry: Entry, payload: bytes, n: int, scene: CompressedScene) -> None:
        p = entry["params"]
        scene.opacities = torch.from_numpy(np.ascontiguousarray(decode_opacities(p, payload, n)))
        scene.opacity_bits = int(p["bits"])

    def check(self, c: Check, entry: Entry, p: Params, where: str, size: int) -> None:
        codec = c.choice(p, "codec", ("bins", "float32"), f"{where}.params")
        if codec == "float32":
            if p.get("bits") != 32:
                c.fail(f"{where}.params.bits", "must be 32 for float32 opacities")
            c.choice(p, "stream", WORD_CODECS, f"{where}.params")
        else:
            c.int(p, "bits", 1, 16, f"{where}.params")
            c.choice(p, "stream", INT_CODECS, f"{where}.params")
