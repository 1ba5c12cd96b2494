"""A build lock left by a killed kernel build must not hang every later process (gs_vq.cext)."""

import os
import time

from gs_vq.cext import STALE_LOCK_S, build_dir, clear_stale_lock


def test_stale_build_lock_is_removed_fresh_one_kept(tmp_path):
    lock = tmp_path / "lock"
    lock.write_text("")
    assert not clear_stale_lock(str(tmp_path)) and lock.exists()  # a build may be running
    old = time.time() - STALE_LOCK_S - 5
    os.utime(lock, (old, old))
    assert clear_stale_lock(str(tmp_path)) and not lock.exists()
    assert not clear_stale_lock(str(tmp_path))  # nothing to remove


def test_two_checkouts_get_their_own_build_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("GS_VQ_CACHE", str(tmp_path / "cache"))
    a, b = tmp_path / "a" / "k.cpp", tmp_path / "b" / "k.cpp"
    for p in (a, b):
        p.parent.mkdir()
        p.write_text("int f() { return 1; }\n")
    assert build_dir(str(a)) != build_dir(str(b))  # ninja would rebuild on every switch of source path
    assert build_dir(str(a)) == build_dir(str(a))
