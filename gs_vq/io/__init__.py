"""Scene files: the standard 3DGS ply and gs-vq's compressed ply."""

from typing import Dict

from torch import Tensor

from .ply import load_ply, save_ply


def load_splats(path: str, device: str = "cpu") -> Dict[str, Tensor]:
    """Load raw splats from a standard 3DGS ply or a gs-vq compressed ply (detected from the header)."""
    from .compressed import is_compressed_ply, load_compressed_splats

    if is_compressed_ply(path):
        return load_compressed_splats(path, device=device)
    return load_ply(path, device=device)


__all__ = ["load_ply", "save_ply", "load_splats"]
