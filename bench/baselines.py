"""Post-hoc codecs applied to a finished plain model, for the rate–distortion benchmark.

Each takes the plain model's splats (raw tensors, as in MODEL/point_cloud.ply) and an output
folder, writes its files there, and returns ``(splats decoded from those files, {part: bytes})``:

* :func:`posthoc_vq`: gs-vq's own codebooks fitted after training, no quantization-aware
  training (Compact3D's post-hoc ablation); the preset's pruning and SH dropping included.
* :func:`png_compression`: gsplat 1.5.3's ``PngCompression`` as published (16-bit PNG means,
  8-bit PNG attributes, k-means shN with 6-bit centroids). Two parts cannot run here and are
  replaced: its k-means uses ``torchpq`` (CUDA only), so shN goes through gs-vq's k-means (L2
  instead of torchpq's Manhattan distance). gsplat's 65,536 clusters are sized for scenes of
  millions of Gaussians; at the CPU scenes' 20k-60k they would be one cluster per Gaussian (324
  bits per Gaussian on lego), so they are capped at N/16, the cap gs-vq's own codebooks use.
  and PLAS sorting is not on PyPI, so the Gaussians are put in Morton order of their positions
  instead (PLAS sorts by all attributes; its images compress better).
* :func:`supersplat`: gsplat's ``export_splats(format="ply_compressed")`` (SuperSplat's format).
"""

import contextlib
import io
import os
import sys
import types
from typing import Dict, Tuple

import numpy as np
import torch
from torch import Tensor

from gs_vq.io.compressed import describe_compressed, load_compressed_splats
from gs_vq.io.streams import PositionGrid, morton_encode
from gs_vq.io.viewer_formats import load_supersplat_ply
from gs_vq.plugins import TrainContext
from gs_vq.quant import kmeans

Splats = Dict[str, Tensor]


def posthoc_vq(splats: Splats, vq_plugin, scene, out_dir: str) -> Tuple[Splats, Dict[str, int]]:
    """Fit ``vq_plugin`` (a fresh :class:`gs_vq.vq.VQPlugin` from a preset) on ``splats`` without
    training, and write ``out_dir/compressed.ply``."""
    os.makedirs(out_dir, exist_ok=True)
    params = torch.nn.ParameterDict({k: torch.nn.Parameter(v.detach().clone(), requires_grad=False)
                                     for k, v in splats.items()})
    vq_plugin.initialize(params, {}, TrainContext(total_steps=None, scene=scene))
    vq_plugin.step_pre_forward(vq_plugin.schedule.vq_start, params, {})  # fit
    if vq_plugin.prunes_insignificant:
        vq_plugin.prune_insignificant(params, {})
    vq_plugin.export(out_dir, params)
    path = os.path.join(out_dir, "compressed.ply")
    bits = describe_compressed(path)["bits_per_gaussian"]
    n = int(params["means"].shape[0])
    parts = {k: int(round(v * n / 8)) for k, v in bits.items() if k != "total"}
    return load_compressed_splats(path), parts


class _KMeans:
    """Stand-in for ``torchpq.clustering.KMeans`` (CUDA only) backed by gs-vq's k-means: the
    interface gsplat's ``_compress_kmeans`` uses (``fit(x [D, N]) -> labels [N]``, ``centroids
    [D, K]``)."""

    def __init__(self, n_clusters: int, distance: str = "euclidean", verbose: bool = False, **_):
        self.n_clusters = n_clusters
        self.centroids = None

    def fit(self, x: Tensor) -> Tensor:
        points = x.t().contiguous().float()  # [N, D]
        k = max(1, min(self.n_clusters, points.shape[0] // 16))
        r = kmeans(points, k, iters=10, seed=0)
        self.centroids = r.centroids.t()  # [D, K]
        return r.assignments


def _with_cpu_kmeans():
    """Install the stand-in as ``torchpq.clustering`` (only when torchpq is missing)."""
    try:
        import torchpq.clustering  # noqa: F401
        return
    except ImportError:
        pass
    pkg, mod = types.ModuleType("torchpq"), types.ModuleType("torchpq.clustering")
    mod.KMeans = _KMeans
    pkg.clustering = mod
    sys.modules.setdefault("torchpq", pkg)
    sys.modules.setdefault("torchpq.clustering", mod)


def morton_order(means: Tensor) -> Tensor:
    """[N] permutation putting the Gaussians in Morton order of their positions (21 bits/axis)."""
    m = means.detach().cpu().numpy()
    grid = PositionGrid.fit(m, 21)
    return torch.from_numpy(np.argsort(morton_encode(grid.quantize(m), grid.bits), kind="stable"))


def png_compression(splats: Splats, out_dir: str) -> Tuple[Splats, Dict[str, int]]:
    """gsplat's PngCompression (CPU k-means, Morton order for PLAS) into ``out_dir``."""
    from gsplat.compression import PngCompression

    _with_cpu_kmeans()
    os.makedirs(out_dir, exist_ok=True)
    keys = ("means", "scales", "quats", "opacities", "sh0", "shN")
    order = morton_order(splats["means"])
    data = {k: splats[k].detach().cpu().float()[order].clone() for k in keys if k in splats}
    with contextlib.redirect_stdout(io.StringIO()):  # its "removed N Gaussians" notice
        PngCompression(use_sort=False, verbose=False).compress(out_dir, data)
    decoded = PngCompression(use_sort=False, verbose=False).decompress(out_dir)
    parts: Dict[str, int] = {}
    for f in sorted(os.listdir(out_dir)):
        part = f.split(".")[0].split("_")[0] if not f.startswith("meta") else "header"
        parts[part] = parts.get(part, 0) + os.path.getsize(os.path.join(out_dir, f))
    return {k: v.float() for k, v in decoded.items()}, parts


def supersplat(splats: Splats, out_dir: str) -> Tuple[Splats, Dict[str, int]]:
    """gsplat's ``export_splats(format="ply_compressed")`` into ``out_dir/supersplat.ply``."""
    from gsplat import export_splats

    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "supersplat.ply")
    s = {k: v.detach().cpu().float() for k, v in splats.items()}
    export_splats(means=s["means"], scales=s["scales"], quats=s["quats"], opacities=s["opacities"],
                  sh0=s["sh0"], shN=s["shN"], format="ply_compressed", save_to=path)
    return load_supersplat_ply(path), {"file": os.path.getsize(path)}
