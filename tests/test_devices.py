"""What breaks on CUDA, checked on the CPU: absgrad densification, gsplat's CUDA extension
missing, the device-dependent default preset, GPU-aware timing and search blocks, and
``rasterize``'s defaults against ``gsplat.rasterization``'s."""

import inspect
import sys
import types

import gsplat
import pytest
import torch

from gs_vq import devices
from gs_vq.config import make_config
from gs_vq.data import generate_demo_scene, load_scene
from gs_vq.errors import GsVqError
from gs_vq.render import gsplat_cuda, rasterize
from gs_vq.trainer import Trainer


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    path = generate_demo_scene(root / "scene", n_train=3, n_test=1, size=32)
    return load_scene(str(path), num_random_points=800, cache_dir=str(root / "cache"))


def test_absgrad_strategy_trains(scene, tmp_path):
    """``strategy.absgrad: true`` used to crash at the first refinement: render_splats never asked
    the rasterizer for ``means2d.absgrad``, which DefaultStrategy then read."""
    cfg = make_config("cpu", {"iterations": 12, "checkpoint_every": 0, "sh_degree": 1, "device": "cpu",
                              "strategy": {"absgrad": True, "refine_start_iter": 4, "refine_every": 4,
                                           "refine_stop_iter": 11, "grow_grad2d": 1e-6}})
    trainer = Trainer(cfg, scene, str(tmp_path / "model"))
    n0 = len(trainer.splats["means"])
    trainer.train(progress=False)
    assert trainer.step == 12 and len(trainer.splats["means"]) > n0  # densified on absolute gradients


