"""Image quality metrics: PSNR, SSIM (pytorch-msssim) and LPIPS (torchmetrics, alex or vgg, when weights exist).

All functions take images as ``[H, W, 3]`` or ``[B, H, W, 3]`` float tensors in [0, 1].
"""

import os
from functools import lru_cache
from typing import Optional

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim as _ssim
from torch import Tensor

from .errors import GsVqError


def _nchw(img: Tensor) -> Tensor:
    img = img if img.dim() == 4 else img[None]
    return img.permute(0, 3, 1, 2)  # [B, 3, H, W]


def psnr(pred: Tensor, gt: Tensor) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1]."""
    mse = F.mse_loss(pred.clamp(0, 1), gt).item()
    return float("inf") if mse == 0 else -10.0 * torch.log10(torch.tensor(mse)).item()


def ssim_value(pred: Tensor, gt: Tensor) -> float:
    """SSIM (11x11 Gaussian window, as in 3DGS evaluations)."""
    return _ssim(_nchw(pred.clamp(0, 1)), _nchw(gt), data_range=1.0, size_average=True).item()


def dssim_loss(pred: Tensor, gt: Tensor) -> Tensor:
    """1 - SSIM, differentiable: the D-SSIM term of the 3DGS loss."""
    return 1.0 - _ssim(_nchw(pred), _nchw(gt), data_range=1.0, size_average=True)


LPIPS_NETS = ("alex", "vgg")  # gsplat's simple_trainer reports alex (its default), Inria's metrics.py vgg
# torchvision's ImageNet backbones, as torch.hub caches them; the linear heads ship with torchmetrics
_BACKBONES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}


def lpips_unavailable(net: str) -> Optional[str]:
    """Why LPIPS with backbone ``net`` cannot be computed here, or None when it can: torchvision
    imports and the ImageNet backbone is already in torch's hub cache (nothing is downloaded)."""
    try:
        import torchvision  # noqa: F401
    except Exception:
        return "torchvision is not installed"
    path = os.path.join(torch.hub.get_dir(), "checkpoints", _BACKBONES[net])
    if not os.path.isfile(path):
        return f"the {net} ImageNet weights are not in {path} (nothing is downloaded at run time)"
    return None


class LPIPS:
    """LPIPS through torchmetrics' ``LearnedPerceptualImagePatchSimilarity``, built as gsplat's
    simple_trainer builds it: ``alex`` on inputs scaled to [-1, 1] (``normalize=True``), ``vgg``
    on the [0, 1] images as given (``normalize=False``, which gsplat notes equals the official 3DGS
    evaluation). Calls return None when the weights are not installed locally; ``reason`` then
    says why (one line).
    """

    def __init__(self, net: str = "vgg"):
        if net not in LPIPS_NETS:
            raise GsVqError(f"unknown LPIPS network {net!r}: choose one of {', '.join(LPIPS_NETS)}")
        self.net = net
        self.metric = None
        self.reason = lpips_unavailable(net)
        if self.reason is not None:
            return  # constructing the metric would try to download the backbone
        try:
            from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

            self.metric = LearnedPerceptualImagePatchSimilarity(net_type=net, normalize=net == "alex")
        except Exception as e:  # a corrupt cached file, an incompatible torchvision
            lines = str(e).strip().splitlines()
            self.reason = f"{type(e).__name__}: {lines[-1] if lines else ''}"
            self.metric = None

    def __call__(self, pred: Tensor, gt: Tensor) -> Optional[float]:
        """LPIPS (lower is closer) of ``pred`` against ``gt``, [H, W, 3] in [0, 1]; None without weights."""
        if self.metric is None:
            return None
        with torch.no_grad():
            self.metric = self.metric.to(pred.device)  # on the images' device (a no-op once there)
            self.metric.reset()  # one image's score, not the running mean over every call
            return self.metric(_nchw(pred.clamp(0, 1)), _nchw(gt.clamp(0, 1).to(pred.device))).item()


@lru_cache(maxsize=None)
def lpips_metric(net: str = "vgg") -> LPIPS:
    """The process's one :class:`LPIPS` for ``net`` (its backbone is loaded once)."""
    return LPIPS(net)
