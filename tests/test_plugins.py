"""The plugin layer: a plugin defined only here trains through train.py's config; the typed config
tree; gsplat's MCMC strategy on CPU through the relocation twin; cfg.yaml reproduces a run."""

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict

import pytest
import torch
import yaml

from gs_vq.cli.train import main as train_main
from gs_vq.config import load_config, make_config, scale_steps, to_dict
from gs_vq.errors import GsVqError
from gs_vq.plugins import Plugin, register_plugin
from gs_vq.strategy import install_cpu_ops, relocation

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "tests" / "tiny.yaml")


@register_plugin("scale_cap")
@dataclass
class ScaleCap(Plugin):
    """A regulariser written as a plugin: ``weight * mean(relu(log-scale - max_log_scale))``,
    with a count of its hook calls as its run state."""

    weight: float = 1.0
    max_log_scale: float = -4.0

    def initialize(self, splats, optimizers, ctx):
        self.calls: Dict[str, int] = {"pre": 0, "loss": 0, "post": 0}

    def step_pre_forward(self, step, splats, optimizers):
        self.calls["pre"] += 1

    def loss(self, step, splats, batch, render):
        self.calls["loss"] += 1
        return self.weight * torch.relu(splats["scales"] - self.max_log_scale).mean()

    def step_post_backward(self, step, splats, optimizers, info):
        self.calls["post"] += 1

    def export(self, model_dir, splats):
        return {"scale_cap_excess": float(torch.relu(splats["scales"].detach() - self.max_log_scale).mean())}

    def state_dict(self) -> Dict[str, Any]:
        return {"calls": dict(self.calls)}

    def load_state_dict(self, state):
        self.calls = dict(state["calls"])


def _train(tmp_path, name, extra_yaml: str, *flags):
    config = tmp_path / f"{name}.yaml"
    config.write_text(f"base: {TINY}\n{extra_yaml}")
    model = tmp_path / name
    train_main(["-m", str(model), "--config", str(config), "--iterations", "30", "--quiet", *flags])
    return model


def test_a_plugin_defined_in_a_test_trains_through_train_py(tmp_path):
    fast = "scales_lr: 0.05\n"  # so that 30 steps can move the scales by up to ~1.5
    capped = _train(tmp_path, "capped", fast + "scale_cap: {weight: 10.0, max_log_scale: -4.0}\n")
    plain = _train(tmp_path, "plain", fast)
    stats = yaml.safe_load((capped / "train_stats.json").read_text())
    ckpt = torch.load(capped / "ckpt.pt", weights_only=True)
    assert ckpt["plugins"]["scale_cap"]["calls"] == {"pre": 30, "loss": 30, "post": 30}
    saved = yaml.safe_load((capped / "cfg.yaml").read_text())
    assert saved["scale_cap"] == {"weight": 10.0, "max_log_scale": -4.0}
    # its loss acted on the splats: scales above the cap shrank against the same run without it
    ref = torch.load(plain / "ckpt.pt", weights_only=True)["splats"]["scales"]
    excess_plain = float(torch.relu(ref + 4.0).mean())
    assert stats["scale_cap_excess"] < 0.5 * excess_plain
    # a typo in its section is a one-line error at start-up
    with pytest.raises(GsVqError, match="unknown config key.* in scale_cap: weigth"):
        make_config(None, {"scale_cap": {"weigth": 1.0}})
    with pytest.raises(GsVqError, match="scale_cap.weight: expected float"):
        make_config(None, {"scale_cap": {"weight": "heavy"}})


