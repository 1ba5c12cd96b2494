"""open_clip models from a local checkpoint, with our own preprocessing (no download, no torchvision).

``open_clip``'s package ``__init__`` imports its torchvision-based image transforms. PyPI's
torchvision wheels are built against CUDA torch and do not import beside a CPU-only torch (and a
broken torchvision also breaks ``transformers``, hence sentence-transformers), so gs-vq installs
open_clip without torchvision and imports only its model code: :func:`open_clip_modules` loads
``open_clip.model`` and ``open_clip.tokenizer`` directly, giving ``open_clip.utils`` a stand-in
for the one torchvision class it names (``FrozenBatchNorm2d``, used only to freeze ResNet towers).
Preprocessing (resize + CLIP mean/std) is done here in torch.
"""

import importlib
import importlib.util
import os
import sys
import types
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import GsVqError

from ..files import read_json

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's dataset mean / std (open_clip.constants)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _torchvision_stub() -> Dict[str, types.ModuleType]:
    """Module objects ``torchvision``, ``torchvision.ops``, ``torchvision.ops.misc`` with a
    ``FrozenBatchNorm2d`` (a BatchNorm2d with frozen statistics) -- all ``open_clip.utils`` needs."""

    class FrozenBatchNorm2d(torch.nn.BatchNorm2d):
        def __init__(self, num_features: int, eps: float = 1e-5):
            super().__init__(num_features, eps=eps, affine=True, track_running_stats=True)
            self.eval()

    root, ops, misc = (types.ModuleType(n) for n in ("torchvision", "torchvision.ops", "torchvision.ops.misc"))
    misc.FrozenBatchNorm2d = FrozenBatchNorm2d
    root.ops, ops.misc = ops, misc
    root.__path__, ops.__path__ = [], []
    return {"torchvision": root, "torchvision.ops": ops, "torchvision.ops.misc": misc}


def _torchvision_works() -> bool:
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        importlib.import_module("torchvision.ops.misc")
        return True
    except Exception:  # a wheel built for another torch raises RuntimeError / OSError on import
        return False


def open_clip_modules() -> Tuple[types.ModuleType, types.ModuleType]:
    """``(open_clip.model, open_clip.tokenizer)``; without a working torchvision, imported without
    open_clip's transforms (its timm and Hugging Face towers are then unavailable)."""
    if "open_clip.model" in sys.modules and "open_clip.tokenizer" in sys.modules:
        return sys.modules["open_clip.model"], sys.modules["open_clip.tokenizer"]
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise GsVqError("open_clip is not installed: pip install --no-deps open-clip-torch && pip install ftfy regex")
    if _torchvision_works():
        import open_clip  # noqa: F401  (the normal package import)
    else:
        if "open_clip" not in sys.modules:  # a bare package object: its __init__ (transforms) is skipped
            pkg = types.ModuleType("open_clip")
            pkg.__path__, pkg.__spec__, pkg.__package__ = list(spec.submodule_search_locations), spec, "open_clip"
            sys.modules["open_clip"] = pkg
        # timm and transformers import torchvision themselves: hide them (open_clip treats them as
        # optional) and give open_clip.utils its one torchvision class, for the imports only
        patch = {"timm": None, "transformers": None, **_torchvision_stub()}
        saved = {name: sys.modules.get(name, _MISSING) for name in patch}
        sys.modules.update(patch)
        try:
            importlib.import_module("open_clip.model")
        except ImportError as e:
            raise GsVqError(f"cannot import open_clip's model code: {e}") from None
        finally:
            for name, module in saved.items():
                if module is _MISSING:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = module
    try:
        tokenizer = importlib.import_module("open_clip.tokenizer")
    except ImportError as e:  # ftfy / regex missing
        raise GsVqError(f"cannot import open_clip's tokenizer ({e}): pip install ftfy regex") from None
    return sys.modules["open_clip.model"], tokenizer


_MISSING = object()


