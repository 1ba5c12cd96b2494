"""The position grid in contracted space (gs_vq.io.grid) and its version-3 files."""

import numpy as np
import pytest
import torch

from gs_vq.io.compressed import describe_compressed, read_compressed, write_compressed
from gs_vq.io.grid import PositionGrid, camera_contraction, contract, uncontract

from test_compressed import _expect_one_line_error, make_scene


def forward_facing(n=4000, seed=0):
    """Points in a frustum looking down +z from cameras near the origin, depth 5..100."""
    rng = np.random.default_rng(seed)
    depth = np.exp(rng.uniform(np.log(5.0), np.log(100.0), n))
    xy = rng.uniform(-0.6, 0.6, (n, 2)) * depth[:, None]
    return np.concatenate([xy, depth[:, None]], 1).astype(np.float32)  # [N, 3]


def test_contract_is_identity_inside_and_inverts_outside():
    rng = np.random.default_rng(1)
    c = np.array([0.5, -1.0, 2.0])
    x = c + rng.normal(size=(500, 3)) * np.exp(rng.uniform(-3, 4, (500, 1)))
    u = contract(x, c, 2.0)
    inside = np.linalg.norm(x - c, axis=1) <= 2.0
    assert inside.any() and (~inside).any()
    assert np.array_equal(u[inside], x[inside])
    assert (np.linalg.norm(u - c, axis=1) < 4.0).all()
    np.testing.assert_allclose(uncontract(u, c, 2.0), x, rtol=1e-9, atol=1e-9)
    assert np.isfinite(uncontract(c + np.array([[9.0, 0, 0]]), c, 2.0)).all()  # past 2r: clamped


def test_camera_contraction_is_centroid_and_scaled_spread():
    centers = np.array([[0.0, 0, 0], [2.0, 0, 0], [1.0, 1.0, 0]])
    c, r = camera_contraction(centers, 4.0)
    np.testing.assert_allclose(c, [1.0, 1 / 3, 0])
    assert r == pytest.approx(4.0 * np.linalg.norm([1.0, -1 / 3, 0]))


def test_contraction_that_changes_nothing_is_dropped():
    x = np.random.default_rng(2).uniform(-1, 1, (100, 3)).astype(np.float32)
    assert PositionGrid.fit(x, 10, contraction=((0.0, 0.0, 0.0), 5.0)) == PositionGrid.fit(x, 10)
    assert PositionGrid.fit(x, 10, contraction=((0.0, 0.0, 0.0), 0.5)).radius == 0.5


def test_contracted_grid_gives_smaller_relative_error_on_forward_facing_points():
    """At the same bits, error over distance from the cameras (what a pixel sees) is lower."""
    x = forward_facing()
    d = np.linalg.norm(x, axis=1)
    uniform = PositionGrid.fit(x, 10)
    warped = PositionGrid.fit(x, 10, contraction=((0.0, 0.0, 0.0), 10.0))
    rel = {}
    for name, g in (("uniform", uniform), ("warped", warped)):
        back = g.dequantize(g.quantize(x))
        err = np.abs(back - x)
        assert (err <= g.error_bound(x) * 1.0001 + 1e-7).all(), name
        rel[name] = np.quantile(np.linalg.norm(back - x, axis=1) / d, 0.99)
    assert rel["warped"] < 0.75 * rel["uniform"]  # measured 0.0069 vs 0.0113


def test_contracted_grid_file_is_version_3_and_loads_back_exactly(tmp_path):
    scene = make_scene(n=4000)
    scene.means = torch.from_numpy(forward_facing())
    grid = PositionGrid.fit(scene.means.numpy(), 11, contraction=((0.0, 0.0, 0.0), 10.0))
    scene.means = torch.from_numpy(grid.dequantize(grid.quantize(scene.means.numpy())))  # as the plugin snaps
    scene.grid = grid
    path = str(tmp_path / "c.ply")
    report = write_compressed(path, scene)
    assert describe_compressed(path)["version"] == 3
    back = read_compressed(path)
    assert back.grid == grid
    assert torch.equal(back.means, scene.means[torch.from_numpy(report["order"])])
    # without contraction the same writer still writes version 2
    plain = make_scene(n=300)
    write_compressed(str(tmp_path / "p.ply"), plain)
    assert describe_compressed(str(tmp_path / "p.ply"))["version"] == 2


@pytest.mark.parametrize("edit,version", [
    (lambda p: p.update(radius=5.0, center=[0.0, 0.0, 0.0]), 2),  # contraction in a version-2 file
    (lambda p: p.update(radius=-1.0), 3),
    (lambda p: p.update(center=[0.0, 0.0]), 3),
    (lambda p: p.update(radius="1"), 3),
    (lambda p: p.pop("center"), 3),
])
def test_bad_contraction_params_are_one_line_errors(tmp_path, edit, version):
    from gs_vq.io import container

    scene = make_scene(n=500)
    scene.grid = PositionGrid.fit(scene.means.numpy(), 10, contraction=((0.0, 0.0, 0.0), 0.5))
    good = str(tmp_path / "g.ply")
    write_compressed(good, scene)
    meta, sections = container.read_container(open(good, "rb").read(), good)
    edit(meta["sections"][0]["params"])
    path = str(tmp_path / "bad.ply")
    container.write_container(path, dict(meta, version=version), list(sections.items()))
    _expect_one_line_error(path)
