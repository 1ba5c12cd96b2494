"""Image and mask reading, ``-r`` resizing with an on-disk cache, compositing, K scaling.

``-r/--resolution`` follows Inria 3DGS: 1, 2, 4 or 8 downscale by that factor; -1 (auto, the
default) keeps images up to 1600 pixels wide and brings wider ones to 1600 (printing Inria's
note); any other value >= 16 is a target width in pixels (never wider than the image).
Resizing follows gsplat / Inria 3DGS: PIL bicubic (alpha-premultiplied for RGBA); a factor gives
``(round(W / r), round(H / r))`` (gsplat's rule), a width ``w`` gives ``(w, round(H * w / W))``
(Inria truncates the height instead: at most a pixel apart); K is scaled by the actual size ratio
per axis.

Derived images (resized, undistorted) are written once to ``<cache>/images/<sha1 of the image's
folder>/<tag>/`` (never next to the data, which may be read-only) and reused while the source
file's content is unchanged: each cached PNG records the source's size and BLAKE2b hash (a text
chunk), so an image replaced with its mtime kept (``cp -p``, ``rsync -a``) is made again. The tag
names the recipe (``<W>x<H>`` for a resize, see :mod:`gs_vq.data.undistort` for remaps). The
default cache root is ``$GS_VQ_CACHE``, else ``$XDG_CACHE_HOME/gs_vq``, else ``~/.cache/gs_vq``.

Images are returned as uint8, as read: grey, palette and 16-bit grey become RGB, images with
transparency RGBA; other pixel formats (CMYK, 32-bit, ...) and images under 2x2 pixels are refused.
Masks (object ids) are subsampled with nearest neighbour, never interpolated, and are not cached.
"""

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, TypeVar

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from torch import Tensor

from gs_vq.errors import GsVqError, error_text

from gs_vq.files import atomic_path

RESOLUTIONS = (1, 2, 4, 8)  # downscale factors; other values are a target width
AUTO = -1  # -r -1: cap the width at AUTO_WIDTH
AUTO_WIDTH = 1600
MIN_WIDTH = 16  # smallest target width
MIN_SIDE = 2  # smallest image side (pixels) that is not degenerate
LARGE_IMAGE_NOTE = ("[ INFO ] Encountered quite large input images (>1.6K pixels width), rescaling to 1.6K.\n "
                    "If this is not desired, please explicitly specify '--resolution/-r' as 1")
CACHE_KEY = "gs_vq_source"  # PNG text chunk of a cached image: content_key of its source
GREY_MODES = ("1", "L", "P", "I;16", "I;16B", "I;16L", "I;16N")
ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")

T = TypeVar("T")
R = TypeVar("R")


def check_resolution(resolution: int) -> int:
    """Validate ``-r/--resolution``: a factor 1, 2, 4, 8, -1 (auto) or a target width >= 16 pixels."""
    if (isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer))
            or not (resolution in RESOLUTIONS or resolution == AUTO or resolution >= MIN_WIDTH)):
        raise GsVqError(f"resolution must be a downscale factor 1, 2, 4 or 8, -1 (auto: at most {AUTO_WIDTH} "
                        f"pixels wide) or a target width of at least {MIN_WIDTH} pixels, got {resolution!r}")
    return int(resolution)


def default_cache_root(cache_dir: Optional[str] = None) -> Path:
    """The gs_vq cache root: ``cache_dir`` if given, else $GS_VQ_CACHE, $XDG_CACHE_HOME/gs_vq, ~/.cache/gs_vq."""
    if cache_dir:
        return Path(cache_dir).expanduser().absolute()
    if os.environ.get("GS_VQ_CACHE"):
        return Path(os.environ["GS_VQ_CACHE"]).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg).absolute() / "gs_vq"


def scaled_size(width: int, height: int, factor: int) -> Tuple[int, int]:
    """Size of an image downscaled by ``factor`` (gsplat's rule: round each side)."""
    return max(1, int(round(width / factor))), max(1, int(round(height / factor)))


def target_size(width: int, height: int, resolution: int, path: Path) -> Tuple[int, int]:
    """(width, height) an image of ``width`` x ``height`` pixels is loaded at for ``-r resolution``
    (see the module docstring); GsVqError for a target width wider than the image."""
    if resolution in RESOLUTIONS:
        size = scaled_size(width, height, resolution)
    else:
        target = AUTO_WIDTH if resolution == AUTO and width > AUTO_WIDTH else width if resolution == AUTO else resolution
        if target > width:
            raise GsVqError(f"-r {resolution} asks for images {target} pixels wide but {path} is {width} "
                            "pixels wide: give a smaller width or a factor (1, 2, 4, 8)")
        size = (target, max(1, int(round(height * target / width))))
    if min(size) < MIN_SIDE:
        raise GsVqError(f"image {path} would be {size[0]}x{size[1]} pixels at -r {resolution}: too small to train on")
    return size


def load_size(path: Path, resolution: int) -> Tuple[int, int, bool]:
    """(width, height) the image ``path`` loads at for ``-r resolution``, and whether auto (-1)
    brought it down to 1600 pixels wide (then :func:`note_large_images` prints Inria's note)."""
    width, height = image_size(path)
    return (*target_size(width, height, resolution, path), resolution == AUTO and width > AUTO_WIDTH)


def note_large_images(rescaled: Sequence[bool]) -> None:
    """Print Inria's note once per scene when auto resolution rescaled any of its images."""
    if any(rescaled):
        print(LARGE_IMAGE_NOTE)


