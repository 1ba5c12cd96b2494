"""Checkpoints load with weights_only=True (a file cannot run code); damaged or mismatching ones are
one-line errors; a real training state (optimizers, strategy, VQ plugin) round-trips; the trainer
stops at non-finite parameters and writes no ply from a broken model."""

import os

import pytest
import torch

from gs_vq.checkpoint import load_checkpoint, save_checkpoint
from gs_vq.config import make_config
from gs_vq.data import generate_demo_scene, load_scene
from gs_vq.errors import GsVqError
from gs_vq.health import check_finite
from gs_vq.trainer import Trainer

SMALL_VQ = {"vq_every": 5, "init_iters": 2, "refresh_iters": 1, "prune_window": 10, "prune_every": 5,
            "attributes": {"sh0": {"type": "vq", "codebook_size": 16}, "quats": {"type": "vq", "codebook_size": 16},
                           "shN": {"type": "rvq", "num_stages": 2, "codebook_size": 8, "beam_size": 1},
                           "scales": {"type": "fsq", "levels": 16}}}


class RunsCode:
    """Unpickling this creates a folder: what a crafted checkpoint could do with os.system."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def splats(n=5, sh_degree=1):
    return {"means": torch.randn(n, 3), "scales": torch.randn(n, 3), "quats": torch.randn(n, 4),
            "opacities": torch.randn(n), "sh0": torch.randn(n, 1, 3), "shN": torch.randn(n, (sh_degree + 1) ** 2 - 1, 3)}


def test_crafted_checkpoint_cannot_run_code(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"splats": splats(), "payload": RunsCode(marker)}, tmp_path / "ckpt.pt")
    with pytest.raises(GsVqError, match="could run code"):
        load_checkpoint(str(tmp_path / "ckpt.pt"))
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "not_a_dict", "no_splats", "nan"])
def test_damaged_checkpoint_is_one_line_error(tmp_path, damage):
    path = tmp_path / "ckpt.pt"
    save_checkpoint({"step": 3, "splats": splats()}, str(path))
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(os.urandom(len(data)))
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "not_a_dict":
        torch.save([1, 2], path)
    elif damage == "no_splats":
        torch.save({"step": 1}, path)
    else:
        bad = splats()
        bad["scales"][2, 1] = float("nan")
        torch.save({"splats": bad}, path)
    with pytest.raises(GsVqError) as e:
        load_checkpoint(str(path))
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_checkpoint_must_match_the_config(tmp_path):
    path = str(tmp_path / "ckpt.pt")
    save_checkpoint({"step": 3, "train_seconds": 1.0, "splats": splats(sh_degree=1), "optimizers": {},
                     "strategy_state": {}, "plugins": {"vq": {}}}, path)
    with pytest.raises(GsVqError, match="SH degree 1, the config asks for sh_degree 3"):
        load_checkpoint(path, cfg=make_config(None, {"sh_degree": 3}), resume=True)
    with pytest.raises(GsVqError, match="plugins: vq; this run asks for: none"):
        load_checkpoint(path, cfg=make_config(None, {"sh_degree": 1}), resume=True)
    with pytest.raises(GsVqError, match="lacks"):
        save_checkpoint({"splats": splats(sh_degree=1)}, path)
        load_checkpoint(path, cfg=make_config(None, {"sh_degree": 1}), resume=True)
    with pytest.raises(TypeError):  # only plain values are ever written
        save_checkpoint({"splats": splats(), "obj": RunsCode(tmp_path / "x")}, path)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    path = generate_demo_scene(root / "scene", n_train=4, n_test=1, size=32)
    return root, load_scene(str(path), num_random_points=800, cache_dir=str(root / "cache"))


def tiny_cfg(**over):
    base = {"iterations": 30, "sh_degree": 1, "sh_degree_interval": 5, "checkpoint_every": 20,
            "strategy": {"refine_start_iter": 5, "refine_every": 5, "refine_stop_iter": 12}}
    return make_config(None, {**base, **over})


REDUCED_VQ = {**SMALL_VQ, "prune_fraction": 0.3, "sh_drop": 0.5}  # reduced at step 17 (vq_start + 5)


@pytest.mark.parametrize("vq", [SMALL_VQ, REDUCED_VQ], ids=["vq", "pruned_and_sh_dropped"])
def test_real_training_state_resumes_with_weights_only(demo, tmp_path, vq):
    _, scene = demo
    model = str(tmp_path / "m")
    first = Trainer(tiny_cfg(vq=vq), scene, model)
    first.train(progress=False, until=20)  # writes ckpt.pt at step 20, after vq_start (12)
    assert first.plugins["vq"].state.initialized
    assert first.plugins["vq"].state.reduced == (vq is REDUCED_VQ)
    ckpt = load_checkpoint(os.path.join(model, "ckpt.pt"))  # weights_only=True inside
    assert ckpt["step"] == 20 and ckpt["plugins"]["vq"]["initialized"]
    again = Trainer(tiny_cfg(vq=vq, resume=True), scene, model)
    assert again.step == 20 and again.plugins["vq"].state.initialized
    assert set(again.splats.keys()) == set(first.splats.keys())  # sh_degrees too, once reduced
    for k, v in first.splats.items():
        assert torch.equal(again.splats[k].detach(), v.detach()), k
    for k, opt in first.optimizers.items():
        assert torch.equal(again.optimizers[k].state_dict()["state"][0]["exp_avg"],
                           opt.state_dict()["state"][0]["exp_avg"]), k
    again.train(progress=False)
    assert again.step == 30
    with pytest.raises(GsVqError, match="plugins: vq; this run asks for: none"):
        Trainer(tiny_cfg(resume=True), scene, model)  # resumed without --vq


def test_non_finite_parameters_stop_training_and_block_export(demo, tmp_path):
    _, scene = demo
    model = tmp_path / "m"
    trainer = Trainer(tiny_cfg(iterations=12, checkpoint_every=0), scene, str(model))
    with torch.no_grad():  # one broken Gaussian: the rasterizer culls it, the loss stays finite
        trainer.splats["scales"][0, 1] = float("nan")
    with pytest.raises(GsVqError, match=r"non-finite by step 0: parameter '(means|scales)' holds \d+ NaN"):
        trainer.train(progress=False)
    with pytest.raises(GsVqError, match="non-finite"):
        trainer.export()
    assert not (model / "point_cloud.ply").exists() and not (model / "ckpt.pt").exists()


def test_check_finite_names_the_parameter():
    good = splats()
    check_finite(good, 7)
    good["shN"][1, 0, 2] = float("inf")
    with pytest.raises(GsVqError, match="step 7: parameter 'shN' holds 1 NaN or infinite"):
        check_finite(good, 7)
    check_finite({"big": torch.full((4,), 3e38)}, 1)  # huge but finite: the sum overflows, the exact check passes


def test_health_checks_run_every_step_on_cpu_and_every_100_on_cuda():
    """Each check is a host sync on CUDA (issue 24, item 6)."""
    from gs_vq.health import CUDA_CHECK_EVERY, check_every

    assert check_every("cpu") == 1 and check_every("cuda") == CUDA_CHECK_EVERY == 100
