"""Scene files: the standard 3DGS ply, gs-vq's compressed ply, and the web viewers' formats."""

from typing import Dict

from torch import Tensor

from .ply import load_ply, save_ply


def load_splats(path: str, device: str = "cpu") -> Dict[str, Tensor]:
    """Load raw splats from a standard 3DGS ply, a gs-vq compressed ply (detected from the header),
    or a viewer export: SuperSplat's ``.compressed.ply`` (header), ``.splat`` or ``.spz`` (suffix)."""
    from .compressed import is_compressed_ply, load_compressed_splats
    from .viewer_formats import is_supersplat_ply, load_splat_file, load_supersplat_ply

    if path.lower().endswith(".spz"):
        from .spz import load_spz

        return load_spz(path, device=device)
    if path.lower().endswith(".splat"):
        return load_splat_file(path, device=device)
    if is_compressed_ply(path):
        return load_compressed_splats(path, device=device)
    if is_supersplat_ply(path):
        return load_supersplat_ply(path, device=device)
    return load_ply(path, device=device)


__all__ = ["load_ply", "save_ply", "load_splats"]
