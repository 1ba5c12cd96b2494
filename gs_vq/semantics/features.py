"""2D semantic feature maps: one ``[h, w, D]`` float16 ``.npy`` per view, plus ``meta.json``.

Sources (``meta["source"]``):

- ``labels``: every pixel of an object mask gets the text embedding of that object's label
  (``masks/`` + ``labels.json``; the structure LangSplat builds from SAM masks and CLIP). Ids are
  sampled at each map pixel's centre (nearest), so maps hold exact label embeddings.
- ``clip``: dense open_clip image features (:mod:`gs_vq.semantics.dense`), from a local checkpoint.

``meta.json`` records the label texts (``texts``, labels source), the text encoder (:class:`~gs_vq.semantics.encoders.EncoderSpec`) so queries
are embedded in the same space, the dimension ``dim``, how to sample maps (``interp``) and, per
view, the file, the map size ``[h, w]`` and the image size ``[H, W]`` it was made from.

CLI: ``python -m gs_vq.cli.features -s SCENE [--features DIR] [--source labels|clip] ...``
"""

import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from ..errors import GsVqError

from ..files import atomic_path, read_json
from .labels_json import label_table
from .encoders import MINILM_NAME, EncoderSpec, TextEncoder, encode_texts, load_text_encoder

META_NAME = "meta.json"
FORMAT_VERSION = 1


