"""A build lock left by a killed kernel build must not hang every later process (gs_vq.cext)."""

from gs_vq.cext import build_dir


def test_a_killed_builds_lock_file_does_not_hang_the_next_load(tmp_path):
    """torch's FileBaton leaves ``lock`` behind when a build is killed; the next load must not wait on it."""
    import multiprocessing

    from gs_vq.cext import build_lock

    (tmp_path / "lock").write_text("")
    with build_lock(str(tmp_path)):
        assert not (tmp_path / "lock").exists()
    # the lock is exclusive while held and free once released
    ctx = multiprocessing.get_context("fork")
    with build_lock(str(tmp_path)):
        child = ctx.Process(target=_try_lock, args=(str(tmp_path),))
        child.start()
        child.join(10)
        assert child.exitcode == 3  # could not take it
    child = ctx.Process(target=_try_lock, args=(str(tmp_path),))
    child.start()
    child.join(10)
    assert child.exitcode == 0


def _try_lock(path):
    import os

    from filelock import FileLock, Timeout

    try:
        with FileLock(os.path.join(path, "gs_vq.lock"), timeout=0):
            pass
    except Timeout:
        os._exit(3)
    os._exit(0)


def test_two_checkouts_get_their_own_build_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("GS_VQ_CACHE", str(tmp_path / "cache"))
    a, b = tmp_path / "a" / "k.cpp", tmp_path / "b" / "k.cpp"
    for p in (a, b):
        p.parent.mkdir()
        p.write_text("int f() { return 1; }\n")
    assert build_dir(str(a)) != build_dir(str(b))  # ninja would rebuild on every switch of source path
    assert build_dir(str(a)) == build_dir(str(a))
