"""The codec table of compressed.ply (gs_vq.io.sections.SECTIONS): every kind is one entry that the
writer, the reader, the header check and the bits report all go through."""

import torch

from gs_vq.io import container
from gs_vq.io.compressed import describe_compressed, read_compressed, write_compressed
from gs_vq.io.sections import SECTIONS, Section, SectionCodec

from test_compressed import _expect_one_line_error, make_scene


def every_kind_scene(n=600):
    scene = make_scene(n=n, seed=1)
    scene.attributes[1].present = torch.arange(n) % 3 > 0  # shN: a row-presence stream
    scene.raw = {"extra": torch.randn(n, 2, generator=torch.Generator().manual_seed(2))}
    scene.ints = {"labels": torch.arange(n) % 7}
    return scene


def test_every_section_is_of_a_kind_in_the_table_and_named_by_it(tmp_path):
    path = str(tmp_path / "c.ply")
    write_compressed(path, every_kind_scene())
    meta, sections = container.read_container(open(path, "rb").read(), path)
    kinds = [e["kind"] for e in meta["sections"]]
    assert kinds == sorted(kinds, key=list(SECTIONS).index)  # written in the table's order
    assert set(kinds) == set(SECTIONS)
    for e in meta["sections"]:
        codec = SECTIONS[e["kind"]]
        if codec.prefix is None:
            assert kinds.count(e["kind"]) == 1 and "attr" not in e
        else:
            assert e["name"] == f"{codec.prefix}_{e['attr']}" and isinstance(e["shape"], list)
        assert e["bytes"] == len(sections[e["name"]])


def test_bits_report_is_the_sum_of_each_kinds_parts(tmp_path):
    path = str(tmp_path / "c.ply")
    report = write_compressed(path, every_kind_scene())["bits_per_gaussian"]
    meta, _ = container.read_container(open(path, "rb").read(), path)
    n = meta["count"]
    parts = {}
    for e in meta["sections"]:
        parts.update(SECTIONS[e["kind"]].bits(e, n))
    assert set(report) == set(parts) | {"header", "total"}
    assert {"shN.rows", "raw_extra", "ints_labels", "means", "opacities"} <= set(parts)
    assert abs(sum(parts.values()) + report["header"] - report["total"]) < 1e-2
    assert describe_compressed(path)["bits_per_gaussian"] == report


def test_a_file_read_and_written_again_is_byte_identical(tmp_path):
    """The reader gives back exactly what the writer needs to reproduce the file (grid, bins,
    codebooks in stored order, row presence, raw precision, integer attributes)."""
    first, again = str(tmp_path / "a.ply"), str(tmp_path / "b.ply")
    write_compressed(first, every_kind_scene(), pos_bits=12, opacity_bits=6)
    write_compressed(again, read_compressed(first))
    assert open(first, "rb").read() == open(again, "rb").read()


class Note(SectionCodec):
    """A toy kind: one section holding the UTF-8 text of ``scene.meta["note"]``, read back as
    ``meta["note_read"]``."""

    kind = "note"

    def encode(self, job):
        return [Section("note", {"codec": "utf8"}, job.scene.meta["note"].encode())]

    def decode(self, entry, payload, n, scene):
        scene.meta["note_read"] = payload.decode()

    def check(self, c, entry, params, where, size):
        c.choice(params, "codec", ("utf8",), f"{where}.params")


def test_a_new_section_kind_is_one_table_entry(tmp_path, monkeypatch):
    path = str(tmp_path / "c.ply")
    scene = make_scene(n=200)
    scene.meta = {"note": "hello"}
    monkeypatch.setitem(SECTIONS, "note", Note())
    report = write_compressed(path, scene)
    assert read_compressed(path).meta["note_read"] == "hello"
    assert report["bits_per_gaussian"]["note"] == 8.0 * 5 / 200  # the default bits rule
    monkeypatch.undo()  # a reader without the entry rejects the file in one line
    assert "kind must be one of positions, opacities, coded, raw, ints" in _expect_one_line_error(path)


def test_codecs_on_threads_choose_the_same_stream_as_in_turn(monkeypatch):
    """Large streams try their codecs on a thread pool; the chosen codec and bytes are those of
    trying them one after the other."""
    import numpy as np

    from gs_vq.io import streams as S

    rng = np.random.default_rng(0)
    values = rng.integers(0, 1 << 12, 70_000) // (1 + rng.integers(0, 30, 70_000))
    monkeypatch.setattr(S, "PARALLEL_MIN", 1 << 62)
    serial = S.encode_uints(values, 12)
    monkeypatch.setattr(S, "PARALLEL_MIN", 1)
    monkeypatch.setattr(S, "_codec_pool", lambda: __import__("concurrent.futures").futures.ThreadPoolExecutor(4))
    assert S.encode_uints(values, 12) == serial
    assert np.array_equal(S.decode_uints(*serial, 12, values.size), values.astype(np.uint64))
