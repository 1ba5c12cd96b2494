"""compressed.ply: exact round trips, bit widths, and one-line errors on damaged files."""

import math

import numpy as np
import pytest
import torch
from plyfile import PlyData

from gs_vq.errors import GsVqError
from gs_vq.io import streams as S
from gs_vq.io.compressed import (CodedAttribute, CompressedScene, describe_compressed,
                                 is_compressed_ply, read_compressed, write_compressed)


def make_scene(n=3000, seed=0, features=False):
    g = torch.Generator().manual_seed(seed)
    cb = lambda k, d: torch.randn(k, d, generator=g).half().float()  # noqa: E731
    codes = lambda k, m=1: torch.randint(0, k, (n, m), generator=g)  # noqa: E731
    attrs = [
        CodedAttribute("sh0", (1, 3), [cb(300, 3)], codes(300), "sum", "float16"),
        CodedAttribute("shN", (15, 3), [cb(64, 45), cb(64, 45)], codes(64, 2), "sum", "float16"),
        CodedAttribute("scales", (3,), [torch.randn(257, 3, generator=g)], codes(257), "sum", "float32"),
        CodedAttribute("quats", (4,), [cb(16, 2), cb(32, 2)],
                       torch.stack([codes(16)[:, 0], codes(32)[:, 0]], 1), "concat", "float16"),
    ]
    if features:
        attrs.append(CodedAttribute("features", (8,), [cb(40, 8)], codes(40), "sum", "float16"))
    means = torch.randn(n, 3, generator=g) * torch.tensor([1.0, 2.0, 0.5])
    return CompressedScene(means=means, opacities=torch.randn(n, generator=g) * 4, attributes=attrs,
                           meta={"sh_degree": 3})


def test_round_trip_exact_indices_and_codebooks(tmp_path):
    scene = make_scene(features=True)
    path = str(tmp_path / "compressed.ply")
    report = write_compressed(path, scene, pos_bits=16, opacity_bits=8, compact_codebooks=False)
    back = read_compressed(path)
    order = torch.from_numpy(report["order"])
    assert len(back.attributes) == len(scene.attributes)
    for a, b in zip(scene.attributes, back.attributes):
        assert (a.name, a.shape, a.combine) == (b.name, b.shape, b.combine)
        assert torch.equal(b.codes, a.codes[order])
        for ca, cb in zip(a.codebooks, b.codebooks):
            assert torch.equal(ca, cb)
        assert torch.equal(b.decode(), a.decode()[order])
    prec = torch.tensor(report["grid"].precision)
    err = (back.means - scene.means[order]).abs()
    assert (err <= prec * 1.001 + 1e-7).all()
    alpha_err = (torch.sigmoid(back.opacities) - torch.sigmoid(scene.opacities[order])).abs()
    assert alpha_err.max() <= 0.5 / 256 + 1e-6
    assert back.meta == {"sh_degree": 3}


def test_compacted_codebooks_decode_identically(tmp_path):
    scene = make_scene(n=500)
    path = str(tmp_path / "c.ply")
    report = write_compressed(path, scene)
    back = read_compressed(path)
    order = torch.from_numpy(report["order"])
    for a, b in zip(scene.attributes, back.attributes):
        assert torch.equal(b.decode(), a.decode()[order])
        for cb in b.codebooks:  # every stored entry is used
            assert cb.shape[0] <= 500


def test_lossless_positions_and_opacities(tmp_path):
    scene = make_scene(n=700)
    path = str(tmp_path / "c.ply")
    report = write_compressed(path, scene, pos_bits=32, opacity_bits=32)
    back = read_compressed(path)
    order = torch.from_numpy(report["order"])
    assert torch.equal(back.means, scene.means[order])
    assert torch.equal(back.opacities, scene.opacities[order])
    splats = back.to_splats()
    assert splats["sh0"].shape == (700, 1, 3) and splats["shN"].shape == (700, 15, 3)


def test_stored_precision_is_idempotent(tmp_path):
    """Writing a scene that already sits on the stored grid gives back identical values."""
    scene = make_scene(n=400)
    p1, p2 = str(tmp_path / "a.ply"), str(tmp_path / "b.ply")
    write_compressed(p1, scene)
    once = read_compressed(p1)
    write_compressed(p2, once)
    twice = read_compressed(p2)
    assert torch.equal(once.means, twice.means)
    assert torch.equal(once.opacities, twice.opacities)
    for a, b in zip(once.attributes, twice.attributes):
        assert torch.equal(a.decode(), b.decode())


