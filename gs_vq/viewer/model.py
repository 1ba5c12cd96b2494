"""What the viewer shows: a model's splats, its facts, its scene's cameras and its semantic head.

:func:`load_viewer_model` reads a model folder (``MODEL/point_cloud.ply``, or ``compressed.ply``
when that is all there is; ``cfg.yaml`` for the scene; ``results.json`` for the scores;
``semantic_head.pt`` for text queries) or a lone ply / viewer export (``--ply FILE``).
"""

import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
from torch import Tensor

from ..errors import GsVqError

from ..files import read_json
from ..model_dir import model_splat_file
from ..splats import sh_degree_of


@dataclass
class ViewCamera:
    """A pose to start from: camera-to-world (OpenCV axes) and vertical field of view."""

    name: str
    c2w: np.ndarray  # [4, 4] float64
    fov_y: float  # radians


@dataclass
class ViewerModel:
    """Everything the render function and the panel need; tensors live on ``device``."""

    splats: Dict[str, Tensor]
    device: str
    facts: Dict[str, object]  # shown in the panel (see :func:`facts_markdown`)
    cameras: List[ViewCamera] = field(default_factory=list)  # the scene's training views
    background: Optional[List[float]] = None  # RGB in [0, 1]; None = black
    head: Optional[object] = None  # gs_vq.semantics.head.SemanticHead, for semantic models
    up: Optional[np.ndarray] = None  # [3] world up direction (mean of the cameras' up axes)

    @property
    def num_gaussians(self) -> int:
        return int(self.splats["means"].shape[0])

    @property
    def sh_degree(self) -> int:
        return sh_degree_of(self.splats)

    @property
    def semantic(self) -> bool:
        return self.head is not None and "features" in self.splats

    def center(self) -> np.ndarray:
        """[3] median of the Gaussians' centres (robust to floaters)."""
        return self.splats["means"].median(dim=0).values.double().cpu().numpy()


def file_kind(path: str) -> str:
    """A short description of a splat file's format, for the panel."""
    from ..io.compressed import is_compressed_ply
    from ..io.viewer_formats import is_supersplat_ply

    low = path.lower()
    if low.endswith(".spz"):
        return "Niantic .spz"
    if low.endswith(".splat"):
        return "antimatter15 .splat"
    if is_compressed_ply(path):
        return "gs-vq's own compressed ply (opens only in gs-vq)"
    if is_supersplat_ply(path):
        return "SuperSplat compressed ply"
    return "standard 3DGS ply"


def scene_cameras(model_path: str):
    """``(cameras, background, note)`` from the scene in ``MODEL/cfg.yaml``; no cameras (and a note
    saying why) when the model has no cfg.yaml or its scene folder is gone."""
    from ..model_dir import load_model_scene, model_config
    from ..data import background_of

    if not os.path.isfile(os.path.join(model_path, "cfg.yaml")):
        return [], None, "no cfg.yaml: default camera"
    cfg = model_config(model_path)
    try:
        scene = load_model_scene(model_path, cfg)
    except GsVqError as e:
        return [], [1.0] * 3 if cfg.white_background else None, f"scene not loaded ({e}): default camera"
    cams = []
    for cam in scene.train_cameras:
        fov_y = 2.0 * math.atan(cam.height / (2.0 * float(cam.K[1, 1])))
        cams.append(ViewCamera(cam.name, cam.camtoworld.double().numpy(), fov_y))
    return cams, background_of(scene), f"{len(cams)} training views of {scene.source_path}"


def load_viewer_model(model_path: Optional[str] = None, ply: Optional[str] = None,
                      device: str = "cpu") -> ViewerModel:
    """Load what ``view.py`` shows (see the module docstring). Raises GsVqError on bad input."""
    from ..io import load_splats

    path = model_splat_file(model_path, ply)
    splats = load_splats(path, device=device)
    n = int(splats["means"].shape[0])
    if n == 0:
        raise GsVqError(f"{path} holds no Gaussians")
    size = os.path.getsize(path)
    facts: Dict[str, object] = {"file": os.path.basename(path), "format": file_kind(path), "bytes": size,
                                "gaussians": n, "bits_per_gaussian": 8.0 * size / n}
    cameras, background, head = [], None, None
    if model_path and os.path.isdir(model_path):
        cameras, background, facts["cameras"] = scene_cameras(model_path)
        results = os.path.join(model_path, "results.json")
        if os.path.isfile(results):
            r = read_json(results)
            if isinstance(r, dict) and r.get("psnr") is not None:
                facts["psnr"] = float(r["psnr"])
                facts["psnr_of"] = os.path.basename(str(r.get("rendered_ply") or "point_cloud.ply"))
                facts["psnr_split"] = r.get("split", "test")
        if "features" in splats:
            from ..semantics.head import HEAD_NAME, SemanticHead

            if os.path.isfile(os.path.join(model_path, HEAD_NAME)):
                head = SemanticHead.load(os.path.join(model_path, HEAD_NAME), device)
                facts["semantic"] = f"{splats['features'].shape[1]} features per Gaussian, " \
                                    f"{head.codebook.num_codes}-entry codebook ({head.encoder.name})"
    up = None
    if cameras:
        ups = np.stack([-c.c2w[:3, 1] for c in cameras])  # OpenCV y points down
        up = ups.mean(axis=0)
        up = up / max(np.linalg.norm(up), 1e-9)
    return ViewerModel(splats, device, facts, cameras, background, head, up)


def facts_markdown(facts: Dict[str, object]) -> str:
    """The panel's model facts as markdown lines."""
    lines = [f"**{facts['file']}** — {facts['format']}",
             f"Gaussians: **{facts['gaussians']:,}**",
             f"File size: **{int(facts['bytes']) / 1e6:.2f} MB** ({facts['bits_per_gaussian']:.1f} bits per Gaussian)"]
    if "psnr" in facts:
        lines.append(f"PSNR: **{facts['psnr']:.2f} dB** ({facts['psnr_split']} views, {facts['psnr_of']}, "
                     f"results.json)")
    if "semantic" in facts:
        lines.append(f"Semantics: {facts['semantic']}")
    if "cameras" in facts:
        lines.append(f"Cameras: {facts['cameras']}")
    return "  \n".join(lines)
