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
        for m, cb in enumerate(b.codebooks):  # exactly the entries some Gaussian uses are stored
            used = torch.unique(a.codes[:, m])
            assert cb.shape[0] == used.numel() == torch.unique(b.codes[:, m]).numel()
            assert cb.shape[0] < a.codebooks[m].shape[0] or used.numel() == a.codebooks[m].shape[0]
    assert sum(cb.shape[0] for b in back.attributes for cb in b.codebooks) < \
        sum(cb.shape[0] for a in scene.attributes for cb in a.codebooks)  # the scene has unused entries


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


def test_valid_ply_one_element_per_section(tmp_path):
    scene = make_scene(n=300)
    scene.raw = {"extra": torch.randn(300, 2)}
    scene.ints = {"labels": torch.randint(0, 5, (300,))}
    path = str(tmp_path / "c.ply")
    write_compressed(path, scene, compact_codebooks=False)
    ply = PlyData.read(path)  # any PLY reader opens it
    assert [e.name for e in ply.elements] == ["means", "opacities", "coded_sh0", "coded_shN",
                                               "coded_scales", "coded_quats", "raw_extra", "ints_labels"]
    assert all(e.count == 1 for e in ply.elements)
    assert is_compressed_ply(path)
    info = describe_compressed(path)
    assert info["count"] == 300 and info["bytes"] > 0 and info["version"] == 2
    parts = info["bits_per_gaussian"]
    assert {"means", "opacities", "sh0.index", "shN.index", "shN.codebook", "raw_extra", "ints_labels",
            "header"} <= set(parts)
    assert abs(sum(v for k, v in parts.items() if k != "total") - parts["total"]) < 1e-2


def _coded_entry(path, attr):
    from gs_vq.io import container

    meta, _ = container.read_container(open(path, "rb").read(), path)
    return next(e for e in meta["sections"] if e.get("attr") == attr)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 255, 256, 257, 4096, 4097])
def test_index_stream_never_exceeds_ceil_log2_k_bits(tmp_path, k):
    assert S.index_bits(k) == (math.ceil(math.log2(k)) if k > 1 else 0)
    n = 200
    codes = torch.arange(n).remainder(k)[:, None]
    attr = CodedAttribute("sh0", (3,), [torch.randn(k, 3)], codes)
    path = str(tmp_path / "c.ply")
    write_compressed(path, CompressedScene(torch.randn(n, 3), torch.zeros(n), [attr]),
                     compact_codebooks=False)
    book = _coded_entry(path, "sh0")["params"]["codebooks"][0]
    assert book["size"] == k
    # the plain layout spends exactly ceil(log2 K) bits per index; the file never more
    packed = S.pack_bits(codes[:, 0].numpy(), S.index_bits(k))
    assert len(packed) == (n * S.index_bits(k) + 7) // 8
    assert book["index_bytes"] <= len(packed)
    assert np.array_equal(S.unpack_bits(packed, S.index_bits(k), n), codes[:, 0].numpy())


def test_skewed_indices_cost_less_than_their_fixed_width(tmp_path):
    n = 5000
    g = torch.Generator().manual_seed(0)
    codes = torch.from_numpy(np.minimum(np.random.default_rng(0).geometric(0.05, (n, 1)) - 1, 1023))
    attr = CodedAttribute("sh0", (3,), [torch.randn(1024, 3, generator=g)], codes)
    path = str(tmp_path / "c.ply")
    write_compressed(path, CompressedScene(torch.randn(n, 3, generator=g), torch.zeros(n), [attr]))
    book = _coded_entry(path, "sh0")["params"]["codebooks"][0]
    used = int(torch.unique(codes).numel())
    from gs_vq.io.entropy import entropy_bits

    bits = book["index_bytes"] * 8 / n
    assert bits < S.index_bits(used) - 1.0 and bits < entropy_bits(codes.numpy()) + 0.4