def scale_K(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Scale a [3, 3] pixel intrinsics matrix for an image resized by (sx, sy) along (x, y)."""
    K = np.array(K, dtype=np.float64)
    K[0, :] *= sx
    K[1, :] *= sy
    return K


def _open(path: Path, load: bool = True) -> Image.Image:
    """PIL image of ``path`` (pixels decoded with ``load``, else the header only); GsVqError if unreadable."""
    if not path.is_file():
        raise GsVqError(f"image file not found: {path}")
    try:
        im = Image.open(path)
        if load:
            im.load()
    except Exception as e:  # PIL raises several types for unreadable files
        raise GsVqError(f"cannot read image {path}: {error_text(e)}")
    return im


def image_size(path: Path) -> Tuple[int, int]:
    """(width, height) of an image file from its header; GsVqError if unreadable or degenerate."""
    path = Path(path)
    with _open(path, load=False) as im:
        width, height = im.size
        _check_mode(im, path)
    if min(width, height) < MIN_SIDE:
        raise GsVqError(f"image {path} is {width}x{height} pixels: too small to train on")
    return width, height


def _check_mode(im: Image.Image, path: Path) -> None:
    """Grey, palette, RGB(A) pass; other pixel formats are a one-line error naming the file."""
    if im.mode in ("I", "F"):
        raise GsVqError(f"image {path} has 32-bit {'float' if im.mode == 'F' else 'integer'} "
                        "pixels: convert it to 8-bit RGB(A)")
    if im.mode not in GREY_MODES + ALPHA_MODES + ("RGB",):
        raise GsVqError(f"image {path} has {len(im.getbands())} channels ({im.mode}): expected grey, RGB or RGBA")


def _to_rgb_or_rgba(im: Image.Image, path: Path) -> Image.Image:
    _check_mode(im, path)
    if im.mode.startswith("I;16"):  # 16-bit grey: keep the top 8 bits (convert() clips)
        im = Image.fromarray((np.asarray(im).astype(np.uint32) >> 8).astype(np.uint8), mode="L")
    has_alpha = im.mode in ALPHA_MODES or "transparency" in im.info
    return im.convert("RGBA" if has_alpha else "RGB") if im.mode not in ("RGB", "RGBA") else im


def _cache_file(src: Path, tag: str, cache_root: Path) -> Path:
    folder = hashlib.sha1(str(src.parent.absolute()).encode()).hexdigest()[:16]
    return cache_root / "images" / folder / tag / (src.name + ".png")


def content_key(path: Path) -> str:
    """``<size>-<BLAKE2b-128 of the bytes>`` of a file: what a cached copy was made from."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"{path.stat().st_size}-{h.hexdigest()}"


def cached_image(path: Path, tag: str, make: Callable[[], np.ndarray], cache_root: Optional[Path] = None) -> np.ndarray:
    """uint8 ``[H, W, 3|4]`` pixels derived from the image ``path`` by ``make()``, cached under ``tag``
    (the recipe's name) while ``path``'s content is unchanged (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise GsVqError(f"image file not found: {path}")
    cached = _cache_file(path, tag, cache_root or default_cache_root())
    key = content_key(path)
    if cached.is_file():
        try:
            with Image.open(cached) as im:
                if im.info.get(CACHE_KEY) == key:
                    return np.array(_to_rgb_or_rgba(im, cached))
        except Exception:
            pass  # a damaged cache entry is simply rebuilt
    pixels = make()
    try:
        with atomic_path(str(cached)) as tmp:
            info = PngInfo()
            info.add_text(CACHE_KEY, key)
            Image.fromarray(pixels).save(tmp, format="PNG", compress_level=1, pnginfo=info)
    except OSError:
        pass  # an unwritable cache only costs speed
    return pixels


def read_sized(path: Path, size: Tuple[int, int], cache_root: Optional[Path] = None) -> np.ndarray:
    """An image as uint8 ``[H, W, 3]`` or ``[H, W, 4]`` (RGBA), resized to ``size`` = (W, H) if it is
    not that size already (cached, see the module docstring)."""
    path = Path(path)

    def decode() -> np.ndarray:
        im = _to_rgb_or_rgba(_open(path), path)
        return np.array(im if im.size == tuple(size) else im.resize(tuple(size), Image.BICUBIC))  # writable

    if image_size(path) == tuple(size):
        return decode()
    return cached_image(path, f"{size[0]}x{size[1]}", decode, cache_root)


def read_image(path: Path, resolution: int = 1, cache_root: Optional[Path] = None) -> np.ndarray:
    """Read an image at ``-r resolution`` (see the module docstring) as uint8 ``[H, W, 3|4]``."""
    path = Path(path)
    return read_sized(path, target_size(*image_size(path), resolution, path), cache_root)


def read_mask(path: Path, size: Tuple[int, int]) -> Tensor:
    """Read an object-id mask as int64 ``[H, W]`` resized with nearest neighbour to ``size=(W, H)``."""
    im = _open(Path(path))
    if im.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
        raise GsVqError(f"mask {path} must be a single-channel id image, got PIL mode {im.mode}")
    ids = np.asarray(im).astype(np.int64)  # [H0, W0]
    w, h = size
    h0, w0 = ids.shape
    if (w, h) != (w0, h0):
        ys = np.minimum(((np.arange(h) + 0.5) * h0 / h).astype(np.int64), h0 - 1)
        xs = np.minimum(((np.arange(w) + 0.5) * w0 / w).astype(np.int64), w0 - 1)
        ids = ids[ys[:, None], xs[None, :]]
    return torch.from_numpy(np.ascontiguousarray(ids))


def parallel_map(fn: Callable[[T], R], items: Sequence[T]) -> List[R]:
    """``[fn(x) for x in items]`` on a few threads (PIL decoding and zlib release the GIL)."""
    workers = min(8, os.cpu_count() or 1, max(1, len(items)))
    if workers == 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))
