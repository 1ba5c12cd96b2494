"""Image and mask reading, ``-r`` downscaling with an on-disk cache, compositing, K scaling.

Downscaled images are written once to ``<cache>/images/<sha1 of the image's folder>/r<factor>/``
(never next to the data, which may be read-only) and reused while the source file's content is
unchanged: each cached PNG records the source's size and BLAKE2b hash (a text chunk), so an image
replaced with its mtime kept (``cp -p``, ``rsync -a``) is resized again. The default cache root
is ``$GS_VQ_CACHE``, else ``$XDG_CACHE_HOME/gs_vq``, else ``~/.cache/gs_vq``.

Resizing follows gsplat / Inria 3DGS: PIL bicubic (alpha-premultiplied for RGBA) to
``(round(W / r), round(H / r))``; K is scaled by the actual size ratio per axis. Masks (object ids)
are subsampled with nearest neighbour, never interpolated, and are not cached (cheap).
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

from gs_vq.errors import GsVqError, atomic_path, error_text

RESOLUTIONS = (1, 2, 4, 8)
CACHE_KEY = "gs_vq_source"  # PNG text chunk of a cached image: content_key of its source

T = TypeVar("T")
R = TypeVar("R")


def check_resolution(factor: int) -> int:
    """Validate the ``-r/--resolution`` downscale factor (1, 2, 4 or 8)."""
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor not in RESOLUTIONS:
        allowed = ", ".join(map(str, RESOLUTIONS))
        raise GsVqError(f"resolution must be one of {allowed} (a downscale factor), got {factor!r}")
    return int(factor)


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


def scale_K(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Scale a [3, 3] pixel intrinsics matrix for an image resized by (sx, sy) along (x, y)."""
    K = np.array(K, dtype=np.float64)
    K[0, :] *= sx
    K[1, :] *= sy
    return K


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise GsVqError(f"image file not found: {path}")
    try:
        im = Image.open(path)
        im.load()
    except Exception as e:  # PIL raises several types for unreadable files
        raise GsVqError(f"cannot read image {path}: {error_text(e)}")
    return im


def _to_rgb_or_rgba(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):  # 16-bit grey: keep the top 8 bits (convert() clips)
        im = Image.fromarray((np.asarray(im).astype(np.uint32) >> 8).astype(np.uint8), mode="L")
    elif im.mode in ("I", "F"):
        raise GsVqError(f"image {getattr(im, 'filename', '')} has 32-bit {'float' if im.mode == 'F' else 'integer'} "
                        "pixels: convert it to 8-bit RGB(A)")
    has_alpha = im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
    return im.convert("RGBA" if has_alpha else "RGB") if im.mode not in ("RGB", "RGBA") else im


def _cache_file(src: Path, factor: int, cache_root: Path) -> Path:
    folder = hashlib.sha1(str(src.parent.absolute()).encode()).hexdigest()[:16]
    return cache_root / "images" / folder / f"r{factor}" / (src.name + ".png")


def content_key(path: Path) -> str:
    """``<size>-<BLAKE2b-128 of the bytes>`` of a file: what a cached copy was made from."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"{path.stat().st_size}-{h.hexdigest()}"


def read_image(path: Path, factor: int = 1, cache_root: Optional[Path] = None) -> np.ndarray:
    """Read an image, downscaled by ``factor``, as uint8 ``[H, W, 3]`` or ``[H, W, 4]`` (RGBA).

    For ``factor > 1`` the resized image is cached under ``cache_root`` (see module docstring).
    """
    path = Path(path)
    if factor == 1:
        return np.asarray(_to_rgb_or_rgba(_open(path)))
    cached = _cache_file(path, factor, cache_root or default_cache_root())
    if not path.is_file():
        raise GsVqError(f"image file not found: {path}")
    key = content_key(path)
    if cached.is_file():
        try:
            with Image.open(cached) as im:
                if im.info.get(CACHE_KEY) == key:
                    return np.asarray(_to_rgb_or_rgba(im))
        except Exception:
            pass  # a damaged cache entry is simply rebuilt
    im = _to_rgb_or_rgba(_open(path))
    im = im.resize(scaled_size(im.width, im.height, factor), Image.BICUBIC)
    try:
        with atomic_path(str(cached)) as tmp:
            info = PngInfo()
            info.add_text(CACHE_KEY, key)
            im.save(tmp, format="PNG", compress_level=1, pnginfo=info)
    except OSError:
        pass  # an unwritable cache only costs speed
    return np.asarray(im)


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


def composite(pixels: np.ndarray, white_background: bool) -> Tuple[Tensor, Optional[Tensor]]:
    """uint8 RGB(A) ``[H, W, 3|4]`` -> (float32 ``[H, W, 3]`` composited, alpha ``[H, W]`` or None).

    numpy, not torch: it runs on the loader threads, where torch's own thread pool oversubscribes.
    """
    rgb = pixels[..., :3].astype(np.float32) * np.float32(1 / 255)  # [H, W, 3]
    if pixels.shape[-1] == 3:
        return torch.from_numpy(rgb), None
    alpha = pixels[..., 3:].astype(np.float32) * np.float32(1 / 255)  # [H, W, 1]
    rgb *= alpha
    if white_background:
        rgb += 1.0 - alpha
    return torch.from_numpy(rgb), torch.from_numpy(np.ascontiguousarray(alpha[..., 0]))


def parallel_map(fn: Callable[[T], R], items: Sequence[T]) -> List[R]:
    """``[fn(x) for x in items]`` on a few threads (PIL decoding and zlib release the GIL)."""
    workers = min(8, os.cpu_count() or 1, max(1, len(items)))
    if workers == 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))
