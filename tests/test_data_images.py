"""Image inputs: -i/--images, images_N/ for -r N, -r as a target width, the 1600-pixel auto cap,
uint8 storage, and bad image files as one ``error:`` line (exit 2) through train.py."""

import json

import numpy as np
import pytest
import torch
from colmap_scenes import flat_scene
from PIL import Image

from gs_vq.cli.train import main as train_main
from gs_vq.data import load_scene
from gs_vq.data.images import LARGE_IMAGE_NOTE
from gs_vq.errors import GsVqError

RED, BLUE = (200, 40, 40), (30, 60, 220)


def test_r4_reads_images_4_when_present(tmp_path):
    root = flat_scene(tmp_path / "s", size=(64, 48), colour=RED)
    (root / "images_4").mkdir()
    for i in range(2):  # visibly different content: blue, not the red of images/
        Image.new("RGB", (16, 12), BLUE).save(root / "images_4" / f"v{i}.png")
    cache = str(tmp_path / "cache")
    cam = load_scene(str(root), resolution=4, cache_dir=cache).train_cameras[0]
    assert (cam.width, cam.height) == (16, 12) and tuple(cam.pixels[5, 5].tolist()) == BLUE
    full = load_scene(str(root), resolution=1, cache_dir=cache).train_cameras[0]
    torch.testing.assert_close(cam.K[:2], full.K[:2] / 4)
    half = load_scene(str(root), resolution=2, cache_dir=cache).train_cameras[0]  # no images_2: downscaled
    assert (half.width, half.height) == (32, 24) and tuple(half.pixels[5, 5].tolist()) == RED


def test_images_flag_names_the_folder(tmp_path):
    root = flat_scene(tmp_path / "s", colour=RED)
    (root / "images").rename(root / "rgb")
    cam = load_scene(str(root), images="rgb", cache_dir=str(tmp_path / "cache")).train_cameras[0]
    assert tuple(cam.pixels[0, 0].tolist()) == RED
    with pytest.raises(GsVqError, match="no images/ folder"):
        load_scene(str(root), cache_dir=str(tmp_path / "cache"))


def _wide_blender(root, width=1700, height=40):
    (root / "train").mkdir(parents=True)
    Image.new("RGB", (width, height), RED).save(root / "train" / "r_0.png")
    frames = [{"file_path": "./train/r_0", "transform_matrix": np.eye(4).tolist()}]
    (root / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": frames}))
    return root


def test_auto_resolution_caps_the_width_at_1600(tmp_path, capsys):
    root = _wide_blender(tmp_path / "wide")
    cache = str(tmp_path / "cache")
    cam = load_scene(str(root), cache_dir=cache).train_cameras[0]  # default: -1, auto
    assert (cam.width, cam.height) == (1600, 38) and capsys.readouterr().out.count(LARGE_IMAGE_NOTE) == 1
    assert cam.K[0, 0].item() == pytest.approx(0.5 * 1600 / np.tan(0.35), rel=1e-6)
    full = load_scene(str(root), resolution=1, cache_dir=cache).train_cameras[0]
    assert (full.width, full.height) == (1700, 40) and LARGE_IMAGE_NOTE not in capsys.readouterr().out
    narrow = load_scene(str(root), resolution=850, cache_dir=cache).train_cameras[0]  # a target width
    assert (narrow.width, narrow.height) == (850, 20)
    with pytest.raises(GsVqError, match="2000 pixels wide"):
        load_scene(str(root), resolution=2000, cache_dir=cache)
    small = _wide_blender(tmp_path / "small", 800, 40)  # at most 1600 wide: auto keeps it
    assert load_scene(str(small), cache_dir=cache).train_cameras[0].width == 800
    assert LARGE_IMAGE_NOTE not in capsys.readouterr().out


def test_images_are_kept_as_uint8(tmp_path):
    root = _wide_blender(tmp_path / "s", 32, 16)
    Image.new("RGBA", (32, 16), (255, 0, 0, 128)).save(root / "train" / "r_0.png")
    white = load_scene(str(root), white_background=True, cache_dir=str(tmp_path / "c")).train_cameras[0]
    assert white.pixels.dtype == torch.uint8 and white.pixels.shape == (16, 32, 4)
    a = 128 / 255
    torch.testing.assert_close(white.image_float("cpu")[0, 0], torch.tensor([a + 1 - a, 1 - a, 1 - a]))
    assert white.image.dtype == torch.float32 and white.alpha[0, 0].item() == pytest.approx(a)


def _cli_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as info:
        train_main(argv)
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = [line for line in (out + err).splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and err.strip() == lines[0], err
    return lines[0]


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _cmyk(path):
    path.unlink()
    Image.new("CMYK", (32, 24), (0, 100, 100, 0)).save(path.with_suffix(".jpg"))
    path.with_suffix(".jpg").rename(path)  # PIL reads by content, whatever the suffix


BAD_IMAGES = {
    "missing": (lambda p: p.unlink(), "image file not found"),
    "unreadable": (lambda p: p.write_bytes(b"not an image at all" * 10), "cannot read image"),
    "zero-size": (lambda p: p.write_bytes(b""), "cannot read image"),
    "truncated": (_truncate, "cannot read image"),
    "1x1": (lambda p: Image.new("RGB", (1, 1)).save(p), "too small"),
    "channels": (_cmyk, "4 channels (CMYK)"),
}


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_bad_image_is_one_error_line(tmp_path, capsys, case):
    root = flat_scene(tmp_path / "s", size=(32, 24))
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(root / "images" / "v1.png")
    damage, message = BAD_IMAGES[case]
    damage(root / "images" / "v1.png")
    line = _cli_error(capsys, ["-s", str(root), "-m", str(tmp_path / "m"), "--quiet", "--iterations", "1"])
    assert message in line and "v1.png" in line, line


def test_bad_folders_are_one_error_line(tmp_path, capsys):
    root = flat_scene(tmp_path / "s")
    line = _cli_error(capsys, ["-s", str(root), "-i", "photos", "-m", str(tmp_path / "m"), "--quiet"])
    assert "photos/" in line, line
    line = _cli_error(capsys, ["-s", str(root / "images" / "v0.png"), "-m", str(tmp_path / "m2"), "--quiet"])
    assert "not a folder" in line and "v0.png" in line, line
    line = _cli_error(capsys, ["-s", str(root), "-r", "3", "-m", str(tmp_path / "m3"), "--quiet"])
    assert "resolution" in line, line