def test_integer_and_raw_attributes_round_trip(tmp_path):
    n = 400
    g = torch.Generator().manual_seed(2)
    scene = CompressedScene(torch.randn(n, 3, generator=g), torch.randn(n, generator=g), [],
                            raw={"confidence": torch.rand(n, generator=g)}, raw_precision="float32",
                            ints={"labels": torch.randint(0, 7, (n,), generator=g),
                                  "ids": torch.randint(0, 1 << 40, (n, 2), generator=g)})
    path = str(tmp_path / "c.ply")
    order = torch.from_numpy(write_compressed(path, scene)["order"])
    back = read_compressed(path)
    assert torch.equal(back.raw["confidence"], scene.raw["confidence"][order])
    for k, v in scene.ints.items():
        assert back.ints[k].dtype == torch.int64 and torch.equal(back.ints[k], v[order])
    splats = back.to_splats()
    assert splats["labels"].shape == (n,) and splats["ids"].shape == (n, 2)
    with pytest.raises(GsVqError):
        write_compressed(path, CompressedScene(torch.randn(2, 3), torch.zeros(2), [],
                                               ints={"bad": torch.tensor([-1, 0])}))


def test_empty_and_single_gaussian_scenes(tmp_path):
    for n in (0, 1):
        attr = CodedAttribute("sh0", (1, 3), [torch.randn(4, 3)], torch.zeros(n, 1, dtype=torch.long))
        scene = CompressedScene(torch.randn(n, 3), torch.randn(n), [attr], ints={"l": torch.ones(n).long()})
        path = str(tmp_path / f"n{n}.ply")
        write_compressed(path, scene)
        back = read_compressed(path)
        assert back.means.shape == (n, 3) and back.to_splats()["sh0"].shape == (n, 1, 3)
        if n:
            assert torch.equal(back.attributes[0].decode(), attr.decode())


def test_version_1_fixture_loads_exactly(tmp_path):
    """tests/data/compressed_v1.ply was written by the version-1 writer (commit 57213ef)."""
    import os

    here = os.path.join(os.path.dirname(__file__), "data")
    path = os.path.join(here, "compressed_v1.ply")
    want = np.load(os.path.join(here, "compressed_v1_splats.npz"))
    assert describe_compressed(path)["version"] == 1
    got = read_compressed(path).to_splats()
    assert set(got) == set(want.files)
    for k in want.files:
        assert np.array_equal(got[k].numpy(), want[k]), k
    # re-encoded as version 2 with the same grid: the same splats
    scene = read_compressed(path)
    out = str(tmp_path / "v2.ply")
    order = torch.from_numpy(write_compressed(out, scene)["order"])
    assert describe_compressed(out)["version"] == 2
    again = read_compressed(out).to_splats()
    for k in want.files:
        assert torch.equal(again[k], got[k][order]), k


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


def test_unknown_version_names_the_versions_read(tmp_path, good_file):
    from gs_vq.io import container

    meta, sections = container.read_container(open(good_file, "rb").read(), good_file)
    for version in (4, 0, "2"):
        path = str(tmp_path / "v.ply")
        container.write_container(path, dict(meta, version=version), list(sections.items()))
        msg = _expect_one_line_error(path)
        assert "reads versions 1, 2, 3" in msg


