"""From a trained VQ model to MODEL/compressed.ply (and optionally SuperSplat's compressed ply).

:func:`snap_splats` rounds the full-precision tensors the file does not store exactly (means to
the position grid, opacities to their bins, unquantized attributes to ``raw_precision``) in
place, so that after ``VQPlugin.finalize`` the trained model, MODEL/point_cloud.ply and the
loaded compressed.ply render the same scene.
"""

import os
from typing import Any, Dict, List, Optional, Set

import numpy as np
import torch

from ..io import streams as S
from ..io.compressed import LOSSLESS, CodedAttribute, CompressedScene, write_compressed
from ..splats import sh_degree_of
from .codes import CODES_KEY, SH_DEGREES_KEY
from .config import KNOWN_ATTRIBUTES

COMPRESSED_NAME = "compressed.ply"
STANDARD_NAME = "point_cloud.ply"
SUPERSPLAT_NAME = "supersplat.compressed.ply"  # gsplat's SuperSplat export, with vq.export_supersplat


@torch.no_grad()
def snap_splats(splats, cfg, quantized: Set[str], grid: Optional[S.PositionGrid]) -> None:
    """Round means to ``grid`` (None: keep them, lossless), opacities and unquantized attributes
    in place (:func:`gs_vq.vq.positions.position_grid` chooses the grid)."""
    means = splats["means"]
    if grid is not None:
        m = means.detach().cpu().numpy()
        means.data.copy_(torch.from_numpy(grid.dequantize(grid.quantize(m))))
    opac = splats["opacities"]
    if cfg.opacity_bits != LOSSLESS:
        o = opac.detach().cpu().numpy()
        q = S.quantize_opacity(o, cfg.opacity_bits)
        opac.data.copy_(torch.from_numpy(S.dequantize_opacity(q, cfg.opacity_bits)).reshape(opac.shape))
    if cfg.raw_precision == "float16":
        for name in raw_attributes(splats, quantized):
            splats[name].data.copy_(splats[name].detach().half().float())


OWN_SECTIONS = ("means", "opacities", CODES_KEY, SH_DEGREES_KEY)  # stored in sections of their own


def raw_attributes(splats, quantized: Set[str]) -> List[str]:
    """Splat attributes stored unquantized (float16/32) in compressed.ply: the known ones that are
    not quantized, then every other per-Gaussian float tensor (another plugin's parameter), so
    that nothing a plugin adds is silently dropped."""
    n = splats["means"].shape[0]
    known = [k for k in KNOWN_ATTRIBUTES if k in splats.keys() and k not in quantized]
    other = [k for k, v in splats.items() if k not in KNOWN_ATTRIBUTES and k not in OWN_SECTIONS
             and k not in quantized and v.is_floating_point() and v.ndim >= 1 and v.shape[0] == n]
    return known + other


def compressed_scene(plugin, splats) -> CompressedScene:
    """The plugin's current model as a :class:`CompressedScene` (Gaussians in splat order)."""
    codes = splats[CODES_KEY].detach().cpu()
    slots = plugin.state.slots
    kept = {k: r.cpu() for k in KNOWN_ATTRIBUTES if (r := plugin.rows(splats, k)) is not None}  # [N] bool
    attributes = [
        CodedAttribute(name, slot.shape, [t.detach().cpu().float() for t in slot.tables()],
                       codes[:, slot.cols], slot.combine, slot.precision, kept.get(name))
        for name, slot in slots.items()
    ]
    raw = {k: splats[k].detach().cpu().float() for k in raw_attributes(splats, set(slots))}
    raw = {k: v * kept[k].reshape(-1, *[1] * (v.ndim - 1)) if k in kept else v for k, v in raw.items()}
    meta = {"sh_degree": sh_degree_of(splats),
            "generator": "gs_vq.vq"}
    return CompressedScene(
        means=splats["means"].detach().cpu().float(),
        opacities=splats["opacities"].detach().cpu().float().reshape(-1),
        attributes=attributes, raw=raw, raw_precision=plugin.raw_precision, meta=meta,
        grid=plugin.state.grid, opacity_bits=plugin.opacity_bits)


def standard_ply_bytes(splats) -> int:
    """Size of the standard 3DGS ply of ``splats`` (as gs_vq.io.ply writes it), computed."""
    n = splats["means"].shape[0]
    floats = 3 + 3 + 3 + 1 + 3 + 4  # xyz, normals, f_dc, opacity, scales, rots
    if "shN" in splats.keys():
        floats += int(np.prod(splats["shN"].shape[1:]))
    if "features" in splats.keys():
        floats += int(np.prod(splats["features"].shape[1:]))
    header = 80 + 24 * floats  # "property float name\n" lines
    return header + 4 * floats * n


def export_compressed(plugin, splats, model_path: str) -> Dict[str, Any]:
    """Write MODEL/compressed.ply; returns ``compressed_bytes``, ``compression_ratio`` (standard
    ply bytes / compressed bytes) and ``bits_per_gaussian`` of each part."""
    path = os.path.join(model_path, COMPRESSED_NAME)
    report = write_compressed(path, compressed_scene(plugin, splats), pos_bits=plugin.pos_bits,
                              opacity_bits=plugin.opacity_bits)
    std_path = os.path.join(model_path, STANDARD_NAME)
    std = os.path.getsize(std_path) if os.path.isfile(std_path) else standard_ply_bytes(splats)
    out = {
        "compressed_bytes": report["bytes"],
        "compression_ratio": round(std / max(report["bytes"], 1), 3),
        "bits_per_gaussian": report["bits_per_gaussian"],
        "vq_num_gaussians": report["count"],
        "vq_pruned": plugin.state.num_pruned,
        "vq_sh_dropped": plugin.state.num_sh_dropped,
        "vq_seconds": {k: round(v, 2) for k, v in plugin.timings().items()},
    }
    if plugin.state.grid is not None:  # largest error of a stored position per axis (world units)
        bound = plugin.state.grid.error_bound(splats["means"].detach().cpu().numpy())  # [N, 3]
        out["position_precision"] = [float(v) for v in bound.max(axis=0)] if len(bound) else [0.0] * 3
        out["position_bits"] = plugin.state.grid.bits
    if plugin.state.pos_drops:  # bits tried -> PSNR drop on the training views (dB)
        out["position_drops"] = {str(k): round(v, 4) for k, v in sorted(plugin.state.pos_drops.items())}
    if plugin.export_supersplat:
        out["supersplat_bytes"] = export_supersplat(plugin, splats, model_path)
    return out


def export_supersplat(plugin, splats, model_path: str) -> int:
    """gsplat's ``export_splats(format="ply_compressed")`` of the rendered (decoded) splats."""
    from gsplat import export_splats

    rendered = {**{k: v.detach() for k, v in splats.items()},
                **{k: v.detach() for k, v in plugin.quantized(splats).items()}}
    path = os.path.join(model_path, SUPERSPLAT_NAME)
    export_splats(means=rendered["means"], scales=rendered["scales"], quats=rendered["quats"],
                  opacities=rendered["opacities"], sh0=rendered["sh0"], shN=rendered["shN"],
                  format="ply_compressed", save_to=path)
    return os.path.getsize(path)