# ---- label maps -----------------------------------------------------------------------------
def map_size(height: int, width: int, downscale: int) -> Tuple[int, int]:
    """Feature-map size for an ``height x width`` image: ``(max(1, H // s), max(1, W // s))``."""
    if downscale < 1:
        raise GsVqError(f"--downscale must be >= 1, got {downscale}")
    return max(1, height // downscale), max(1, width // downscale)


def sample_centres(mask: Tensor, size: Tuple[int, int]) -> Tensor:
    """Nearest-neighbour resample of an id map ``[H, W]`` to ``size`` at the output pixel centres."""
    H, W = mask.shape
    rows = ((torch.arange(size[0]) + 0.5) * H / size[0]).long().clamp_(max=H - 1)  # [h]
    cols = ((torch.arange(size[1]) + 0.5) * W / size[1]).long().clamp_(max=W - 1)  # [w]
    return mask[rows][:, cols]


def label_map(mask: Tensor, ids: Sequence[int], table: Tensor, size: Tuple[int, int], view: str = "") -> Tensor:
    """``mask [H, W]`` object ids -> ``[h, w, D]`` label embeddings (``table [L, D]`` rows follow ``ids``)."""
    small = sample_centres(mask.long(), size)  # [h, w]
    lut = torch.full((int(max(max(ids), small.max().item())) + 1,), -1, dtype=torch.long)
    lut[torch.as_tensor(list(ids))] = torch.arange(len(ids))
    rows = lut[small.clamp_min(0)]  # [h, w] row of table, -1 = unknown id
    if (small < 0).any() or (rows < 0).any():
        bad = int(small[(rows < 0) | (small < 0)][0])
        raise GsVqError(f"mask of view {view or '?'} holds object id {bad}, which labels.json does not name")
    return table[rows]  # [h, w, D]


# ---- storage --------------------------------------------------------------------------------
def view_file(name: str) -> str:
    """File name of a view's map: the camera name with path separators and odd characters replaced."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) + ".npy"


def default_features_dir(source_path: str, tag: str = "labels") -> str:
    """``<gs_vq cache>/features/<scene name>-<hash of its path>/<tag>``: data sets are often
    read-only (and shared), so derived maps go to the cache, like the downscaled images."""
    from ..data import default_cache_root

    source = os.path.abspath(source_path)
    digest = hashlib.sha1(source.encode()).hexdigest()[:10]
    return str(default_cache_root() / "features" / f"{os.path.basename(source)}-{digest}" / tag)


def write_features(out_dir: str, maps: Iterable[Tuple[str, Tensor, Tuple[int, int]]], meta: Dict) -> Dict:
    """Write ``(view name, map [h, w, D], image size (H, W))`` items as float16 ``.npy`` + meta.json.

    meta.json is written last (atomically), so a folder with a meta.json is complete. Returns it.
    """
    os.makedirs(out_dir, exist_ok=True)
    views: Dict[str, Dict] = {}
    dim = None
    for name, fmap, image_size in maps:
        if fmap.ndim != 3 or (dim is not None and fmap.shape[-1] != dim):
            raise GsVqError(f"feature map of view {name} has shape {tuple(fmap.shape)}, expected [h, w, {dim or 'D'}]")
        dim = fmap.shape[-1]
        fname = view_file(name)
        with atomic_path(os.path.join(out_dir, fname)) as tmp, open(tmp, "wb") as f:
            np.save(f, fmap.detach().cpu().numpy().astype(np.float16))
        views[name] = {"file": fname, "size": [int(fmap.shape[0]), int(fmap.shape[1])],
                       "image_size": [int(image_size[0]), int(image_size[1])]}
    if not views:
        raise GsVqError("no views to compute feature maps for")
    meta = {"version": FORMAT_VERSION, **meta, "dim": int(dim), "views": views}
    with atomic_path(os.path.join(out_dir, META_NAME)) as tmp, open(tmp, "w") as f:
        json.dump(meta, f, indent=1)
    return meta


def read_meta(features_dir: str) -> Dict:
    path = os.path.join(features_dir, META_NAME)
    if not os.path.isfile(path):
        raise GsVqError(f"no feature maps in {features_dir} (no {META_NAME}): run python -m gs_vq.cli.features")
    meta = read_json(path)
    if not isinstance(meta, dict) or not {"encoder", "dim", "views"} <= set(meta):
        raise GsVqError(f"{path} is not a gs-vq feature meta file (needs encoder, dim, views)")
    return meta


@dataclass
class FeatureMaps:
    """Loaded, checked feature maps of a set of views (kept as float16 on the CPU)."""

    maps: Dict[str, Tensor]  # view name -> [h, w, D] float16
    encoder: EncoderSpec
    dim: int
    interp: str  # "nearest" (label maps) | "bilinear" (dense CLIP maps)
    meta: Dict

    def __getitem__(self, name: str) -> Tensor:
        """``[h, w, D]`` float32 map of view ``name``."""
        if name not in self.maps:
            raise GsVqError(f"no feature map for view {name}")
        return self.maps[name].float()

    def __len__(self) -> int:
        return len(self.maps)


def load_features(features_dir: str, cameras: Sequence, dim: Optional[int] = None) -> FeatureMaps:
    """Load the maps of ``cameras`` (objects with ``name``, ``width``, ``height``) from ``features_dir``.

    One-line :class:`GsVqError` for a missing folder or view, a map whose dimension is not
    ``dim`` (or meta's), or whose size does not fit its camera's image (aspect ratio off by more
    than one map pixel).
    """
    meta = read_meta(features_dir)
    encoder = EncoderSpec.from_dict(meta["encoder"])
    D = int(meta["dim"])
    if encoder.dim != D:
        raise GsVqError(f"{features_dir}: meta dim {D} differs from its encoder's dimension {encoder.dim}")
    if dim is not None and dim != D:
        raise GsVqError(f"feature maps in {features_dir} are {D}-d but {dim}-d were expected")
    maps: Dict[str, Tensor] = {}
    for cam in cameras:
        view = meta["views"].get(cam.name)
        if view is None:
            raise GsVqError(f"{features_dir} has no feature map for view {cam.name}: recompute the features for this scene")
        path = os.path.join(features_dir, view["file"])
        try:
            arr = np.load(path, mmap_mode=None, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise GsVqError(f"cannot read feature map {path}: {e}") from None
        if arr.ndim != 3 or arr.shape[-1] != D:
            raise GsVqError(f"feature map {path} has shape {arr.shape}, expected [h, w, {D}]")
        h, w = arr.shape[:2]
        if abs(h * cam.width / w - cam.height) > cam.height / h + 1e-6:
            raise GsVqError(f"feature map {path} is {h}x{w} but view {cam.name} is {cam.height}x{cam.width}: "
                            "its aspect ratio does not match")
        if not np.isfinite(arr).all():
            raise GsVqError(f"feature map {path} holds NaN or infinite values")
        maps[cam.name] = torch.from_numpy(arr.astype(np.float16))
    return FeatureMaps(maps, encoder, D, meta.get("interp", "bilinear"), meta)


# ---- computing ------------------------------------------------------------------------------
def label_feature_maps(cameras: Sequence, labels: Dict, encoder: TextEncoder, downscale: int):
    """Yield ``(name, [h, w, D] map, (H, W))`` for cameras with masks, from ``labels.json`` texts."""
    ids, texts = label_table(labels)
    table = encode_texts(encoder, texts)  # [L, D]
    for cam in cameras:
        if cam.mask is None:
            raise GsVqError(f"view {cam.name} has no object mask (masks/ folder) for --source labels")
        yield cam.name, label_map(cam.mask, ids, table, map_size(cam.height, cam.width, downscale), cam.name), \
            (cam.height, cam.width)


def clip_feature_maps(cameras: Sequence, bundle, downscale: int, mode: str):
    """Yield ``(name, [h, w, E] map, (H, W))`` of dense open_clip features."""
    from .dense import dense_features

    for cam in cameras:
        yield cam.name, dense_features(bundle, cam.image, map_size(cam.height, cam.width, downscale), mode), \
            (cam.height, cam.width)


def compute_label_features(scene, out_dir: str, downscale: int = 4, split: str = "train",
                           encoder: Optional[TextEncoder] = None) -> Dict:
    """Label maps of ``scene``'s ``split`` views (train | test | all) into ``out_dir``; returns meta."""
    if not scene.labels:
        raise GsVqError(f"scene {scene.source_path} has no labels.json: use --source clip")
    encoder = encoder or load_text_encoder(EncoderSpec("minilm", MINILM_NAME, 384))
    meta = {"source": "labels", "encoder": encoder.spec.to_dict(), "interp": "nearest", "downscale": downscale,
            "scene": scene.source_path, "texts": label_table(scene.labels)[1]}
    return write_features(out_dir, label_feature_maps(_split(scene, split), scene.labels, encoder, downscale), meta)


def compute_clip_features(scene, out_dir: str, model: str, checkpoint: str, downscale: int = 4,
                          mode: str = "patch", split: str = "train", device: str = "cpu") -> Dict:
    """Dense open_clip maps of ``scene``'s ``split`` views into ``out_dir``; returns meta."""
    from .clip_model import load_clip
    from .encoders import OpenClipTextEncoder

    bundle = load_clip(model, checkpoint, device)
    spec = OpenClipTextEncoder(model, checkpoint, device).spec
    meta = {"source": "clip", "encoder": spec.to_dict(), "interp": "bilinear", "downscale": downscale,
            "clip_mode": mode, "scene": scene.source_path}
    return write_features(out_dir, clip_feature_maps(_split(scene, split), bundle, downscale, mode), meta)


def _split(scene, split: str) -> List:
    if split not in ("train", "test", "all"):
        raise GsVqError(f"--split must be train, test or all, got {split}")
    return {"train": scene.train_cameras, "test": scene.test_cameras,
            "all": scene.train_cameras + scene.test_cameras}[split]