def test_valid_ply_one_element_per_codebook(tmp_path):
    scene = make_scene(n=300)
    path = str(tmp_path / "c.ply")
    write_compressed(path, scene, compact_codebooks=False)
    ply = PlyData.read(path)
    names = [e.name for e in ply.elements]
    codebooks = [n for n in names if n.startswith("codebook_")]
    assert codebooks == ["codebook_sh0_0", "codebook_shN_0", "codebook_shN_1",
                         "codebook_scales_0", "codebook_quats_0", "codebook_quats_1"]
    assert ply["codebook_scales_0"].count == 257
    assert is_compressed_ply(path)
    info = describe_compressed(path)
    assert info["count"] == 300 and info["bytes"] > 0
    parts = info["bits_per_gaussian"]
    assert {"means", "opacities", "sh0.index", "shN.index", "shN.codebook", "header"} <= set(parts)
    assert abs(sum(v for k, v in parts.items() if k != "total") - parts["total"]) < 1e-2


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 255, 256, 257, 4096, 4097])
def test_bits_per_index_is_ceil_log2_k(tmp_path, k):
    assert S.index_bits(k) == (math.ceil(math.log2(k)) if k > 1 else 0)
    n = 200
    codes = torch.arange(n).remainder(k)[:, None]
    attr = CodedAttribute("sh0", (3,), [torch.randn(k, 3)], codes)
    path = str(tmp_path / "c.ply")
    write_compressed(path, CompressedScene(torch.randn(n, 3), torch.zeros(n), [attr]),
                     compact_codebooks=False)
    ply = PlyData.read(path)
    import json

    meta = json.loads(ply.obj_info[0])
    assert meta["attributes"][0]["codebooks"][0]["index_bits"] == S.index_bits(k)
    assert meta["streams"]["idx_sh0_0"]["bits"] == S.index_bits(k)
    # the plain layout spends exactly ceil(log2 K) bits per index; the file never more
    packed = S.pack_bits(codes[:, 0].numpy(), S.index_bits(k))
    assert len(packed) == (n * S.index_bits(k) + 7) // 8
    assert meta["streams"]["idx_sh0_0"]["bytes"] <= len(packed)
    assert np.array_equal(S.unpack_bits(packed, S.index_bits(k), n), codes[:, 0].numpy())


def test_morton_and_bit_packing_round_trip():
    rng = np.random.default_rng(0)
    for bits in (1, 7, 16, 21):
        q = rng.integers(0, 2**bits, size=(1000, 3), dtype=np.int64)
        code = S.morton_encode(q, bits)
        assert np.array_equal(S.morton_decode(code, bits), q.astype(np.uint64))
        srt = np.sort(code)
        codec, b, payload = S.encode_deltas(srt)
        assert np.array_equal(S.decode_deltas(codec, payload, b, len(srt)), srt)
    for codec in S.CODECS:
        v = rng.integers(0, 4096, size=5000)
        assert np.array_equal(S.decode_uints(codec, S.encode_uints(v, 12, [codec])[1], 12, 5000), v)


@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("c") / "compressed.ply")
    write_compressed(path, make_scene(n=800))
    return path


def _expect_one_line_error(path):
    with pytest.raises(GsVqError) as e:
        read_compressed(path)
    assert "\n" not in str(e.value) and str(e.value)
    return str(e.value)


@pytest.mark.parametrize("keep", [0.0, 0.02, 0.3, 0.6, 0.9, 0.999])
def test_truncated_file_gives_one_line_error(tmp_path, good_file, keep):
    data = open(good_file, "rb").read()
    path = tmp_path / "t.ply"
    path.write_bytes(data[: int(len(data) * keep)])
    _expect_one_line_error(str(path))


@pytest.mark.parametrize("where", [0.35, 0.5, 0.75, 0.97])
def test_corrupted_bytes_give_one_line_error(tmp_path, good_file, where):
    data = bytearray(open(good_file, "rb").read())
    i = int(len(data) * where)
    data[i : i + 4] = bytes(255 - b for b in data[i : i + 4])
    path = tmp_path / "x.ply"
    path.write_bytes(bytes(data))
    _expect_one_line_error(str(path))


def test_wrong_files_give_one_line_error(tmp_path):
    assert "no such file" in _expect_one_line_error(str(tmp_path / "missing.ply"))
    junk = tmp_path / "junk.ply"
    junk.write_bytes(np.random.default_rng(0).bytes(5000))
    _expect_one_line_error(str(junk))
    from gs_vq.io.ply import save_ply

    n = 10
    std = str(tmp_path / "point_cloud.ply")
    save_ply({"means": torch.zeros(n, 3), "scales": torch.zeros(n, 3), "quats": torch.ones(n, 4),
              "opacities": torch.zeros(n), "sh0": torch.zeros(n, 1, 3), "shN": torch.zeros(n, 3, 3)}, std)
    assert "not a gs-vq compressed ply" in _expect_one_line_error(std)
    assert not is_compressed_ply(std)
