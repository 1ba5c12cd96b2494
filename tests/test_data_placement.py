"""Where training images live: the decision (testable without a GPU) and the CPU path."""

import torch

from gs_vq.data import Camera
from gs_vq.data.placement import DEVICE, HOST, PINNED, choose_placement, images_nbytes, place_images


def _camera(h=6, w=5, dtype=torch.uint8):
    pixels = torch.zeros(h, w, 3, dtype=dtype)
    return Camera("c", pixels, torch.eye(4), torch.eye(3), w, h)


def test_images_go_to_the_gpu_only_when_they_take_at_most_a_quarter_of_its_free_memory():
    gb = 1 << 30
    assert choose_placement(int(0.95 * gb), "cuda", free_bytes=70 * gb) == DEVICE  # 185 views at 1.6K, H100
    assert choose_placement(3 * gb, "cuda:0", free_bytes=8 * gb) == PINNED  # more than 2 GB of 8
    assert choose_placement(2 * gb, "cuda", free_bytes=8 * gb) == DEVICE  # exactly a quarter
    assert choose_placement(1, "cuda", free_bytes=None) == PINNED
    assert choose_placement(1, "cpu", free_bytes=70 * gb) == HOST


def test_bytes_count_the_pixels_as_stored():
    assert images_nbytes([_camera(), _camera(dtype=torch.float32)]) == 6 * 5 * 3 * (1 + 4)


def test_on_the_cpu_nothing_moves_and_reads_stay_on_the_cpu():
    cams = [_camera(), _camera()]
    before = [c.pixels for c in cams]
    assert place_images(cams, "cpu") == HOST
    assert all(c.pixels is p for c, p in zip(cams, before))
    assert cams[0].image.device.type == "cpu" and cams[0].image.dtype == torch.float32
