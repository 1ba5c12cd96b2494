"""gsplat's MCMC strategy with VQ: significance pruning runs through gsplat's ops.remove with
MCMC's state ({"binoms": [51, 51]}), which used to be indexed by Gaussian and crash."""

import torch
from gsplat.strategy import DefaultStrategy, MCMCStrategy

from gs_vq.config import make_config
from gs_vq.data import load_scene
from gs_vq.strategy import remove
from gs_vq.trainer import Trainer


def test_remove_keeps_tables_and_follows_per_gaussian_state():
    splats = torch.nn.ParameterDict({"means": torch.nn.Parameter(torch.randn(60, 3))})
    optimizers = {"means": torch.optim.Adam([splats["means"]])}
    state = MCMCStrategy().initialize_state()
    state["grad2d"] = torch.arange(60.0)
    mask = torch.zeros(60, dtype=torch.bool)
    mask[:10] = True
    remove(splats, optimizers, state, mask)
    assert splats["means"].shape == (50, 3) and state["binoms"].shape == (51, 51)
    assert torch.equal(state["grad2d"], torch.arange(10.0, 60.0))
    default = DefaultStrategy().initialize_state(scene_scale=1.0)  # grad2d etc. still None
    remove(splats, optimizers, default, mask[:50])
    assert splats["means"].shape == (40, 3) and default["grad2d"] is None


def test_mcmc_with_vq_trains_through_pruning(tmp_path):
    """``--config mcmc --vq`` on a short schedule: the three pruning rounds run and the model exports."""
    cfg = make_config("mcmc", {"iterations": 120, "max_init_points": 1500, "init_num_points": 1500, "sh_degree": 1,
                               "sh_degree_interval": 20, "checkpoint_every": 0,
                               "strategy": {"cap_max": 2000, "refine_start_iter": 10, "refine_stop_iter": 60,
                                            "refine_every": 10},
                               "vq": {"level": "default"}})
    assert (cfg.vq.prune_every, cfg.vq.prune_window) == (6, 30)  # fractions of the 60-step window
    scene = load_scene(None)
    trainer = Trainer(cfg, scene, str(tmp_path / "model"))
    trainer.train(progress=False)
    vq = trainer.plugins["vq"]
    assert vq.state.reduce_rounds == 3 and vq.state.reduced
    assert len(trainer.splats["means"]) <= round(0.4 * vq.state.reduce_from) + 1
    assert trainer.strategy_state["binoms"].shape == (51, 51)
    sizes = trainer.export()
    assert sizes["compression_ratio"] > 1 and (tmp_path / "model" / "compressed.ply").is_file()
