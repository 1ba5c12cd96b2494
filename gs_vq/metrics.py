"""Image quality metrics: PSNR, SSIM (pytorch-msssim) and LPIPS (torchmetrics, when weights exist).

All functions take images as ``[H, W, 3]`` or ``[B, H, W, 3]`` float tensors in [0, 1].
"""

import os
from typing import Optional

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim as _ssim
from torch import Tensor


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


_BACKBONES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}


def _backbone_weights_present(net: str) -> bool:
    """True when torchvision imports and the ImageNet backbone is already in torch's hub cache."""
    try:
        import torchvision  # noqa: F401
    except Exception:
        return False
    path = os.path.join(torch.hub.get_dir(), "checkpoints", _BACKBONES.get(net, ""))
    return os.path.isfile(path)


class LPIPS:
    """LPIPS (VGG, as in 3DGS papers) through torchmetrics, or None when its weights are not
    installed locally: nothing is downloaded at run time."""

    def __init__(self, net: str = "vgg"):
        self.metric = None
        if not _backbone_weights_present(net):
            return  # constructing the metric would try to download them
        try:
            from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

            self.metric = LearnedPerceptualImagePatchSimilarity(net_type=net, normalize=True)
        except Exception:  # no torchvision, or weights absent and no network
            self.metric = None

    def __call__(self, pred: Tensor, gt: Tensor) -> Optional[float]:
        if self.metric is None:
            return None
        with torch.no_grad():
            return self.metric(_nchw(pred.clamp(0, 1)).cpu(), _nchw(gt).cpu()).item()
