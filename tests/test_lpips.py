"""LPIPS with --lpips_net alex|vgg (torchmetrics, as gsplat): the plumbing with a randomly initialised
backbone, the real weights where they are installed, and null with one line where they are not."""

import pytest
import torch
from torch import nn

import gs_vq.metrics as metrics
from gs_vq.errors import GsVqError
from gs_vq.evaluate import evaluate


def _random_backbone(net: str, pretrained: bool = False) -> nn.Sequential:
    """torchvision's AlexNet / VGG16 ``features`` layer for layer (the indices torchmetrics slices),
    randomly initialised, built without torchvision."""
    torch.manual_seed(0)
    if net == "alexnet":
        return nn.Sequential(nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
                             nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
                             nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 256, 3, padding=1),
                             nn.ReLU(), nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))
    layers, c = [], 3
    for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
            c = v
    return nn.Sequential(*layers)


@pytest.fixture
def random_lpips(monkeypatch):
    """torchmetrics' LPIPS as is (its shipped linear heads included) over a random backbone."""
    import torchmetrics.functional.image.lpips as tm_lpips
    import torchmetrics.image.lpip as tm_lpip

    monkeypatch.setattr(tm_lpips, "_get_tv_model_features", _random_backbone)
    for module in (tm_lpips, tm_lpip):  # torchmetrics refuses LPIPS without torchvision, which only the backbone needs
        monkeypatch.setattr(module, "_TORCHVISION_AVAILABLE", True)
    monkeypatch.setattr(metrics, "lpips_unavailable", lambda net: None)
    metrics.lpips_metric.cache_clear()
    yield
    metrics.lpips_metric.cache_clear()


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_plumbing_with_a_random_backbone(random_lpips, net):
    lpips = metrics.LPIPS(net)
    assert lpips.metric is not None and lpips.reason is None
    g = torch.Generator().manual_seed(1)
    a = torch.rand(64, 64, 3, generator=g)
    b = (a + 0.3 * torch.rand(64, 64, 3, generator=g)).clamp(0, 1)
    same, near, far = lpips(a, a), lpips(a, b), lpips(a, 1 - a)
    assert same == pytest.approx(0.0, abs=1e-6)
    assert 0 < near < far
    assert lpips(a, b) == pytest.approx(near)  # one image's score, not a running mean


def test_evaluate_scores_lpips_with_the_chosen_network(random_lpips, capsys):
    from orbit_scene import blob_splats, ring_cameras

    scores = evaluate(blob_splats(), ring_cameras(3, size=64), [0.0] * 3, "cpu", backend="torch",
                      progress=False, lpips_net="alex")
    assert isinstance(scores["lpips"], float) and scores["lpips"] > 0
    assert capsys.readouterr().err == ""


def test_lpips_is_null_with_one_line_when_weights_are_missing(monkeypatch, capsys):
    monkeypatch.setattr(metrics, "lpips_unavailable", lambda net: f"no {net} weights here")
    lpips = metrics.LPIPS("alex")
    assert lpips.metric is None and lpips.reason == "no alex weights here"
    assert lpips(torch.zeros(8, 8, 3), torch.ones(8, 8, 3)) is None
    from orbit_scene import blob_splats, ring_cameras

    scores = evaluate(blob_splats(), ring_cameras(2), [0.0] * 3, "cpu", backend="torch", lpips=lpips)
    assert scores["lpips"] is None and scores["psnr"] is not None
    err = [ln for ln in capsys.readouterr().err.splitlines() if "LPIPS" in ln]
    assert err == ["note: LPIPS (alex) not computed, null in the results: no alex weights here"]


def test_an_unknown_network_is_a_one_line_error():
    with pytest.raises(GsVqError, match="alex, vgg"):
        metrics.LPIPS("squeeze")


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_with_the_real_weights(net):
    reason = metrics.lpips_unavailable(net)
    if reason is not None:
        pytest.skip(f"LPIPS {net}: {reason}")
    lpips = metrics.LPIPS(net)
    a = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(0))
    assert lpips(a, a) == pytest.approx(0.0, abs=1e-5) and lpips(a, 1 - a) > 0.1