@pytest.mark.parametrize("edit", [
    lambda m: m.update(count=m["count"] + 1),
    lambda m: m.update(count=-1),
    lambda m: m["sections"][0]["params"].update(bits=22),
    lambda m: m["sections"][0]["params"].update(step=[0.1, 0.0, 0.1]),
    lambda m: m["sections"][1]["params"].update(bits=17),
    lambda m: m["sections"][3].update(combine="concat"),
    lambda m: m["sections"][2].update(shape=[1, 4]),
    lambda m: m["sections"][2].update(precision="float8"),
    lambda m: m["sections"][2]["params"]["codebooks"][0].update(size=1),
    lambda m: m["sections"][2]["params"]["codebooks"][0].update(dim=4),
    lambda m: m["sections"][2]["params"]["codebooks"][0].update(index="lz4"),
    lambda m: m["sections"][3].update(attr="sh0"),
    lambda m: m["sections"][3].update(name="coded_sh0"),
    lambda m: m["sections"].pop(1),
    lambda m: m.update(sections={}),
    lambda m: m["sections"][5]["params"]["codebooks"][1].update(dim=3),
])
def test_inconsistent_header_with_valid_checksum_is_one_line_error(tmp_path, good_file, edit):
    """A header that a buggy writer could produce (checksum valid) fails validation cleanly."""
    from gs_vq.io import container

    meta, sections = container.read_container(open(good_file, "rb").read(), good_file)
    edit(meta)
    path = str(tmp_path / "h.ply")
    container.write_container(path, meta, list(sections.items()))
    _expect_one_line_error(path)


def test_rounded_codebooks_and_isotropic_grid_load_exactly_and_smaller(tmp_path):
    from gs_vq.io.scene import round_mantissa

    scene = make_scene(n=2000)
    path = str(tmp_path / "c.ply")
    full = write_compressed(path, scene)["bits_per_gaussian"]
    for a in scene.attributes:
        a.codebooks = [round_mantissa(cb, 5) for cb in a.codebooks]
        assert all(torch.equal(round_mantissa(cb, 5), cb) for cb in a.codebooks)  # idempotent
    scene.grid = S.PositionGrid.fit(scene.means.numpy(), 12, isotropic=True)
    assert len(set(scene.grid.step)) == 1
    report = write_compressed(path, scene)
    back = read_compressed(path)
    order = torch.from_numpy(report["order"])
    for a, b in zip(scene.attributes, back.attributes):
        assert torch.equal(b.decode(), a.decode()[order])
    assert report["bits_per_gaussian"]["shN.codebook"] < 0.8 * full["shN.codebook"]
    assert report["bits_per_gaussian"]["means"] < full["means"]
    err = (back.means - scene.means[order]).abs()
    assert (err <= torch.tensor(scene.grid.precision) * 1.001 + 1e-7).all()


def test_correlated_index_columns_use_a_context(tmp_path):
    """Scalar grids per axis (concat of 1-D codebooks): an axis predicts the next one."""
    n = 6000
    rng = np.random.default_rng(4)
    base = rng.integers(0, 64, n)
    cols = np.stack([base, np.clip(base + rng.integers(-2, 3, n), 0, 63),
                     np.clip(base + rng.integers(-2, 3, n), 0, 63)], 1)
    grid = torch.linspace(-6, -1, 64)[:, None].half().float()
    attr = CodedAttribute("scales", (3,), [grid, grid, grid], torch.from_numpy(cols), "concat", "float16")
    path = str(tmp_path / "c.ply")
    order = torch.from_numpy(write_compressed(
        path, CompressedScene(torch.randn(n, 3), torch.zeros(n), [attr]))["order"])
    books = _coded_entry(path, "scales")["params"]["codebooks"]
    assert books[0]["index"] != "range+ctx" and books[1]["index"] == books[2]["index"] == "range+ctx"
    assert books[1]["index_bytes"] < 0.75 * books[0]["index_bytes"]
    back = read_compressed(path).attributes[0]
    assert torch.equal(back.decode(), attr.decode()[order])
    assert torch.equal(back.codebooks[0][:, 0], torch.sort(back.codebooks[0][:, 0]).values)


def test_a_loaded_file_written_again_loads_back_identical(tmp_path):
    """Read -> write -> read keeps every value: the scene's own grid and opacity bins are reused."""
    scene = make_scene(n=800)
    first = str(tmp_path / "a.ply")
    write_compressed(first, scene, pos_bits=11, opacity_bits=5)
    loaded = read_compressed(first)
    again = str(tmp_path / "b.ply")
    write_compressed(again, loaded)
    a, b = loaded.to_splats(), read_compressed(again).to_splats()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
