"""render.py --traj: an mp4 of a camera path (gs_vq.video): frame count, that it decodes, bad paths."""

import numpy as np
import pytest

from gs_vq.camera_path import PathConfig
from gs_vq.errors import GsVqError
from gs_vq.video import VideoConfig, check_video_path, render_video, scene_bounds

from orbit_scene import blob_splats, ring_cameras


@pytest.mark.parametrize("kind,frames", [("ellipse", 12), ("interp", 10)])
def test_video_has_the_frames_and_decodes(tmp_path, kind, frames):
    import imageio.v3 as iio

    out = tmp_path / "videos" / f"traj_{kind}.mp4"
    cams = ring_cameras(6, size=33)  # odd size: cropped to even for H.264
    info = render_video(blob_splats(), cams, str(out), VideoConfig(PathConfig(kind, n_frames=frames), fps=10),
                        [0.0] * 3, "cpu", backend="torch", progress=False)
    assert info["frames"] == frames and (info["width"], info["height"]) == (32, 32)
    video = iio.imread(out, plugin="pyav") if _has_pyav() else _read_ffmpeg(out)
    assert video.shape == (frames, 32, 32, 3)
    assert video.std() > 5  # the Gaussians are there, not a flat frame
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp file left


def _has_pyav():
    try:
        import av  # noqa: F401
        return True
    except ImportError:
        return False


def _read_ffmpeg(path):
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    frames = [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader]
    return np.stack(frames)


def test_spiral_bounds_come_from_the_model():
    cams = ring_cameras(6)
    c2w = np.stack([c.camtoworld.double().numpy() for c in cams])
    near, far = scene_bounds(blob_splats()["means"], c2w)
    assert 1.5 < near < 3.0 < far < 4.5  # the ball of radius 1 seen from ~3.2 away


@pytest.mark.parametrize("name,msg", [("out", "folder"), ("v.avi", "must end in .mp4"), ("f/v.mp4", "is a file")])
def test_bad_video_paths_are_one_line_errors(tmp_path, name, msg):
    (tmp_path / "out").mkdir()
    (tmp_path / "f").write_text("")
    with pytest.raises(GsVqError, match=msg):
        check_video_path(str(tmp_path / name))