def model_config(name_or_path: str) -> Dict[str, Any]:
    """open_clip model config: a JSON file, or a name from open_clip's ``model_configs/`` (e.g. ViT-B-16)."""
    path = name_or_path
    if not os.path.isfile(path):
        spec = importlib.util.find_spec("open_clip")
        if spec is None or not spec.submodule_search_locations:
            raise GsVqError("open_clip is not installed: pip install --no-deps open-clip-torch && pip install ftfy regex")
        path = os.path.join(spec.submodule_search_locations[0], "model_configs", name_or_path + ".json")
        if not os.path.isfile(path):
            raise GsVqError(f"unknown open_clip model '{name_or_path}': give a name from open_clip's model_configs/ or a JSON config file")
    cfg = read_json(path)
    if not isinstance(cfg, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= set(cfg):
        raise GsVqError(f"{path} is not an open_clip model config (needs embed_dim, vision_cfg, text_cfg)")
    text = cfg["text_cfg"]
    if text.get("hf_model_name") or text.get("hf_tokenizer_name") or cfg["vision_cfg"].get("timm_model_name"):
        raise GsVqError(f"open_clip model '{name_or_path}' uses a Hugging Face / timm tower: only CLIP-style "
                        "models with open_clip's own towers and BPE tokenizer are supported offline")
    return cfg


def read_state_dict(path: str) -> Dict[str, Tensor]:
    """Weights of an open_clip / OpenAI CLIP checkpoint: ``.safetensors``, a torch state dict
    (optionally under ``state_dict``, DDP ``module.`` prefixes allowed) or a TorchScript archive."""
    if not os.path.isfile(path):
        raise GsVqError(f"--clip-checkpoint: no file at {path}")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            sd = load_file(path)
        else:
            try:
                sd = torch.load(path, map_location="cpu", weights_only=True)
            except Exception:
                sd = torch.jit.load(path, map_location="cpu").state_dict()  # OpenAI's released .pt files
    except Exception as e:
        raise GsVqError(f"cannot read CLIP checkpoint {path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not sd:
        raise GsVqError(f"{path} holds no state dict")
    return {(k[7:] if k.startswith("module.") else k): v for k, v in sd.items()}


@dataclass
class ClipBundle:
    """A loaded open_clip model with the facts needed to use it."""

    model: torch.nn.Module  # open_clip.model.CLIP, eval mode, float32
    tokenizer: Any  # open_clip.tokenizer.SimpleTokenizer
    image_size: Tuple[int, int]  # (height, width) the vision tower takes
    embed_dim: int
    mean: Tuple[float, float, float] = CLIP_MEAN
    std: Tuple[float, float, float] = CLIP_STD

    @torch.no_grad()
    def encode_text(self, texts) -> Tensor:
        """``texts`` (list of str) -> ``[T, E]`` float32 unit vectors."""
        device = next(self.model.parameters()).device
        tokens = self.tokenizer(list(texts)).to(device)  # [T, context_length]
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)

    def preprocess(self, images: Tensor, size: Optional[Tuple[int, int]] = None) -> Tensor:
        """``images [B, H, W, 3]`` in [0, 1] -> normalised ``[B, 3, h, w]`` at ``size`` (default
        the tower's input size), bicubic, as CLIP's transform (without its centre crop)."""
        size = size or self.image_size
        x = images.permute(0, 3, 1, 2).float()  # [B, 3, H, W]
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        mean = torch.tensor(self.mean, device=x.device)[None, :, None, None]
        std = torch.tensor(self.std, device=x.device)[None, :, None, None]
        return (x - mean) / std


_LOADED: Dict[Tuple[str, str, str], ClipBundle] = {}


def load_clip(model_name: str, checkpoint: str, device: str = "cpu") -> ClipBundle:
    """Build open_clip model ``model_name`` (config name or JSON file) and load ``checkpoint``
    (a local file; nothing is downloaded). Cached per (model, checkpoint, device)."""
    key = (model_name, os.path.abspath(checkpoint), device)
    if key in _LOADED:
        return _LOADED[key]
    cfg = model_config(model_name)
    oc_model, oc_tokenizer = open_clip_modules()
    kwargs = {k: v for k, v in cfg.items() if k in ("embed_dim", "quick_gelu", "init_logit_bias")}
    try:
        model = oc_model.CLIP(vision_cfg=oc_model.CLIPVisionCfg(**cfg["vision_cfg"]),
                              text_cfg=oc_model.CLIPTextCfg(**cfg["text_cfg"]), **kwargs)
    except TypeError as e:
        raise GsVqError(f"bad open_clip config for '{model_name}': {e}") from None
    sd = read_state_dict(checkpoint)
    for k in ("input_resolution", "context_length", "vocab_size"):  # OpenAI archives carry these
        sd.pop(k, None)
    own = model.state_dict()
    missing = [k for k in own if k not in sd and k != "logit_bias"]
    unexpected = [k for k in sd if k not in own]
    wrong = [k for k in sd if k in own and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        what = (wrong or missing or unexpected)[:3]
        raise GsVqError(f"CLIP checkpoint {checkpoint} does not match model '{model_name}': {len(missing)} missing, "
                        f"{len(unexpected)} unexpected, {len(wrong)} mis-shaped keys (e.g. {', '.join(what)})")
    model.load_state_dict(sd, strict=False)
    model = model.float().eval().to(device)
    size = cfg["vision_cfg"].get("image_size", 224)
    size = (size, size) if isinstance(size, int) else tuple(size)
    ctx = cfg["text_cfg"].get("context_length", 77)
    pre = cfg.get("preprocess_cfg", {})
    bundle = ClipBundle(model, oc_tokenizer.SimpleTokenizer(context_length=ctx), size, int(cfg["embed_dim"]),
                        tuple(pre.get("mean", CLIP_MEAN)), tuple(pre.get("std", CLIP_STD)))
    _LOADED[key] = bundle
    return bundle
