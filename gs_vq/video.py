"""Camera-path videos (``render.py --traj``): render a path through the training cameras to an mp4.

The mp4 is H.264 (yuv420p) through imageio-ffmpeg, which ships its own ffmpeg binary; it is written
beside the target and renamed onto it when complete (:func:`gs_vq.files.atomic_path`).
"""

import os
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from .camera_path import PathConfig, camera_path
from .errors import GsVqError
from .files import atomic_path, output_file
from .splats import render_splats, sh_degree_of


@dataclass
class VideoConfig:
    """One camera-path video."""

    path: PathConfig = field(default_factory=PathConfig)
    fps: int = 30  # frames per second
    quality: int = 8  # imageio-ffmpeg's 0 (smallest) .. 10 (best)


def check_video_path(path: str) -> str:
    """``path`` if an mp4 can be written there, else a one-line GsVqError (a folder, another
    extension, a parent that is a file)."""
    output_file(path, "the video path")  # not a folder, no file where its folder would be
    if os.path.splitext(path)[1].lower() != ".mp4":
        raise GsVqError(f"the video path must end in .mp4: {path}")
    return path


def scene_bounds(means: Tensor, c2w: np.ndarray, max_points: int = 100_000) -> Tuple[float, float]:
    """(near, far) depths in world units: the 0.1 and 99.9 percentiles of the Gaussians' depths in
    front of the cameras (LLFF's bounds, from the model instead of a point cloud)."""
    pts = means.detach().float().cpu().numpy()  # [N, 3]
    if len(pts) > max_points:
        pts = pts[np.random.default_rng(0).choice(len(pts), max_points, replace=False)]
    w2c = np.linalg.inv(c2w)  # [C, 4, 4]
    depths = np.einsum("cj,nj->cn", w2c[:, 2, :3], pts) + w2c[:, 2, 3:4]  # [C, N]
    depths = depths[depths > 1e-6]
    if depths.size == 0:
        return 0.01, 1.0  # gsplat's parser default without a point cloud
    return float(np.percentile(depths, 0.1)), float(np.percentile(depths, 99.9))


def path_of_cameras(cameras: List, splats: Dict[str, Tensor], cfg: PathConfig) -> np.ndarray:
    """[F, 4, 4] camera-to-world along ``cfg.kind`` through ``cameras`` (in name order)."""
    keys = sorted(cameras, key=lambda c: c.name)
    c2w = np.stack([c.camtoworld.double().numpy() for c in keys])  # [N, 4, 4]
    try:
        return camera_path(c2w, cfg, scene_bounds(splats["means"], c2w))
    except (ValueError, np.linalg.LinAlgError) as e:
        raise GsVqError(f"cannot make the {cfg.kind} path through {len(keys)} cameras: {e}") from None


@torch.no_grad()
def render_video(splats: Dict[str, Tensor], cameras: List, out_path: str, cfg: VideoConfig,
                 background: Optional[Sequence[float]], device: str, backend: str = "auto",
                 progress: bool = True) -> Dict:
    """Render ``cfg.path`` through ``cameras`` (the training views) to the mp4 ``out_path``.

    Every frame uses the first camera's intrinsics and size, cropped to even width and height
    (H.264's yuv420p). Returns ``{"video", "frames", "width", "height", "fps", "seconds"}``.
    """
    import imageio_ffmpeg

    check_video_path(out_path)
    if not cameras:
        raise GsVqError("the scene has no training cameras to make a path through")
    c2w = path_of_cameras(cameras, splats, cfg.path)  # [F, 4, 4]
    first = sorted(cameras, key=lambda c: c.name)[0]
    width, height = first.width - first.width % 2, first.height - first.height % 2
    if width < 2 or height < 2:
        raise GsVqError(f"the cameras are too small for a video: {first.width}x{first.height}")
    K = first.K.float().to(device)[None]  # [1, 3, 3]
    viewmats = torch.linalg.inv(torch.from_numpy(c2w)).float().to(device)  # [F, 4, 4]
    sh_degree = sh_degree_of(splats)
    start = time.perf_counter()
    with atomic_path(out_path) as tmp:
        writer = imageio_ffmpeg.write_frames(tmp, (width, height), fps=cfg.fps, codec="libx264",
                                             pix_fmt_in="rgb24", pix_fmt_out="yuv420p", quality=cfg.quality,
                                             macro_block_size=1, ffmpeg_log_level="error")
        writer.send(None)  # start ffmpeg
        try:
            for i in tqdm(range(len(viewmats)), disable=not progress, desc=f"video ({cfg.path.kind})",
                          dynamic_ncols=True):
                out = render_splats(splats, viewmats[i:i + 1], K, width, height, sh_degree, background,
                                    backend=backend)
                rgb = (out.rgb[0].clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)  # [H, W, 3]
                writer.send(np.ascontiguousarray(rgb.cpu().numpy()))
        finally:
            writer.close()
    return {"video": os.path.abspath(out_path), "traj": cfg.path.kind, "frames": len(viewmats), "width": width,
            "height": height, "fps": cfg.fps, "seconds": round(time.perf_counter() - start, 2)}