def test_typed_config_tree_and_step_scaling():
    cfg = make_config("cpu", {"vq": {"level": "default"}, "semantic": {"num_codes": 16}})
    assert type(cfg.vq).__name__ == "VQPlugin" and cfg.vq.vq_every == 7 and cfg.semantic.num_codes == 16
    assert type(cfg.strategy).__name__ == "DefaultStrategy" and cfg.strategy.refine_stop_iter == 2000
    short = scale_steps(cfg, 0.25)
    assert (short.iterations, short.sh_degree_interval) == (750, 125)
    assert (short.strategy.refine_start_iter, short.strategy.refine_stop_iter) == (75, 500)
    assert (short.vq.vq_every, short.vq.prune_window, short.vq.prune_every) == (2, 125, 25)  # of the 250-step window
    assert cfg.iterations == 3000 and cfg.vq.prune_window == 500  # the original is untouched
    mcmc = make_config(None, {"strategy": {"type": "mcmc", "cap_max": 1234}})
    assert type(mcmc.strategy).__name__ == "MCMCStrategy" and mcmc.strategy.cap_max == 1234
    assert to_dict(mcmc)["strategy"]["type"] == "mcmc"
    for bad, msg in [({"strategy": 5}, "strategy must be a mapping"), ({"strategy": {"type": "x"}}, "strategy.type"),
                     ({"iterations": "abc"}, "iterations: expected int"), ({"sh_degree": 1.5}, "sh_degree"),
                     ({"vq": {"vq_every": "often"}}, "vq.vq_every"), ({"nosuch": {}}, "unknown config key 'nosuch'")]:
        with pytest.raises(GsVqError, match=msg):
            make_config(None, bad)


def test_base_loop_is_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text(f"base: {tmp_path / 'b.yaml'}\n")
    (tmp_path / "b.yaml").write_text(f"base: {tmp_path / 'a.yaml'}\n")
    with pytest.raises(GsVqError, match="loop"):
        make_config(str(tmp_path / "a.yaml"))


def _relocation_as_gsplat_cuda(opacity: float, scale, n: int, binoms) -> tuple:
    """gsplat 1.5.3's relocation_kernel (RelocationCUDA.cu), transcribed line by line."""
    n_max = binoms.shape[0]
    n = min(max(n, 1), n_max)
    new_opacity = 1.0 - math.pow(1.0 - opacity, 1.0 / n)
    denom_sum = 0.0
    for i in range(1, n + 1):
        for k in range(i):
            bin_coeff = float(binoms[i - 1, k])
            term = (math.pow(-1.0, k) / math.sqrt(k + 1)) * math.pow(new_opacity, k + 1)
            denom_sum += bin_coeff * term
    coeff = opacity / denom_sum
    return new_opacity, [coeff * s for s in scale]


def test_relocation_twin_matches_a_transcription_of_gsplats_kernel():
    from gsplat.strategy import MCMCStrategy

    binoms = MCMCStrategy().initialize_state()["binoms"]  # [51, 51]
    g = torch.Generator().manual_seed(0)
    opac = torch.rand(200, generator=g, dtype=torch.float64) * 0.98 + 0.01
    scales = torch.rand(200, 3, generator=g, dtype=torch.float64) + 0.01
    ratios = torch.randint(1, 12, (200,), generator=g)
    ratios[:3] = torch.tensor([0, 51, 80])  # clamped to [1, n_max] as gsplat does
    new_o, new_s = relocation(opac, scales, ratios, binoms.double())
    for i in range(200):
        o, s = _relocation_as_gsplat_cuda(float(opac[i]), scales[i].tolist(), int(ratios[i]), binoms)
        assert math.isclose(float(new_o[i]), o, rel_tol=1e-9, abs_tol=1e-12)
        assert all(math.isclose(float(a), b, rel_tol=1e-9) for a, b in zip(new_s[i], s))
    # n copies of the relocated Gaussian render like the one they replace, for n = 1: unchanged
    one = relocation(opac, scales, torch.ones(200, dtype=torch.long), binoms.double())
    assert torch.allclose(one[0], opac) and torch.allclose(one[1], scales)


