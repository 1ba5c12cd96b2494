"""render.py --traj and --lpips_net through the CLI: a camera-path mp4 of a briefly trained demo
model; bad values and paths of the wrong kind are one line and exit 2."""

import json

import pytest

from test_cli import ROOT, run, train_tiny


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_tiny(tmp_path_factory, 10)


def test_traj_writes_an_mp4_with_the_frames(trained):
    import imageio_ffmpeg

    r = run("render.py", "-m", str(trained), "--traj", "ellipse", "--traj_frames", "8", "--fps", "4")
    assert r.returncode == 0, r.stderr[-2000:]
    info = json.loads(r.stdout.strip().splitlines()[-1])
    video = trained / "videos" / "traj_ellipse.mp4"
    assert info["video"] == str(video) and info["frames"] == 8
    assert "video (ellipse)" in r.stderr  # the progress bar
    frames = imageio_ffmpeg.read_frames(str(video))
    meta = next(frames)
    assert meta["size"] == (info["width"], info["height"]) and sum(1 for _ in frames) == 8
    assert not (trained / "results.json").exists()  # a video only: nothing scored


@pytest.mark.parametrize("args,msg", [
    (["--traj", "circle"], "invalid choice: 'circle'"),
    (["--lpips_net", "squeeze"], "invalid choice: 'squeeze'"),
    (["--traj", "spiral", "--video", "{model}"], "is a folder"),
    (["--traj", "spiral", "--video", "{model}/cfg.yaml/v.mp4"], "is a file"),
    (["--traj", "interp", "--video", "{model}/v.gif"], "must end in .mp4"),
])
def test_bad_traj_input_is_one_line(trained, args, msg):
    r = run("render.py", "-m", str(trained), *[a.format(model=trained) for a in args])
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and msg in lines[0], r.stderr


def test_lpips_net_is_recorded_and_null_says_why(trained):
    from gs_vq.metrics import lpips_unavailable

    r = run("render.py", "-m", str(trained), "--lpips_net", "alex")
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((trained / "results.json").read_text())
    assert res["lpips_net"] == "alex"
    reason = lpips_unavailable("alex")
    if reason is None:
        assert isinstance(res["lpips"], float)
    else:
        assert res["lpips"] is None
        assert [ln for ln in r.stderr.splitlines() if "LPIPS" in ln] == [
            f"note: LPIPS (alex) not computed, null in the results: {reason}"]
