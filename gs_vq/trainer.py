"""The training loop behind ``train.py``: gsplat's recipe on our rasterizer, with plugin hooks.

Per step (one camera): plugins' ``step_pre_forward`` -> render (plugins' ``splats_to_render`` and
``extra_channels``) -> L1 + ``ssim_lambda`` D-SSIM (+ regularisers, + plugins' ``loss``) ->
backward -> Adam -> the gsplat strategy's ``step_post_backward`` (densify / prune / relocate) ->
plugins' ``step_post_backward``. The trainer knows plugins only through the
:class:`gs_vq.plugins.Plugin` hooks.
"""

import json
import os
import random
import time
from typing import Callable, Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import strategy as strategies
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, save_config
from .data import Scene
from .data.cameras import background_of, camera_lens_batch
from .data.placement import place_images
from .errors import GsVqError
from .files import atomic_path, existing_file
from .health import check_every, check_finite
from .io.ply import load_ply, save_ply
from .metrics import dssim_loss
from .plugins import Plugin, TrainContext, declared
from .render import resolve_backend, resolve_device
from .splats import camera_batch, init_splats, make_optimizers, make_param_dict, render_splats

CKPT_NAME = "ckpt.pt"


def build_plugins(cfg: TrainConfig) -> Dict[str, Plugin]:
    """Fresh instances of the config's plugins (no run state), in the order their hooks run:
    ascending ``order`` (plugins that add parameters first), then config order."""
    items = sorted(cfg.plugins.items(), key=lambda kv: getattr(kv[1], "order", 0))
    return {name: plugin.fresh() for name, plugin in items}


