"""Small synthetic models for the viewer's tests: coloured blobs, optionally with semantic features.

:func:`semantic_model` writes a model folder that ``view.py`` opens as a semantic model:
``point_cloud.ply`` with ``sem_*`` features (one-hot per object) and ``semantic_head.pt`` whose
codebook entries are the text encoder's embeddings of the objects' names, so a query for an
object's name lights up exactly that object.
"""

import math
from pathlib import Path
from typing import Dict

import torch

from gs_vq.io import save_ply
from gs_vq.splats import rgb_to_sh

OBJECTS = {  # name -> (centre, colour)
    "red ball": ((-0.9, 0.0, 0.0), (0.9, 0.15, 0.1)),
    "green box": ((0.0, 0.0, 0.3), (0.15, 0.8, 0.2)),
    "blue cup": ((0.9, 0.0, 0.0), (0.15, 0.3, 0.9)),
    "wooden table": (None, (0.6, 0.45, 0.3)),  # a floor under the three (y points down)
}


def blob_splats(per_object: int = 400, seed: int = 0) -> Dict[str, torch.Tensor]:
    """Raw splats of three blobs on a floor (the plane y = 0.3; y points down, as in COLMAP scenes),
    with one-hot ``features [N, 4]``."""
    g = torch.Generator().manual_seed(seed)
    means, rgb, ids = [], [], []
    for i, (name, (centre, colour)) in enumerate(OBJECTS.items()):
        if centre is None:
            u, v = torch.meshgrid(torch.linspace(-2, 2, 24), torch.linspace(-1.5, 1.5, 18), indexing="ij")
            pts = torch.stack([u.flatten(), torch.full((u.numel(),), 0.3), v.flatten()], dim=-1)
        else:
            pts = torch.tensor(centre) + 0.22 * torch.randn(per_object, 3, generator=g)
        means.append(pts)
        rgb.append(torch.tensor(colour).expand(len(pts), 3))
        ids += [i] * len(pts)
    means, rgb, ids = torch.cat(means), torch.cat(rgb), torch.tensor(ids)
    n = len(ids)
    scales = torch.where(ids[:, None] == 3, math.log(0.12), math.log(0.06)).expand(n, 3).clone()
    return {"means": means, "scales": scales, "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
            "opacities": torch.full((n,), 3.0), "sh0": rgb_to_sh(rgb)[:, None, :].clone(),
            "shN": torch.zeros(n, 3, 3), "features": torch.nn.functional.one_hot(ids, 4).float()}


def semantic_model(folder: Path, encoder=None) -> Path:
    """Write a semantic model folder (see the module docstring). ``encoder``: a text encoder with
    ``.spec`` and ``.encode`` (default: the packaged MiniLM, which ``view.py`` then loads too)."""
    from gs_vq.semantics.codebook import SemanticCodebook
    from gs_vq.semantics.encoders import EncoderSpec, MINILM_NAME, encode_texts, load_text_encoder
    from gs_vq.semantics.head import SemanticHead

    folder.mkdir(parents=True, exist_ok=True)
    save_ply(blob_splats(), str(folder / "point_cloud.ply"))
    encoder = encoder or load_text_encoder(EncoderSpec("minilm", MINILM_NAME, 384))
    codes = encode_texts(encoder, list(OBJECTS))  # [4, D]
    cb = SemanticCodebook(4, 4, codes.shape[1])
    with torch.no_grad():
        cb.decoder.weight.copy_(8.0 * torch.eye(4))
        cb.decoder.bias.zero_()
        cb.codes.copy_(codes)
    SemanticHead(cb, encoder.spec, torch.ones(4, dtype=torch.bool)).save(str(folder / "semantic_head.pt"))
    return folder


def front_pose(fov_deg: float = 50.0):
    """``(c2w [4, 4] numpy, fov_y)`` of a camera above and in front of the blobs (at -z, looking
    at the origin; the red ball is on the left of the image, the blue cup on the right)."""
    import numpy as np

    from gs_vq.viewer.app import look_at_c2w

    return look_at_c2w(np.array([0.0, -1.6, -3.0]), np.zeros(3), np.array([0.0, -1.0, 0.0])), math.radians(fov_deg)