@pytest.fixture
def no_gsplat_cuda(monkeypatch):
    """A CUDA machine where gsplat found no nvcc: ``torch.cuda.is_available()`` and ``_C is None``."""
    fake = types.ModuleType("gsplat.cuda._backend")
    fake._C = None
    monkeypatch.setitem(sys.modules, "gsplat.cuda._backend", fake)
    monkeypatch.setattr(gsplat_cuda, "_loaded_seconds", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_missing_gsplat_extension_is_a_one_line_error(no_gsplat_cuda, scene, tmp_path, capsys):
    from gs_vq.cli.train import main

    with pytest.raises(SystemExit) as e:
        main(["-s", scene.source_path, "-m", str(tmp_path / "m"), "--iterations", "2", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("error: gsplat's CUDA extension is not available")
    assert "install the CUDA toolkit matching torch" in err and "--device cpu" in err
    # rendering straight through gs_vq.render.rasterize on the gsplat backend says the same
    with pytest.raises(GsVqError, match="--device cpu"):
        rasterize(torch.zeros(1, 3), torch.ones(1, 4), torch.ones(1, 3), torch.ones(1), torch.ones(1, 3),
                  torch.eye(4)[None], torch.eye(3)[None], 4, 4, backend="gsplat")


def test_failed_gsplat_build_is_a_one_line_error(monkeypatch):
    monkeypatch.delitem(sys.modules, "gsplat.cuda._backend", raising=False)
    monkeypatch.setattr(gsplat_cuda, "_loaded_seconds", None)

    def fail(name):
        raise RuntimeError("Error building extension 'gsplat_cuda'\nnvcc fatal: unsupported gpu architecture")

    monkeypatch.setattr(gsplat_cuda.importlib, "import_module", fail)
    with pytest.raises(GsVqError) as e:
        gsplat_cuda.load_gsplat_cuda()
    assert "its build failed: Error building extension 'gsplat_cuda'" in str(e.value)
    assert "\n" not in str(e.value)


def test_gsplat_extension_load_is_timed_once_and_kept_out_of_training(monkeypatch):
    fake = types.ModuleType("gsplat.cuda._backend")
    fake._C = object()
    monkeypatch.setitem(sys.modules, "gsplat.cuda._backend", fake)
    monkeypatch.setattr(gsplat_cuda, "_loaded_seconds", None)
    first = gsplat_cuda.load_gsplat_cuda()
    assert first >= 0.0 and gsplat_cuda._loaded_seconds == first
    assert gsplat_cuda.load_gsplat_cuda() == 0.0  # loaded once per process


def test_default_preset_follows_the_device(monkeypatch):
    """No ``--config``: the CPU preset on a CPU-only machine (and it says so), gsplat's
    simple_trainer recipe on CUDA, with --vq quantizing after densification."""
    from gs_vq.cli.train import parse_config

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg, args = parse_config(["--quiet"])
    cpu = make_config("cpu")
    assert args.config == "cpu" and cfg.iterations == cpu.iterations == 3000
    assert cfg.strategy.refine_stop_iter == cpu.strategy.refine_stop_iter < cfg.iterations
    assert "preset 'cpu'" in args.preset_note and "CPU" in args.preset_note
    cfg, args = parse_config(["--config", "mcmc", "--vq"])  # an explicit preset wins, silently
    assert args.config == "mcmc" and args.preset_note is None

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gsplat_cuda, "_loaded_seconds", 1.0)  # as if the extension were loaded
    cfg, args = parse_config(["--vq", "compact3d"])  # no pruning: needs no training views
    assert args.config == "gpu" and "CUDA" in args.preset_note and "simple_trainer" in args.preset_note
    assert (cfg.iterations, cfg.sh_degree, cfg.sh_degree_interval) == (30_000, 3, 1000)
    s = cfg.strategy
    assert (s.refine_start_iter, s.refine_stop_iter, s.refine_every, s.reset_every) == (500, 15_000, 100, 3000)
    assert (s.grow_grad2d, s.prune_opa, s.grow_scale3d, s.prune_scale3d) == (2e-4, 5e-3, 0.01, 0.1)
    assert cfg.shN_lr == pytest.approx(cfg.sh0_lr / 20) and cfg.means_lr == 1.6e-4
    from gs_vq.plugins import TrainContext

    splats = torch.nn.ParameterDict({"means": torch.randn(64, 3), "scales": torch.randn(64, 3),
                                     "quats": torch.randn(64, 4), "opacities": torch.randn(64),
                                     "sh0": torch.randn(64, 1, 3), "shN": torch.randn(64, 15, 3)})
    plugin = cfg.vq.fresh()
    plugin.initialize(splats, {}, TrainContext(total_steps=cfg.iterations, refine_stop=s.refine_stop_iter))
    assert plugin.schedule.vq_start == s.refine_stop_iter == 15_000  # Compact3D: after densification
    # --device cpu on a CUDA machine picks the CPU preset
    _, args = parse_config(["--device", "cpu"])
    assert args.config == "cpu"


def test_rasterize_defaults_match_gsplat():
    """"Same signature as gsplat.rasterization": every shared argument has gsplat's default
    (``packed=True`` included)."""
    ours = inspect.signature(rasterize).parameters
    theirs = inspect.signature(gsplat.rasterization).parameters
    shared = [name for name in ours if name in theirs]
    assert len(shared) >= 15
    for name in shared:
        assert ours[name].default == theirs[name].default, name
    assert list(ours)[:9] == list(theirs)[:9]  # the positional arguments, in order


def test_block_timer_uses_events_on_cuda_and_settles_once(monkeypatch):
    """No host sync per timed block on CUDA (issue 24, item 6): events, read in one wait."""
    log = []

    class Event:
        def __init__(self, enable_timing=False):
            assert enable_timing
            self.t = None

        def record(self):
            log.append("record")
            self.t = len(log)

        def synchronize(self):
            log.append("wait")

        def elapsed_time(self, end):
            return 1000.0 * (end.t - self.t)  # ms

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: log.append("sync"))
    timer, seconds = devices.BlockTimer("cuda"), {}
    for _ in range(3):
        with timer.block(seconds, "update"):
            log.append("work")
    assert "sync" not in log and "wait" not in log and seconds == {}  # nothing read yet
    timer.settle()
    assert log.count("wait") == 1 and seconds["update"] == 6.0  # 3 blocks of 2 log entries
    timer.settle()
    assert log.count("wait") == 1  # nothing pending
    cpu, s2 = devices.BlockTimer("cpu"), {}
    with cpu.block(s2, "fit"):
        pass
    assert s2["fit"] >= 0 and log.count("wait") == 1


def test_search_blocks_grow_on_cuda():
    from gs_vq.quant.search import default_chunk_size

    for k in (16, 256, 4096, 65536):
        cpu, gpu = default_chunk_size(k), default_chunk_size(k, "cuda")
        assert cpu * k <= (1 << 21) + 64 * k  # 8 MiB float32 blocks on the CPU (cache-sized)
        assert gpu >= 8 * cpu or gpu * k >= (1 << 24)  # far fewer, larger launches on a GPU