def test_mcmc_ops_run_on_cpu():
    from gsplat.strategy import MCMCStrategy

    install_cpu_ops()
    g = torch.Generator().manual_seed(0)
    n = 300
    splats = torch.nn.ParameterDict({
        "means": torch.nn.Parameter(torch.randn(n, 3, generator=g)),
        "scales": torch.nn.Parameter(torch.randn(n, 3, generator=g) * 0.2 - 3),
        "quats": torch.nn.Parameter(torch.randn(n, 4, generator=g)),
        "opacities": torch.nn.Parameter(torch.randn(n, generator=g) * 3),
        "sh0": torch.nn.Parameter(torch.randn(n, 1, 3, generator=g)),
        "shN": torch.nn.Parameter(torch.zeros(n, 3, 3)),
    })
    opts = {k: torch.optim.Adam([{"params": p, "lr": 1e-3, "name": k}]) for k, p in splats.items()}
    strategy = MCMCStrategy(cap_max=330, refine_start_iter=0, refine_every=1, refine_stop_iter=10)
    state = strategy.initialize_state()
    dead = int((torch.sigmoid(splats["opacities"]) <= strategy.min_opacity).sum())
    strategy.step_post_backward(splats, opts, state, step=1, info={}, lr=1e-3)
    assert len(splats["means"]) == 315  # 5% more, under the cap
    assert int((torch.sigmoid(splats["opacities"]) <= strategy.min_opacity).sum()) < max(dead, 1)
    for _ in range(3):
        strategy.step_post_backward(splats, opts, state, step=2, info={}, lr=1e-3)
    assert len(splats["means"]) == 330  # never past cap_max
    assert all(torch.isfinite(p).all() for p in splats.values())


def test_mcmc_strategy_trains_through_the_trainer_under_its_cap(tmp_path):
    model = _train(tmp_path, "mcmc", "strategy: {type: mcmc, cap_max: 2300, refine_start_iter: 5, "
                   "refine_every: 5, refine_stop_iter: 28}\nopacity_reg: 0.01\nscale_reg: 0.01\n")
    stats = yaml.safe_load((model / "train_stats.json").read_text())
    assert 2000 < stats["num_gaussians"] <= 2300
    assert load_config(str(model / "cfg.yaml")).strategy.cap_max == 2300


def test_cfg_yaml_reproduces_the_run(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the compositing backward's sums in a fixed order
    try:
        first = _train(tmp_path, "first", "vq: {vq_start: 20, vq_every: 3, prune_window: 5, prune_every: 2}\n")
        second = tmp_path / "second"
        train_main(["--config", str(first / "cfg.yaml"), "-m", str(second), "--quiet"])
    finally:
        torch.set_num_threads(threads)
    cfg = load_config(str(first / "cfg.yaml"))
    saved = yaml.safe_load((first / "cfg.yaml").read_text())
    for key in ("vq_start", "vq_every", "pos_bits", "opacity_bits", "attributes", "precision", "max_k_fraction"):
        assert key in saved["vq"], key  # every resolved value, not `vq: {}`
    assert saved["vq"]["vq_every"] == 3 and cfg.vq.vq_every == 3
    assert to_dict(load_config(str(second / "cfg.yaml"))) == {**to_dict(cfg), "model_path": str(second)}
    a = torch.load(first / "ckpt.pt", weights_only=True)
    b = torch.load(second / "ckpt.pt", weights_only=True)
    assert a["step"] == b["step"] == 30
    for k in a["splats"]:
        assert torch.equal(a["splats"][k], b["splats"][k]), k
    assert (first / "compressed.ply").read_bytes() == (second / "compressed.ply").read_bytes()


def test_plugin_defaults_are_dataclass_fields():
    from gs_vq.vq import VQConfig, VQPlugin

    assert {f.name for f in dataclasses.fields(VQPlugin)} == {f.name for f in dataclasses.fields(VQConfig)}
    assert VQPlugin().config_dict()["attributes"]["sh0"] == {"type": "vq", "codebook_size": 4096}
