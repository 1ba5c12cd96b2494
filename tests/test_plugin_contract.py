"""The plugin contract: a plugin defined only in this file adds a per-Gaussian parameter and writes a
file of its own, without touching any gs-vq module. Both survive compressed.ply and a checkpoint
round trip, cfg.yaml records its section, and the model folder knows its file."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict

import torch
import yaml

from gs_vq.checkpoint import load_checkpoint
from gs_vq.cli.train import main as train_main
from gs_vq.config import load_config
from gs_vq.io import load_splats
from gs_vq.model_dir import planned_outputs, release_model_dirs, remove_stale_outputs
from gs_vq.plugins import Plugin, register_plugin

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "tests" / "tiny.yaml")


@register_plugin("glow")
@dataclass
class Glow(Plugin):
    """A per-Gaussian scalar ``glow [N, 1]`` pulled towards ``target``; writes ``glow.json``."""

    target: float = 0.25
    lr: float = 0.05
    outputs = ("glow.json",)

    def initialize(self, splats, optimizers, ctx):
        if "glow" not in splats:
            n = splats["means"].shape[0]
            splats["glow"] = torch.nn.Parameter(torch.zeros(n, 1, device=splats["means"].device))
        optimizers["glow"] = torch.optim.Adam([{"params": splats["glow"], "lr": self.lr, "name": "glow"}],
                                              eps=1e-15)

    def loss(self, step, splats, batch, render):
        return ((splats["glow"] - self.target) ** 2).mean()

    def export(self, model_dir, splats) -> Dict[str, Any]:
        mean = float(splats["glow"].detach().mean())
        with open(Path(model_dir) / "glow.json", "w") as f:
            json.dump({"mean": mean}, f)
        return {"glow_mean": round(mean, 4)}


def test_a_plugin_with_a_parameter_and_a_file_of_its_own(tmp_path):
    config = tmp_path / "glow.yaml"
    config.write_text(f"base: {TINY}\nglow: {{target: 0.25}}\n")
    model = tmp_path / "m"
    train_main(["-m", str(model), "--config", str(config), "--vq", "--iterations", "60", "--quiet"])

    assert yaml.safe_load((model / "cfg.yaml").read_text())["glow"] == {"target": 0.25, "lr": 0.05}
    assert load_config(str(model / "cfg.yaml")).plugins["glow"].target == 0.25
    written = json.loads((model / "glow.json").read_text())["mean"]
    assert 0.05 < written <= 0.3  # trained towards 0.25 from 0
    assert "glow.json" in planned_outputs(load_config(str(model / "cfg.yaml")))

    ckpt = load_checkpoint(str(model / "ckpt.pt"))
    glow = ckpt["splats"]["glow"]  # [N, 1]
    assert glow.shape == (ckpt["splats"]["means"].shape[0], 1)
    assert abs(float(glow.mean()) - written) < 1e-6

    # compressed.ply stores the unknown per-Gaussian attribute raw, Gaussian by Gaussian
    loaded = load_splats(str(model / "compressed.ply"))
    ply = load_splats(str(model / "point_cloud.ply"))
    assert "glow" in loaded and loaded["glow"].shape == glow.shape
    order = torch.cdist(loaded["means"].float(), ply["means"].float()).argmin(dim=1)  # file in Morton order
    assert torch.allclose(loaded["glow"].float(), glow[order].float(), atol=1e-3)

    # resuming restores the parameter with its optimizer, and the run goes on
    release_model_dirs()  # the first run's folder lock (in this process)
    train_main(["-m", str(model), "--config", str(config), "--vq", "--iterations", "80", "--quiet", "--resume"])
    again = load_checkpoint(str(model / "ckpt.pt"))
    assert again["step"] == 80 and "glow" in again["splats"] and "glow" in again["optimizers"]

    # a run without the plugin removes the plugin's file from the model folder
    cfg = load_config(str(model / "cfg.yaml"))
    cfg.plugins.pop("glow")
    removed = remove_stale_outputs(str(model), cfg, resume=True)
    assert any(p.endswith("glow.json") for p in removed) and not (model / "glow.json").exists()
