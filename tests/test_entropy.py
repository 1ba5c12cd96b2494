"""Entropy coding of integer streams: exact round trips on adversarial streams, sizes near the
entropy, and best-of never worse than fixed-width packing."""

import numpy as np
import pytest

from gs_vq.io import entropy as E
from gs_vq.io import octree as O
from gs_vq.io import coding as X
from gs_vq.io import streams as S

RNG = np.random.default_rng(7)
STREAMS = {
    "all_equal": (4096, np.full(5000, 4095)),
    "uniform": (4096, RNG.integers(0, 4096, 20000)),
    "k1": (1, np.zeros(300, np.int64)),
    "n0": (300, np.zeros(0, np.int64)),
    "n1": (300, np.array([299])),
    "k2_skewed": (2, (RNG.random(10000) < 0.01).astype(np.int64)),
    "largest_k": (1 << 24, RNG.integers(0, 1 << 24, 3000)),
    "sparse_huge": ((1 << 62) + 5, np.array([0, (1 << 62) + 4, 17, 1 << 40] * 50, dtype=np.uint64)),
    "zipf": (65536, np.minimum(RNG.zipf(1.5, 20000), 65535)),
}


@pytest.mark.parametrize("name", list(STREAMS))
def test_range_coder_round_trips(name):
    alphabet, values = STREAMS[name]
    payload = E.encode_symbols(values, alphabet)
    back = E.decode_symbols(payload, alphabet, values.size)
    assert back.dtype == np.uint64 and np.array_equal(back, values.astype(np.uint64))
    codec, best = X.encode_ints(values, alphabet)
    assert np.array_equal(X.decode_ints(codec, best, alphabet, values.size), values.astype(np.uint64))
    bits = S.index_bits(alphabet)
    assert len(best) <= (values.size * bits + 7) // 8  # never above the plain layout


def test_range_coder_is_close_to_the_entropy():
    values = np.minimum(RNG.geometric(0.05, 50000) - 1, 4095)
    payload = E.encode_symbols(values, 4096)
    ideal = E.entropy_bits(values) * values.size / 8
    assert ideal < len(payload) < ideal * 1.03 + 600  # table + coder overhead only
    assert len(payload) < 0.7 * (values.size * 12 / 8)  # far below 12-bit packing
    codec, _ = X.encode_ints(values, 4096)
    assert codec == "range"
    one = E.encode_symbols(np.full(100000, 3), 4096)
    assert len(one) < 64  # a constant stream costs next to nothing


def test_contexts_use_one_table_each():
    ctx = RNG.integers(0, 8, 40000)
    values = ctx * 8 + RNG.integers(0, 8, 40000)  # 3 bits given the context, 6 without
    with_ctx = E.encode_symbols(values, 64, ctx, 8)
    assert np.array_equal(E.decode_symbols(with_ctx, 64, values.size, ctx, 8), values)
    assert len(with_ctx) < 0.55 * len(E.encode_symbols(values, 64))
    with pytest.raises(ValueError):
        E.encode_symbols(values, 64, ctx, 4)  # a context outside [0, 4)


def test_bad_payloads_raise_value_error():
    values = RNG.integers(0, 100, 1000)
    payload = E.encode_symbols(values, 100)
    for bad in (b"", payload[:3], payload[:10], b"\xff" * 40, payload + b"\x00"):
        with pytest.raises(ValueError):
            E.decode_symbols(bad, 100, 1000)
    with pytest.raises(ValueError):
        E.encode_symbols(np.array([100]), 100)


def test_count_weights_are_exact_integers():
    q = np.arange(256, dtype=np.uint8)
    w = E.count_weights(q)
    assert w[0] == 0 and np.all(np.diff(w[1:]) > 0) and np.all(w == np.floor(w))
    counts = np.array([0, 1, 2, 3, 1000, 1 << 20])
    ratio = E.count_weights(E.quantize_counts(counts))[1:] / 1024 / counts[1:]
    assert np.all(np.abs(ratio - 1) < 0.04)
    huge = np.array([0, 100000, 123456789, 987654321])  # scaled down, ratios kept
    w = E.count_weights(E.quantize_counts(huge))
    assert w[0] == 0 and np.all(np.abs(w[2:] / w[1] / (huge[2:] / huge[1]) - 1) < 0.04)


@pytest.mark.parametrize("bits", [1, 5, 14, 21])
def test_octree_round_trips(bits):
    pts = RNG.integers(0, 2**bits, size=(3000, 3))
    pts[:500] = pts[0]  # many Gaussians in one cell
    codes = np.sort(S.morton_encode(pts, bits))
    payload = O.encode_octree(codes, bits)
    assert np.array_equal(O.decode_octree(payload, bits, codes.size), codes)
    assert np.array_equal(O.decode_octree(O.encode_octree(codes[:1], bits), bits, 1), codes[:1])
    assert O.encode_octree(codes[:0], bits) == b""
    with pytest.raises(ValueError):
        O.decode_octree(payload, bits, codes.size + 1)


@pytest.mark.parametrize("width", [1, 2, 4, 8])
def test_word_codecs_round_trip(width):
    dtype = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[width]
    for words in (RNG.integers(0, 2 ** (8 * width) - 1, 777, dtype=dtype, endpoint=True),
                  np.zeros(0, dtype), np.full(50, 3, dtype)):
        codec, payload = X.encode_words(words)
        assert np.array_equal(X.decode_words(codec, payload, width, words.size), words)


@pytest.mark.parametrize("name", list(STREAMS))
def test_neighbour_transforms_round_trip(name):
    from gs_vq.io import neighbors as N

    alphabet, values = STREAMS[name]
    values = values.astype(np.uint64)
    coders = [(N.encode_same, N.decode_same), (N.encode_recent, N.decode_recent)]
    if alphabet <= 1 << 32:
        coders.append((N.encode_delta, N.decode_delta))
    for enc, dec in coders:
        if alphabet > 1:
            assert np.array_equal(dec(enc(values, alphabet), alphabet, values.size), values)
    codec, payload = X.encode_ints(values, alphabet, ordered=True)
    assert np.array_equal(X.decode_ints(codec, payload, alphabet, values.size), values)


def test_runs_of_repeats_cost_little():
    from gs_vq.io import neighbors as N

    runs = np.repeat(RNG.integers(0, 4096, 2000), RNG.integers(1, 12, 2000))  # clones in Morton order
    alternating = np.stack([runs, np.roll(runs, 7)], 1).reshape(-1)  # values recur 2 rows back
    for values in (runs, alternating):
        codec, payload = X.encode_ints(values, 4096, ordered=True)
        assert codec in ("same", "recent", "delta")
        assert len(payload) < 0.6 * len(E.encode_symbols(values, 4096))
    assert X.encode_ints(alternating, 4096, ordered=True)[0] == "recent"
    flags = N.same_flags(runs)
    assert flags[0] == 0 and flags.sum() == np.sum(runs[1:] == runs[:-1])
