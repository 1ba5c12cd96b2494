"""What a training run writes while it runs, with Inria's flags.

- ``--save_iterations N ...``: the model (as rendered) at ``MODEL/point_cloud/iteration_<N>/point_cloud.ply``
  after step N; the final step is always saved (a hard link to ``MODEL/point_cloud.ply``).
- ``--test_iterations N ...``: after step N, mean L1 and PSNR (dB) over the test views (and a few
  training views), one line each, as Inria's ``training_report`` prints them.
- TensorBoard scalars under ``MODEL/tb`` when ``tensorboard`` is installed: ``train/loss``,
  ``train/psnr`` (dB, the step's view), ``train/num_gaussians``, ``<split>/l1`` and
  ``<split>/psnr`` at the test iterations, and ``vq/bits_per_gaussian`` of the exported model.
"""

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .io.inria import iteration_ply
from .io.ply import save_ply

TB_DIR = "tb"
TRAIN_REPORT_VIEWS = 5  # Inria reports on training views 5, 10, ..., 30 (here: the first 5 in a stride)


@dataclass
class StepOutputsConfig:
    save_iterations: List[int] = field(default_factory=list)  # steps (1-based counts) to save a ply at
    test_iterations: List[int] = field(default_factory=list)  # steps to evaluate at
    tensorboard: bool = True  # write MODEL/tb when tensorboard is installed


def tensorboard_writer(log_dir: str):
    """A ``SummaryWriter`` on ``log_dir``, or None (and one line) when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("[gs-vq] tensorboard is not installed: no TensorBoard logs (pip install tensorboard)")
        return None
    return SummaryWriter(log_dir=log_dir)


class StepOutputs:
    """The ``on_step`` callback of :meth:`gs_vq.trainer.Trainer.train`: saves, evaluates, logs."""

    def __init__(self, cfg: StepOutputsConfig, trainer):
        self.cfg, self.trainer = cfg, trainer
        self.writer = tensorboard_writer(os.path.join(trainer.model_path, TB_DIR)) if cfg.tensorboard else None

    def __call__(self, step: int, stats: Dict[str, float]) -> None:
        """After the ``step``-th step (1-based). ``stats``: the step's ``loss`` and ``psnr`` (dB), 0-dim
        tensors; written to TensorBoard every ``log_every`` steps."""
        t = self.trainer
        if self.writer is not None and (step - 1) % t.cfg.log_every == 0:  # a scalar read is a host sync on CUDA
            self.writer.add_scalar("train/loss", stats["loss"], step)
            self.writer.add_scalar("train/psnr", stats["psnr"], step)
            self.writer.add_scalar("train/num_gaussians", len(t.splats["means"]), step)
        if step in self.cfg.test_iterations:
            self.report(step)
        if step in self.cfg.save_iterations and step < t.cfg.iterations:  # the final one: export()
            rendered = {k: v.detach() for k, v in t.splats_to_render().items()}
            save_ply(rendered, iteration_ply(t.model_path, step))
            print(f"\n[ITER {step}] Saving Gaussians")

    @torch.no_grad()
    def report(self, step: int) -> Dict[str, Dict[str, float]]:
        """Mean L1 and PSNR (dB) on the test views and a few training views; printed and logged."""
        from .evaluate import render_views

        t = self.trainer
        train = t.scene.train_cameras
        splits = {"test": t.scene.test_cameras,
                  "train": train[:: max(1, len(train) // TRAIN_REPORT_VIEWS)][:TRAIN_REPORT_VIEWS]}
        out: Dict[str, Dict[str, float]] = {}
        splats = t.splats_to_render()
        for name, cams in splits.items():
            if not cams:
                continue
            l1s, psnrs = [], []
            for cam, r in render_views(splats, cams, t.background, t.device, t.cfg.backend):
                pred, gt = r.rgb[0].clamp(0, 1).cpu(), cam.image_float("cpu")
                l1s.append(F.l1_loss(pred, gt).item())
                psnrs.append(-10.0 * np.log10(max(F.mse_loss(pred, gt).item(), 1e-10)))
            out[name] = {"l1": float(np.mean(l1s)), "psnr": float(np.mean(psnrs))}
            print(f"\n[ITER {step}] Evaluating {name}: L1 {out[name]['l1']} PSNR {out[name]['psnr']}")
            if self.writer is not None:
                self.writer.add_scalar(f"{name}/l1", out[name]["l1"], step)
                self.writer.add_scalar(f"{name}/psnr", out[name]["psnr"], step)
        return out

    def close(self, step: int, sizes: Optional[Dict] = None) -> None:
        """After export: log the exported model's bits per Gaussian (``--vq``), flush the logs."""
        if self.writer is None:
            return
        sizes = sizes or {}
        n = len(self.trainer.splats["means"])
        bits = (sizes.get("bits_per_gaussian") or {}).get("total")  # compressed.ply's report
        if bits is None and sizes.get("compressed_bytes") and n:
            bits = 8.0 * sizes["compressed_bytes"] / n
        if bits is not None:
            self.writer.add_scalar("vq/bits_per_gaussian", bits, step)
        self.writer.close()
