"""On a CUDA machine: gsplat's rasterizer against ours, a VQ plugin step on the GPU, and models
moving between devices (a CUDA checkpoint rendered and resumed on the CPU, --semantic --resume
on CUDA). Skipped, with the reason, where there is no CUDA device."""

from pathlib import Path

import pytest
import torch

from gs_vq.config import make_config
from gs_vq.splats import camera_batch, render_splats
from gs_vq.trainer import Trainer
from test_devices import scene  # noqa: F401  (the small demo scene fixture)

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device: gsplat's rasterizer runs only there")


def test_gsplat_matches_the_cpu_rasterizer():
    from bench import gpu_parity
    from gs_vq.render import ext

    reference = "cpp" if ext.available() else "torch"
    rows = gpu_parity.run("gsplat", reference, gpu_parity.NAMES, seed=0)
    assert {r["case"]: r["failed"] for r in rows if r["failed"]} == {}, gpu_parity.table(rows)


def test_vq_plugin_step_on_cuda():
    from test_vq_plugin import make_plugin, make_splats, train_steps

    from gs_vq.vq import CODES_KEY

    splats, opts = make_splats(n=600)
    splats = splats.to("cuda")
    opts = {k: torch.optim.Adam([splats[k]], lr=1e-2) for k in splats.keys()}
    plugin = make_plugin(splats, opts)
    train_steps(plugin, splats, opts, range(8))  # fit at step 2, refresh at 7, updates between
    assert splats[CODES_KEY].is_cuda and len(plugin.state.refresh_steps) >= 1
    over = plugin.splats_to_render(splats)
    assert all(v.is_cuda for v in over.values())
    assert plugin.timings()["fit"] > 0 and plugin.timings()["refresh"] > 0
    # straight-through: the quantized tensor's gradient reaches the full-precision parameter
    over["sh0"].sum().backward()
    assert torch.equal(splats["sh0"].grad, torch.ones_like(splats["sh0"]))


def test_cuda_checkpoint_renders_and_resumes_on_cpu(scene, tmp_path):
    tiny = {"iterations": 40, "checkpoint_every": 20, "sh_degree": 1, "sh_degree_interval": 10,
            "strategy": {"refine_start_iter": 10, "refine_every": 10, "refine_stop_iter": 30}}
    gpu = Trainer(make_config(str(ROOT / "tests" / "tiny.yaml"), {**tiny, "device": "cuda"}), scene,
                  str(tmp_path / "m"))
    gpu.train(progress=False, until=20)
    gpu.save_checkpoint()
    cam = scene.test_cameras[0]
    with torch.no_grad():
        viewmats, Ks, _ = camera_batch([cam], "cuda")
        img_gpu = render_splats(dict(gpu.splats.items()), viewmats, Ks, cam.width, cam.height, 1).rgb.cpu()
    cpu = Trainer(make_config(str(ROOT / "tests" / "tiny.yaml"), {**tiny, "device": "cpu", "resume": True}),
                  scene, str(tmp_path / "m"))
    assert cpu.step == 20 and cpu.splats["means"].device.type == "cpu"
    with torch.no_grad():
        viewmats, Ks, _ = camera_batch([cam], "cpu")
        img_cpu = render_splats(dict(cpu.splats.items()), viewmats, Ks, cam.width, cam.height, 1).rgb
    assert (img_cpu - img_gpu).abs().mean() < 1e-3
    cpu.train(progress=False)  # and training continues there
    assert cpu.step == 40


def test_semantic_resume_on_cuda(scene, tmp_path):
    from test_semantic_lib import BagOfWordsEncoder

    from gs_vq.semantics.features import compute_label_features

    compute_label_features(scene, str(tmp_path / "feats"), downscale=2, encoder=BagOfWordsEncoder())
    sem = {"features_dir": str(tmp_path / "feats"), "num_codes": 8, "kmeans_per_view": 8, "num_pixels": 256}
    over = {"iterations": 20, "semantic": sem, "checkpoint_every": 10, "sh_degree": 1, "device": "cuda"}
    first = Trainer(make_config(str(ROOT / "tests" / "tiny.yaml"), over), scene, str(tmp_path / "m"))
    first.train(progress=False, until=10)
    first.save_checkpoint()
    again = Trainer(make_config(str(ROOT / "tests" / "tiny.yaml"), {**over, "resume": True}), scene,
                    str(tmp_path / "m"))
    a, b = first.plugins["semantic"].generator, again.plugins["semantic"].generator
    assert torch.equal(a.get_state(), b.get_state())
    again.train(progress=False)
    assert again.step == 20 and again.splats["features"].is_cuda
