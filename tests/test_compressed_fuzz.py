"""Fuzzing compressed.ply: every damaged file loads exactly or fails with one GsVqError line.

Thousands of random bit flips, byte overwrites and truncations of a small file (header and
data). A second pass rewrites the JSON header with random edits and a *valid* checksum (what a
buggy writer or a hand edit could produce): those may load other splats, but must never raise
anything but a one-line GsVqError.
"""

import json
import zlib

import numpy as np
import pytest
import torch

from gs_vq.errors import GsVqError
from gs_vq.io import container
from gs_vq.io.compressed import CodedAttribute, CompressedScene, read_compressed, write_compressed


def small_scene(n=48, seed=3):
    g = torch.Generator().manual_seed(seed)
    cb = lambda k, d: torch.randn(k, d, generator=g).half().float()  # noqa: E731
    codes = lambda k: torch.randint(0, k, (n, 1), generator=g)  # noqa: E731
    attrs = [CodedAttribute("sh0", (1, 3), [cb(12, 3)], codes(12), "sum", "float16"),
             CodedAttribute("shN", (3, 3), [cb(8, 9), cb(8, 9)], torch.cat([codes(8), codes(8)], 1)),
             CodedAttribute("scales", (3,), [cb(6, 1)] * 3, torch.cat([codes(6)] * 3, 1), "concat", "float16")]
    return CompressedScene(torch.randn(n, 3, generator=g), torch.randn(n, generator=g) * 3, attrs,
                           raw={"quats": torch.randn(n, 4, generator=g)},
                           ints={"labels": torch.randint(0, 5, (n,), generator=g)}, meta={"sh_degree": 1})


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("fuzz") / "compressed.ply")
    write_compressed(path, small_scene(), pos_bits=12)
    return open(path, "rb").read(), read_compressed(path).to_splats()


def _load_or_error(path, want=None):
    """-> "ok" (loaded; equal to ``want`` if given) or "error" (one-line GsVqError)."""
    try:
        got = read_compressed(path).to_splats()
    except GsVqError as e:
        assert str(e) and "\n" not in str(e)
        return "error"
    if want is not None:
        assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    return "ok"


def test_bit_flips_and_truncations_are_caught(tmp_path, original):
    data, want = original
    rng = np.random.default_rng(0)
    head_len = data.index(b"end_header\n") + 11
    path = str(tmp_path / "m.ply")
    outcomes = {"ok": 0, "error": 0}
    for trial in range(2000):
        buf = bytearray(data)
        kind = trial % 4
        if kind == 0:    # one bit anywhere
            i = int(rng.integers(len(buf)))
            buf[i] ^= 1 << int(rng.integers(8))
        elif kind == 1:  # one bit in the header
            i = int(rng.integers(head_len))
            buf[i] ^= 1 << int(rng.integers(8))
        elif kind == 2:  # a few random bytes
            for i in rng.integers(len(buf), size=int(rng.integers(1, 5))):
                buf[int(i)] = int(rng.integers(256))
        else:            # truncated (or one byte appended)
            buf = buf[: int(rng.integers(len(buf)))] if trial % 8 == 3 else buf + b"\x00"
        with open(path, "wb") as fh:
            fh.write(bytes(buf))
        outcomes[_load_or_error(path, want if bytes(buf) != data else None)] += 1
    assert outcomes["error"] >= 1990  # every real change is detected by the checksum


def test_header_edits_with_a_valid_checksum_never_crash(tmp_path, original):
    data, want = original
    meta, sections = container.read_container(data, "x")
    text = json.dumps(meta, separators=(",", ":"))
    rng = np.random.default_rng(1)
    alphabet = list('0123456789-.,:[]{}"eE ') + ["null", "true", "1e400", "-1", "99999999999"]
    path = str(tmp_path / "h.ply")
    outcomes = {"ok": 0, "error": 0}
    for _ in range(600):
        i = int(rng.integers(len(text)))
        edited = text[:i] + alphabet[int(rng.integers(len(alphabet)))] + text[i + int(rng.integers(0, 3)):]
        _write_raw_header(path, edited, sections)
        outcomes[_load_or_error(path)] += 1
    assert outcomes["error"] > 100 and outcomes["ok"] > 10


def _write_raw_header(path, text, sections):
    """A version-2 file whose obj_info JSON line is ``text`` verbatim, with a valid CRC."""
    lines = [b"ply", b"format binary_little_endian 1.0", b"obj_info " + text.encode()]
    for name in sections:
        lines += [f"element {name} 1".encode(), b"property list uint uchar data"]
    head = b"\n".join(lines) + b"\nend_header\n"
    body = b"".join(len(p).to_bytes(4, "little") + p for p in sections.values())
    crc = zlib.crc32(body, zlib.crc32(head))
    at = head.index(b"\nelement ") + 1
    with open(path, "wb") as fh:
        fh.write(head[:at] + container.CRC_TAG + b"%08x\n" % crc + head[at:] + body)
