"""Write per-Gaussian semantic labels into a model's files (:func:`label_model`; CLI ``python -m gs_vq.cli.labelfiles -m MODEL``).

- ``point_cloud.ply``: float properties ``labels`` and ``labelconf`` (viewers ignore them; plys written
  before these names called them ``label`` / ``label_conf``, which :func:`gs_vq.io.load_ply` still reads).
- ``compressed.ply``: two coded attributes through the file's generic codebook mechanism, no
  format change: ``labels`` (a ``[K, 1]`` codebook holding the entry numbers, one index per
  Gaussian, ``ceil(log2 K_used)`` bits before entropy coding) and ``labelconf`` (``2^CONF_BITS``
  float16 levels, one index per Gaussian). Older readers decode them as two extra ``[N, 1]``
  attributes; :func:`gs_vq.semantics.labels.stored_labels` turns them back into labels.

Each file's labels are computed from that file's own Gaussians (the compressed features are
quantized, so its labels may differ slightly from the ply's). ``train.py --semantic`` runs this
after export.
"""

import os
import time
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from ..io import load_ply, save_ply
from .labels import CONF_KEY, LABEL_KEY, compute_labels
from .head import HEAD_NAME, SemanticHead

CONF_BITS = 4  # confidence levels stored in compressed.ply: 2^CONF_BITS


def label_attributes(labels: Tensor, conf: Tensor, num_codes: int) -> List:
    """The two :class:`~gs_vq.io.compressed.CodedAttribute` of ``labels [N]`` and ``conf [N]``."""
    from ..io.compressed import CodedAttribute

    levels = 2 ** CONF_BITS
    table = ((torch.arange(levels, dtype=torch.float32) + 0.5) / levels)[:, None]  # [L, 1] bin centres
    q = (conf.detach().cpu().float().clamp(0, 1) * levels).long().clamp(max=levels - 1)  # [N]
    codes = torch.arange(num_codes, dtype=torch.float32)[:, None]  # [K, 1]: entry k decodes to k
    return [CodedAttribute(LABEL_KEY, (1,), [codes], labels.detach().cpu().long()[:, None], "sum", "float32"),
            CodedAttribute(CONF_KEY, (1,), [table], q[:, None], "sum", "float16")]


def label_compressed(path: str, head: SemanticHead, cameras: Optional[Sequence], method: str = "lift",
                     downscale: Optional[int] = None, backend: str = "auto") -> Dict:
    """Compute labels of a compressed.ply's Gaussians and rewrite it with them. Returns size facts."""
    from ..io.compressed import LOSSLESS, read_compressed, write_compressed

    scene = read_compressed(path)
    scene.attributes = [a for a in scene.attributes if a.name not in (LABEL_KEY, CONF_KEY)]
    splats = {k: v for k, v in scene.to_splats().items()}
    labels, conf = compute_labels(splats, head, cameras, method, downscale, backend)
    scene.attributes += label_attributes(labels.cpu(), conf.cpu(), head.codebook.num_codes)
    pos_bits = scene.grid.bits if scene.grid is not None else LOSSLESS
    info = write_compressed(path, scene, pos_bits=pos_bits, opacity_bits=scene.opacity_bits)
    bits = info["bits_per_gaussian"]
    label_bits = {f"{key}_bits": round(bits.get(f"{key}.index", 0.0) + bits.get(f"{key}.codebook", 0.0), 4)
                  for key in (LABEL_KEY, CONF_KEY)}  # labels_bits, labelconf_bits
    return {"bytes": info["bytes"], **label_bits}


def label_ply(path: str, head: SemanticHead, cameras: Optional[Sequence], method: str = "lift",
              downscale: Optional[int] = None, backend: str = "auto") -> Dict:
    """Compute labels of a standard ply's Gaussians and rewrite it with ``labels`` / ``labelconf``."""
    splats = load_ply(path)
    labels, conf = compute_labels(splats, head, cameras, method, downscale, backend)
    splats[LABEL_KEY], splats[CONF_KEY] = labels.cpu(), conf.cpu()
    return {"bytes": save_ply(splats, path)}


def label_model(model_path: str, cameras: Optional[Sequence], method: str = "lift", downscale: Optional[int] = None,
                backend: str = "auto") -> Dict:
    """Label ``point_cloud.ply`` and (if present) ``compressed.ply`` of a semantic model folder."""
    head = SemanticHead.load(os.path.join(model_path, HEAD_NAME))
    out: Dict = {"label_method": method}
    for name, fn in (("point_cloud.ply", label_ply), ("compressed.ply", label_compressed)):
        path = os.path.join(model_path, name)
        if os.path.isfile(path):
            t0 = time.process_time()
            out[name] = {**fn(path, head, cameras, method, downscale, backend),
                         "label_cpu_seconds": round(time.process_time() - t0, 2)}
    return out
