"""bench.rd's post-hoc baselines: gsplat's PngCompression with the CPU k-means stand-in, the
SuperSplat export and gs-vq's post-hoc codebooks decode back to the scene they were given."""

import torch

from bench import baselines
from gs_vq.config import make_config

from test_vq_export import scene_splats
from test_vq_reduce import SCENE


def _splats(n=400):
    splats, _ = scene_splats(n)
    return {k: v.detach() for k, v in splats.items()}


def test_cpu_kmeans_stand_in_has_torchpq_interface():
    x = torch.randn(5, 320)  # [D, N] as gsplat hands it over
    km = baselines._KMeans(n_clusters=65536, distance="manhattan")
    labels = km.fit(x)
    assert labels.shape == (320,) and km.centroids.shape == (5, 20)  # capped at N / 16
    assert int(labels.max()) < 20


def test_png_compression_round_trip(tmp_path):
    s = _splats()
    decoded, parts = baselines.png_compression(s, str(tmp_path / "png"))
    assert decoded["means"].shape[0] == 400 and set(parts) >= {"means", "shN", "sh0", "header"}
    order = baselines.morton_order(s["means"])
    # means: 16-bit PNG after a log transform; compare in Morton order (gsplat keeps the order given)
    assert torch.allclose(decoded["means"], s["means"][order], atol=1e-3)
    assert torch.allclose(decoded["sh0"], s["sh0"][order], atol=(s["sh0"].max() - s["sh0"].min()) / 255 + 1e-4)


def test_supersplat_and_posthoc_vq(tmp_path):
    s = _splats()
    decoded, parts = baselines.supersplat(s, str(tmp_path / "ss"))
    assert decoded["means"].shape[0] == 400 and parts["file"] > 0
    vq = make_config("cpu", {"vq": {"level": "default"}}).vq
    vq.attributes = {"sh0": {"type": "vq", "codebook_size": 16}, "quats": {"type": "vq", "codebook_size": 16}}
    vq.prune_fraction, vq.sh_drop, vq.significance_downscale = 0.25, 0.5, 1
    decoded, parts = baselines.posthoc_vq(s, vq, SCENE, str(tmp_path / "vq"))
    assert decoded["means"].shape[0] == 300 and int((decoded["shN"].abs().sum(dim=(1, 2)) == 0).sum()) == 150
    assert len(torch.unique(decoded["sh0"].reshape(300, 3), dim=0)) <= 16


def test_ablation_rows_measure_against_the_model_itself():
    """bench.ablation: a codebook with one entry per distinct value and a 12-bit grid cost ~nothing;
    removing 60% of the Gaussians costs more than removing 20%."""
    from bench import ablation

    from types import SimpleNamespace

    from gs_vq.evaluate import render_views

    assert ablation.entropy_bits(torch.arange(256).repeat(3)) == 8.0
    splats = _splats()
    cam = SimpleNamespace(**vars(SCENE.train_cameras[0]), image=torch.zeros(48, 48, 3))
    _, out = next(render_views(splats, [cam], [0.0] * 3, "cpu"))
    noise = 0.01 * torch.randn(out.rgb[0].shape, generator=torch.Generator().manual_seed(0))
    view = SimpleNamespace(**{**vars(cam), "image": (out.rgb[0] + noise).clamp(0, 1)})  # ~40 dB from the model
    ab = ablation.Ablation(splats, SimpleNamespace(train_cameras=[cam], test_cameras=[view]))
    ab._quantized("sh0", {"type": "fsq", "levels": 4096}, "fine grid")
    ab.prune()
    drops = {r["variant"]: r["psnr_drop"] for r in ab.rows}
    assert abs(drops["sh0: fine grid"]) < 0.05
    assert drops["60% at significance_downscale 1"] > drops["20% at significance_downscale 1"]
    assert all(r["bits_per_gaussian"] is None for r in ab.rows if r["kind"] == "prune")
    ab.views()  # one training view: every subset is all of it
    views = [r for r in ab.rows if r["kind"] == "views"]
    assert len(views) == 5 and all("1 of 1 views" in r["variant"] for r in views)
    assert len({r["psnr_drop"] for r in views}) == 1 and len({r["variant"] for r in views}) == 1
