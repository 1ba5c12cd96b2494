"""Render a split of a scene and score it: PSNR, SSIM, LPIPS, written as PNGs and a dict."""

import os
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from .data.cameras import image_stem, camera_lens_batch
from .files import atomic_path
from .metrics import LPIPS, lpips_metric, psnr, ssim_value
from .splats import camera_batch, render_splats, sh_degree_of


def save_png(img: Tensor, path: str) -> None:
    """Write ``img`` ([H,W,3] or [H,W] in [0,1], or uint8) as a PNG, atomically."""
    arr = img.detach().cpu()
    if arr.dtype != torch.uint8:
        arr = (arr.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(arr.numpy()).save(tmp, format="PNG")


@torch.no_grad()
def render_views(splats: Dict[str, Tensor], cameras: List, background: Optional[Sequence[float]],
                 device: str, backend: str = "auto", extra: Optional[Tensor] = None):
    """Yield ``(camera, RenderOutput)`` for each camera, one at a time (bounded memory)."""
    sh_degree = sh_degree_of(splats)
    for cam in cameras:
        viewmats, Ks, _ = camera_batch([cam], device)
        yield cam, render_splats(splats, viewmats, Ks, cam.width, cam.height, sh_degree, background,
                                 extra=extra, backend=backend, **camera_lens_batch([cam], device))


def evaluate(splats: Dict[str, Tensor], cameras: List, background: Optional[Sequence[float]], device: str,
             out_dir: Optional[str] = None, backend: str = "auto", progress: bool = True,
             lpips_net: str = "vgg", lpips: Optional[LPIPS] = None) -> Dict[str, float]:
    """Mean PSNR (dB) / SSIM / LPIPS over ``cameras``; LPIPS with backbone ``lpips_net`` (or the
    given ``lpips``) is None when its weights are not installed, and with ``progress`` one line on
    stderr says why.

    With ``out_dir``, writes ``renders/<name>.png`` and ``gt/<name>.png`` there.
    """
    lpips = lpips if lpips is not None else lpips_metric(lpips_net)
    if lpips.metric is None and progress:
        print(f"note: LPIPS ({lpips.net}) not computed, null in the results: {lpips.reason}", file=sys.stderr)
    scores: Dict[str, list] = {"psnr": [], "ssim": [], "lpips": []}
    views = render_views(splats, cameras, background, device, backend)
    for cam, out in tqdm(views, total=len(cameras), disable=not progress, desc="render", dynamic_ncols=True):
        pred = out.rgb[0].clamp(0, 1)  # [H, W, 3] on the render device: PSNR, SSIM, LPIPS computed there
        gt = cam.image.to(pred.device, non_blocking=True)  # [H, W, 3]
        scores["psnr"].append(psnr(pred, gt))
        scores["ssim"].append(ssim_value(pred, gt))
        scores["lpips"].append(lpips(pred, gt))
        if out_dir:
            stem = image_stem(cam)
            save_png(pred, os.path.join(out_dir, "renders", stem + ".png"))
            save_png(gt, os.path.join(out_dir, "gt", stem + ".png"))
    mean = lambda v: None if not v or v[0] is None else float(np.mean(v))  # noqa: E731
    return {k: mean(v) for k, v in scores.items()}