class Trainer:
    """Owns splats, optimizers, the densification strategy and plugins for one scene."""

    def __init__(self, cfg: TrainConfig, scene: Scene, model_path: str):
        self.cfg, self.scene, self.model_path = cfg, scene, model_path
        self.device = resolve_device(cfg.device)
        if camera_lens_batch(scene.train_cameras, "cpu") and resolve_backend(cfg.backend, self.device == "cuda") == "gsplat":
            raise GsVqError("--lens raw renders through the lens on the CPU backends only; on CUDA train with "
                            "--lens undistort (the default)")
        self.check_every = check_every(self.device)  # steps between two health checks (host syncs)
        self.images_at = place_images(scene.train_cameras, self.device)  # on the GPU when they fit
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        self.background = background_of(scene)
        self.step = 0
        self.train_seconds = 0.0
        ckpt_path = os.path.join(model_path, CKPT_NAME)
        ckpt = None
        if cfg.resume:
            if not os.path.isfile(ckpt_path):
                raise GsVqError(f"--resume: no checkpoint at {ckpt_path}")
            ckpt = load_checkpoint(ckpt_path, self.device, cfg, resume=True)
            tensors = ckpt["splats"]
        elif cfg.start_checkpoint:
            tensors = self._start_tensors(cfg.start_checkpoint)
        else:
            tensors = self._initial_tensors()
        self.splats = make_param_dict(tensors, self.device)
        self.optimizers = make_optimizers(self.splats, self._lrs())
        self.strategy = cfg.strategy
        self.strategy.check_sanity(self.splats, self.optimizers)
        self.strategy_state = strategies.initialize_state(self.strategy, scene.scene_scale)
        self.plugins = build_plugins(cfg)
        ctx = TrainContext(total_steps=cfg.iterations, refine_stop=strategies.refine_stop(self.strategy),
                           strategy_state=self.strategy_state, scene=scene, device=self.device,
                           resolution=cfg.resolution, backend=cfg.backend)
        for p in self.plugins.values():
            p.initialize(self.splats, self.optimizers, ctx)
        if ckpt is not None:
            self._restore(ckpt)

    # ---- set-up -------------------------------------------------------------------------------
    def _initial_tensors(self) -> Dict[str, torch.Tensor]:
        points, rgbs = self.scene.points.float(), self.scene.points_rgb.float()
        if self.cfg.max_init_points and len(points) > self.cfg.max_init_points:
            g = torch.Generator().manual_seed(self.cfg.seed)
            keep = torch.randperm(len(points), generator=g)[: self.cfg.max_init_points]
            points, rgbs = points[keep], rgbs[keep]
        return init_splats(points, rgbs, self.cfg.sh_degree, self.cfg.init_opacity, self.cfg.init_scale, self.cfg.seed)

    def _start_tensors(self, path: str) -> Dict[str, torch.Tensor]:
        """Splats of a finished model (its ckpt.pt or a 3DGS ply) to continue from (GOI-style)."""
        existing_file(path, "--start_checkpoint")
        if path.endswith(".ply"):
            tensors = load_ply(path)
        else:
            tensors = load_checkpoint(path, "cpu", self.cfg)["splats"]
        # values a plugin derived from the finished model (semantic labels) would go stale as it trains
        derived = set(declared("derived"))
        return {k: v for k, v in tensors.items() if k not in derived}

    def _lrs(self) -> Dict[str, float]:
        c = self.cfg
        lrs = dict(means=c.means_lr * self.scene.scene_scale, scales=c.scales_lr, quats=c.quats_lr,
                   opacities=c.opacities_lr, sh0=c.sh0_lr, shN=c.shN_lr)
        return {k: lrs.get(k, c.sh0_lr) for k, p in self.splats.items() if p.requires_grad}

    # ---- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> Dict:
        return {
            "step": self.step,
            "train_seconds": self.train_seconds,
            "splats": {k: v.detach() for k, v in self.splats.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "strategy_state": self.strategy_state,
            "plugins": {k: p.state_dict() for k, p in self.plugins.items()},
        }

    def _restore(self, ckpt: Dict) -> None:
        self.step, self.train_seconds = ckpt["step"], ckpt["train_seconds"]
        for k, o in self.optimizers.items():
            o.load_state_dict(ckpt["optimizers"][k])
        self.strategy_state.update(ckpt["strategy_state"])  # in place: plugins hold a reference
        for k, p in self.plugins.items():
            if k in ckpt.get("plugins", {}):
                p.load_state_dict(ckpt["plugins"][k])

    def save_checkpoint(self) -> None:
        check_finite(self.splats, self.step)  # never replace a good checkpoint with a broken model
        save_checkpoint(self.state_dict(), os.path.join(self.model_path, CKPT_NAME))

    # ---- one step ---------------------------------------------------------------------------
    def splats_to_render(self) -> Dict[str, torch.Tensor]:
        """The splat tensors to render: plugins may substitute quantized ones (pure)."""
        splats: Dict[str, torch.Tensor] = dict(self.splats.items())
        for p in self.plugins.values():
            splats.update(p.splats_to_render(self.splats))
        return splats

    def means_lr(self, step: int) -> float:
        """The means' learning rate at ``step``: decays exponentially to 1% at the last step."""
        return self.cfg.means_lr * self.scene.scene_scale * 0.01 ** (step / self.cfg.iterations)

    def train_step(self, step: int, cam) -> Dict[str, float]:
        cfg = self.cfg
        viewmats, Ks, gt = camera_batch([cam], self.device)
        sh_degree = min(step // cfg.sh_degree_interval, cfg.sh_degree)
        for p in self.plugins.values():
            p.step_pre_forward(step, self.splats, self.optimizers)
        splats = self.splats_to_render()
        extras = [e for e in (p.extra_channels(splats) for p in self.plugins.values()) if e is not None]
        out = render_splats(splats, viewmats, Ks, cam.width, cam.height, sh_degree, self.background,
                            extra=torch.cat(extras, dim=-1) if extras else None, backend=cfg.backend,
                            absgrad=getattr(cfg.strategy, "absgrad", False), **camera_lens_batch([cam], self.device))
        self.strategy.step_pre_backward(self.splats, self.optimizers, self.strategy_state, step, out.info)
        l1 = F.l1_loss(out.rgb, gt)
        loss = (1.0 - cfg.ssim_lambda) * l1 + cfg.ssim_lambda * dssim_loss(out.rgb, gt)
        if cfg.opacity_reg > 0:
            loss = loss + cfg.opacity_reg * torch.sigmoid(self.splats["opacities"]).mean()
        if cfg.scale_reg > 0:
            loss = loss + cfg.scale_reg * torch.exp(self.splats["scales"]).mean()
        batch = {"camera": cam, "image": gt, "viewmats": viewmats, "Ks": Ks}
        for p in self.plugins.values():
            extra_loss = p.loss(step, self.splats, batch, out)
            if extra_loss is not None:
                loss = loss + extra_loss
        loss.backward()  # a non-finite loss is caught by train()'s check, every check_every steps
        means_lr = self.means_lr(step)
        for group in self.optimizers["means"].param_groups:
            group["lr"] = means_lr
        for opt in self.optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        strategies.step_post_backward(self.strategy, self.splats, self.optimizers, self.strategy_state, step,
                                      out.info, means_lr)
        for p in self.plugins.values():
            p.step_post_backward(step, self.splats, self.optimizers, out.info)
        mse = F.mse_loss(out.rgb.detach().clamp(0, 1), gt)
        return {"loss": loss.detach(), "psnr": -10.0 * torch.log10(mse.clamp_min(1e-10))}  # 0-dim, not synced

    def train(self, progress: bool = True, until: Optional[int] = None,
              on_step: Optional[Callable[[int, Dict[str, torch.Tensor]], None]] = None) -> None:
        """Run from the current step to ``until`` (default ``cfg.iterations``), checkpointing as
        configured. Schedules always see the full ``cfg.iterations`` run. ``on_step(n, stats)``
        runs after the n-th step (1-based) with its ``loss`` and ``psnr`` (dB) as 0-dim tensors (no host
        sync unless read). The loss and the model are checked every ``check_every`` steps."""
        until = self.cfg.iterations if until is None else min(until, self.cfg.iterations)
        cams = self.scene.train_cameras
        if not cams:
            raise GsVqError("the scene has no training views")
        order = torch.randperm(len(cams), generator=torch.Generator().manual_seed(self.cfg.seed + self.step))
        bar = tqdm(range(self.step, until), initial=self.step, total=until,
                   disable=not progress, dynamic_ncols=True, desc="train")
        for step in bar:
            t0 = time.perf_counter()
            stats = self.train_step(step, cams[order[step % len(cams)]])
            self.train_seconds += time.perf_counter() - t0
            self.step = step + 1
            if step % self.check_every == 0:
                if not torch.isfinite(stats["loss"]):
                    raise GsVqError(f"loss became {stats['loss'].item()} by step {step}: lower the learning rates")
                check_finite(self.splats, step)
            if on_step is not None:
                on_step(self.step, stats)
            if step % self.cfg.log_every == 0:
                bar.set_postfix(loss=f"{stats['loss']:.4f}", psnr=f"{stats['psnr']:.2f}", n=len(self.splats["means"]))
            every = self.cfg.checkpoint_every
            if every and self.step % every == 0 and self.step < self.cfg.iterations:
                self.save_checkpoint()
        bar.close()

    # ---- outputs ----------------------------------------------------------------------------
    def export(self) -> Dict[str, int]:
        """Write ``point_cloud.ply`` (standard 3DGS, the splats as rendered), plugin exports,
        ``cfg.yaml``, ``train_stats.json`` and the final checkpoint. Returns file sizes."""
        os.makedirs(self.model_path, exist_ok=True)
        save_config(self.cfg, os.path.join(self.model_path, "cfg.yaml"))
        rendered = {k: v.detach() for k, v in self.splats_to_render().items()}
        check_finite(rendered, self.step)  # no ply from a broken model
        sizes = {"ply_bytes": save_ply(rendered, os.path.join(self.model_path, "point_cloud.ply"))}
        for p in sorted(self.plugins.values(), key=lambda p: p.export_order):
            sizes.update(p.export(self.model_path, self.splats) or {})
        stats = {"iterations": self.step, "train_seconds": round(self.train_seconds, 2),
                 "num_gaussians": int(len(self.splats["means"])), "device": self.device, **sizes}
        with atomic_path(os.path.join(self.model_path, "train_stats.json")) as tmp, open(tmp, "w") as f:
            json.dump(stats, f, indent=2)
        self.save_checkpoint()
        return sizes
