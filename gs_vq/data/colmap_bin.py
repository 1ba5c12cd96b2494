"""Structural check of COLMAP's binary model files before pycolmap reads them.

pycolmap reads a truncated ``cameras.bin`` without a word (focal length 0, a wrong principal
point), reports a truncated ``images.bin`` as "Rig with ID ... does not exist", and spends minutes
on an empty ``points3D.bin`` before failing with ``std::bad_alloc``. :func:`check_binary_model`
walks the three files' record layout (counts, per-record sizes; no values are interpreted) and
raises a one-line :class:`~gs_vq.errors.GsVqError` naming the file when its size does not match.

Layouts (little-endian, COLMAP ``src/colmap/scene/reconstruction_io.cc``):

- cameras.bin: u64 count; per camera: u32 id, i32 model, u64 width, u64 height, f64 params[P(model)]
- images.bin: u64 count; per image: u32 id, f64 qvec[4], f64 tvec[3], u32 camera_id, name (NUL-ended),
  u64 n2d, n2d * (f64 x, f64 y, u64 point3D_id)
- points3D.bin: u64 count; per point: u64 id, f64 xyz[3], u8 rgb[3], f64 error, u64 track_len,
  track_len * (u32 image_id, u32 point2D_idx)
"""

import struct
from pathlib import Path

from gs_vq.errors import GsVqError

# COLMAP camera model id -> number of parameters (colmap/sensor/models.h)
NUM_PARAMS = {0: 3, 1: 4, 2: 4, 3: 5, 4: 8, 5: 8, 6: 12, 7: 5, 8: 4, 9: 5, 10: 12, 11: 16}


class _Reader:
    """Bounds-checked cursor over a file's bytes; running past the end is a GsVqError."""

    def __init__(self, path: Path):
        self.path, self.data, self.pos = path, path.read_bytes(), 0

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > len(self.data):
            raise GsVqError(f"COLMAP file {self.path} is truncated or corrupt: it ends inside {what} "
                            f"({len(self.data)} bytes)")

    def unpack(self, fmt: str, what: str):
        size = struct.calcsize(fmt)
        self.need(size, what)
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def skip(self, n: int, what: str) -> None:
        self.need(n, what)
        self.pos += n

    def count(self, record_min: int, what: str) -> int:
        (n,) = self.unpack("<Q", f"the number of {what}")
        if n * record_min > len(self.data) - self.pos:
            raise GsVqError(f"COLMAP file {self.path} is truncated or corrupt: it claims {n} {what} "
                            f"but has only {len(self.data)} bytes")
        return n

    def done(self) -> None:
        if self.pos != len(self.data):
            extra = len(self.data) - self.pos
            raise GsVqError(f"COLMAP file {self.path} is corrupt: {extra} bytes after the last record")


def check_cameras_bin(path: Path) -> None:
    r = _Reader(path)
    for i in range(r.count(24, "cameras")):
        _, model, width, height = r.unpack("<IiQQ", f"camera {i}")
        if model not in NUM_PARAMS:
            raise GsVqError(f"COLMAP file {path} is corrupt: camera {i} has unknown model id {model}")
        if not (0 < width < 1 << 20 and 0 < height < 1 << 20):
            raise GsVqError(f"COLMAP file {path} is corrupt: camera {i} is {width}x{height} pixels")
        r.skip(8 * NUM_PARAMS[model], f"the parameters of camera {i}")
    r.done()


def check_images_bin(path: Path) -> None:
    r = _Reader(path)
    for i in range(r.count(73, "images")):
        r.skip(4 + 8 * 7 + 4, f"image {i}")
        end = r.data.find(b"\0", r.pos)
        if end < 0:
            r.need(len(r.data) + 1 - r.pos, f"the name of image {i}")
        r.pos = end + 1
        (n2d,) = r.unpack("<Q", f"image {i}")
        r.skip(24 * n2d, f"the 2D points of image {i}")
    r.done()


def check_points3d_bin(path: Path) -> None:
    r = _Reader(path)
    for i in range(r.count(51, "points")):
        r.skip(8 + 24 + 3 + 8, f"point {i}")
        (track,) = r.unpack("<Q", f"point {i}")
        r.skip(8 * track, f"the track of point {i}")
    r.done()


def check_binary_model(folder: Path) -> None:
    """Check ``cameras.bin``, ``images.bin`` and ``points3D.bin`` in ``folder`` (those present)."""
    for name, check in (("cameras.bin", check_cameras_bin), ("images.bin", check_images_bin),
                        ("points3D.bin", check_points3d_bin)):
        if (folder / name).is_file():
            check(folder / name)
