"""Inria 3DGS's model-folder layout, written beside gs-vq's own files.

Inria's ``render.py`` / ``metrics.py`` and SIBR's viewer (``-m MODEL``) read:

- ``cfg_args``: the ``Namespace(...)`` repr of the training arguments (parsed back with ``eval``);
- ``cameras.json``: one entry per training camera (``utils/camera_utils.py: camera_to_JSON``);
- ``point_cloud/iteration_<N>/point_cloud.ply``: the model after step N (a hard link to gs-vq's
  ``point_cloud.ply`` for the final step, a copy where links are not possible);
- ``<split>/ours_<N>/{renders,gt}/<image>.png``: renders and ground truth under equal names, the
  one folder ``metrics.py -m MODEL`` takes as a method (``render.py`` writes its renders there, and
  its query and PCA pictures beside them in ``ours_<N>/``: nothing else lives in ``<split>/``).

Every file is written atomically (temp file, then rename), as the rest of gs-vq writes.
"""

import json
import os
import shutil
from typing import Dict, List, Optional

from ..data.cameras import image_stem
from ..files import atomic_path

ITERATION_DIR = os.path.join("point_cloud", "iteration_{}")
PLY_NAME = "point_cloud.ply"


def iteration_ply(model_path: str, step: int) -> str:
    """``MODEL/point_cloud/iteration_<step>/point_cloud.ply``."""
    return os.path.join(model_path, ITERATION_DIR.format(int(step)), PLY_NAME)


def link_or_copy(src: str, dst: str) -> str:
    """Make ``dst`` the same file as ``src``: a hard link, else a copy. Atomic either way (a temp
    name beside ``dst``, renamed onto it). Returns ``"link"`` or ``"copy"``."""
    with atomic_path(dst) as tmp:
        os.remove(tmp)
        try:
            os.link(src, tmp)
            kind = "link"
        except OSError:  # another file system, or links not allowed
            shutil.copyfile(src, tmp)
            kind = "copy"
    return kind


def cfg_args_text(cfg) -> str:
    """Inria's ``cfg_args``: ``repr(argparse.Namespace(...))`` of the fields its ``render.py``
    (ModelParams) and SIBR read. Field values come from the gs-vq config ``cfg``."""
    from argparse import Namespace

    resolution = cfg.resolution if cfg.resolution is not None else -1
    ns = Namespace(sh_degree=int(cfg.sh_degree),
                   source_path=os.path.abspath(cfg.source_path) if cfg.source_path else "",
                   model_path=os.path.abspath(cfg.model_path),
                   images=cfg.images or "images", depths="", resolution=int(resolution),
                   white_background=bool(cfg.white_background),
                   train_test_exp=False, data_device="cuda", eval=bool(cfg.eval))
    return repr(ns)


def write_cfg_args(cfg, model_path: str) -> str:
    path = os.path.join(model_path, "cfg_args")
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(cfg_args_text(cfg))
    return path


def camera_entry(index: int, cam) -> Dict:
    """One ``cameras.json`` entry as Inria's ``camera_to_JSON`` writes it: ``position`` the camera
    centre in world units, ``rotation`` the camera-to-world 3x3 rotation (rows), ``fx``/``fy`` in
    pixels, ``img_name`` the image file's name without extension."""
    c2w = cam.camtoworld.double()  # [4, 4]
    return {"id": index, "img_name": image_stem(cam),
            "width": int(cam.width), "height": int(cam.height),
            "position": [float(x) for x in c2w[:3, 3]],
            "rotation": [[float(x) for x in row] for row in c2w[:3, :3]],
            "fy": float(cam.K[1, 1]), "fx": float(cam.K[0, 0])}


def write_cameras_json(cameras: List, model_path: str) -> str:
    """``MODEL/cameras.json`` for ``cameras`` (the training cameras, in order)."""
    path = os.path.join(model_path, "cameras.json")
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump([camera_entry(i, c) for i, c in enumerate(cameras)], f)
    return path


def write_layout(cfg, cameras: List, model_path: str, step: int) -> Dict[str, str]:
    """After training: ``cfg_args``, ``cameras.json`` and the final step's iteration ply (a hard
    link to ``MODEL/point_cloud.ply``). Returns ``{file: "link" | "copy" | "written"}``."""
    write_cfg_args(cfg, model_path)
    write_cameras_json(cameras, model_path)
    kind = link_or_copy(os.path.join(model_path, PLY_NAME), iteration_ply(model_path, step))
    return {"cfg_args": "written", "cameras.json": "written", os.path.relpath(iteration_ply(model_path, step),
                                                                             model_path): kind}


def render_dir(model_path: str, split: str, step: Optional[int]) -> str:
    """``MODEL/<split>/ours_<step>`` (``ours`` when the step is not known): where ``render.py``
    writes a split's renders, Inria's method folder."""
    return os.path.join(model_path, split, f"ours_{int(step)}" if step is not None else "ours")


def clear_renders(model_path: str, split: str) -> List[str]:
    """Remove what an earlier render of the split left in ``MODEL/<split>/`` (every ``ours*`` folder,
    and the ``renders``, ``gt``, ``queries``, ``semantic``, ``eval_queries`` folders that gs-vq
    wrote there before), so that Inria's ``metrics.py`` finds one method. Returns the names."""
    base = os.path.join(model_path, split)
    removed = []
    for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        if os.path.isdir(os.path.join(base, name)) and (name.startswith("ours") or name in OLD_RENDER_FOLDERS):
            shutil.rmtree(os.path.join(base, name))
            removed.append(f"{split}/{name}")
    return removed


OLD_RENDER_FOLDERS = ("renders", "gt", "queries", "semantic", "eval_queries")  # gs-vq's <split>/ before


def remove_stale_layout(model_path: str) -> List[str]:
    """Before a fresh run: remove an earlier run's ``cfg_args``, ``cameras.json``,
    ``point_cloud/iteration_*`` folders (they would describe the earlier model) and TensorBoard
    event files in ``tb/`` (curves of two runs would mix). Returns the names."""
    removed = []
    for name in ("cfg_args", "cameras.json"):
        if os.path.isfile(os.path.join(model_path, name)):
            os.remove(os.path.join(model_path, name))
            removed.append(name)
    base = os.path.join(model_path, "point_cloud")
    for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        if name.startswith("iteration_") and os.path.isdir(os.path.join(base, name)):
            shutil.rmtree(os.path.join(base, name))
            removed.append(f"point_cloud/{name}")
    tb = os.path.join(model_path, "tb")
    for name in sorted(os.listdir(tb)) if os.path.isdir(tb) else []:
        if name.startswith("events.out.tfevents.") and os.path.isfile(os.path.join(tb, name)):
            os.remove(os.path.join(tb, name))
            removed.append(f"tb/{name}")
    return removed
