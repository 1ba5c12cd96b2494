"""Model folders: writable check, a lock against a second run, stale outputs and temp files removed,
outputs created with the umask's permissions, the scene folder found from another directory."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gs_vq.model_dir import scene_folder
from gs_vq.cli.train import record_source_path
from gs_vq.config import make_config
from gs_vq.errors import GsVqError
from gs_vq.files import atomic_path
from gs_vq.model_dir import open_model_dir, release_model_dirs, remove_stale_outputs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _release():
    yield
    release_model_dirs()


def test_model_path_that_is_a_file_or_under_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(GsVqError, match="is a file, not a folder"):
        open_model_dir(str(f))
    with pytest.raises(GsVqError, match="cannot create the model folder"):
        open_model_dir(str(f / "sub"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_model_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(GsVqError, match="not writable"):
        open_model_dir(str(ro))


def test_second_run_on_a_locked_folder_names_the_holder(tmp_path):
    model = tmp_path / "m"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from gs_vq.model_dir import open_model_dir
        open_model_dir({str(model)!r})
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(GsVqError, match=f"in use by process {holder.pid}"):
            open_model_dir(str(model))
    finally:
        holder.kill()
        holder.wait()
    open_model_dir(str(model))  # the lock dies with its process


def test_temp_files_of_killed_writes_are_removed(tmp_path):
    (tmp_path / "test" / "renders").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    for p in (tmp_path / ".tmp-abc.ply", tmp_path / "test" / "renders" / ".tmp-x.png", tmp_path / "keep.txt",
              tmp_path / "other" / ".tmp-not-ours"):
        p.write_text("x")
    open_model_dir(str(tmp_path))
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == [".gs_vq.lock", ".gs_vq.lock.who", "keep.txt", "other/.tmp-not-ours"]  # only where gs-vq writes


def fill(folder: Path, names):
    for n in names:
        (folder / n).write_text("old")


def test_stale_outputs(tmp_path):
    everything = ["point_cloud.ply", "cfg.yaml", "ckpt.pt", "train_stats.json", "results.json", "compressed.ply",
                  "semantic_head.pt", "notes.txt"]
    fill(tmp_path, everything)
    # resume without --vq / --semantic: their files and the old scores go, the model stays
    removed = remove_stale_outputs(str(tmp_path), make_config(None, {}), resume=True)
    assert sorted(removed) == ["compressed.ply", "results.json", "semantic_head.pt"]
    # a fresh run removes every output of the earlier one (no mix of old ply and new ckpt), but keeps
    # its --start_checkpoint and files that are not gs-vq outputs
    fill(tmp_path, everything)
    removed = remove_stale_outputs(str(tmp_path), make_config(None, {"vq": {}}), resume=False,
                                   keep=[str(tmp_path / "ckpt.pt")])
    assert "ckpt.pt" not in removed and "compressed.ply" in removed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "notes.txt"]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outputs_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        with atomic_path(str(tmp_path / "out.json")) as tmp, open(tmp, "w") as f:
            f.write("{}")
    finally:
        os.umask(old)
    assert (tmp_path / "out.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_source_path_recorded_absolute_and_relative(tmp_path, monkeypatch):
    scene, model = tmp_path / "data" / "scene", tmp_path / "out" / "m"
    scene.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    cfg = make_config(None, {"source_path": "data/scene", "model_path": "out/m"})
    record_source_path(cfg)
    assert cfg.source_path == str(scene) and cfg.source_path_rel == os.path.join("..", "..", "data", "scene")
    monkeypatch.chdir("/")  # render.py run from elsewhere
    assert scene_folder(cfg, str(model)) == str(scene)
    moved = tmp_path / "moved"  # both folders moved together
    os.rename(tmp_path / "data", tmp_path / "moved_data")
    (moved / "out" / "m").mkdir(parents=True)
    os.rename(tmp_path / "moved_data", moved / "data")
    assert os.path.samefile(scene_folder(cfg, str(moved / "out" / "m")), moved / "data" / "scene")
    with pytest.raises(GsVqError, match="pass it with -s"):
        scene_folder(cfg, str(model))
