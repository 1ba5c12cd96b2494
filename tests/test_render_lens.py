"""Projecting Gaussians through a distorted lens (gs_vq.render.lens), checked against OpenCV's own
``projectPoints`` for the centres and a Monte Carlo covariance for the shapes."""

import numpy as np
import pytest
import torch

from gs_vq.errors import GsVqError
from gs_vq.render import rasterize
from gs_vq.render.lens import distort, distort_jacobian, fold_radius2
from gs_vq.render.projection import project_gaussians

cv2 = pytest.importorskip("cv2")

# FULL_OPENCV-like coefficients: k1..k6, p1, p2 (every term of the rational model in use)
RADIAL = [-0.15, 0.03, 0.01, 0.02, 0.0, 0.01]
TANGENTIAL = [0.001, 0.002]


def opencv_dist() -> np.ndarray:
    """OpenCV's order: k1, k2, p1, p2, k3, k4, k5, k6."""
    k1, k2, k3, k4, k5, k6 = RADIAL
    return np.array([k1, k2, *TANGENTIAL, k3, k4, k5, k6])


def coeffs(C: int = 1):
    return torch.tensor([RADIAL] * C, dtype=torch.float64), torch.tensor([TANGENTIAL] * C, dtype=torch.float64)


def test_distort_is_opencvs_model():
    pts = np.random.default_rng(0).uniform(-0.6, 0.6, (200, 2))
    expected, _ = cv2.projectPoints(np.c_[pts, np.ones(len(pts))], np.zeros(3), np.zeros(3), np.eye(3), opencv_dist())
    radial, tangential = coeffs()
    xd, yd = distort(torch.from_numpy(pts[None, :, 0]), torch.from_numpy(pts[None, :, 1]), radial, tangential)
    np.testing.assert_allclose(np.stack([xd[0].numpy(), yd[0].numpy()], -1), expected.reshape(-1, 2), atol=1e-12)


def test_distort_jacobian_matches_autograd():
    pts = torch.tensor(np.random.default_rng(1).uniform(-0.6, 0.6, (50, 2)))
    radial, tangential = coeffs()
    jac = distort_jacobian(pts[None, :, 0], pts[None, :, 1], radial, tangential)
    for i, p in enumerate(pts):
        want = torch.autograd.functional.jacobian(
            lambda q: torch.stack(distort(q[None, :1], q[None, 1:], radial, tangential)).flatten(), p)  # [2, 2]
        got = torch.tensor([[jac[0][0, i], jac[1][0, i]], [jac[2][0, i], jac[3][0, i]]])
        torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)


def test_fold_radius():
    barrel = torch.tensor([[-0.3, 0, 0, 0, 0, 0.0]], dtype=torch.float64)  # r (1 - 0.3 r^2) turns at r^2 = 1/0.9
    assert abs(float(fold_radius2(barrel)[0]) - 1 / 0.9) < 0.01
    none = torch.zeros(1, 6, dtype=torch.float64)
    assert float(fold_radius2(none)[0]) > 30  # a pinhole never folds


def camera(width=96, height=80):
    K = torch.tensor([[90.0, 0, 47.0], [0, 88.0, 41.5], [0, 0, 1]], dtype=torch.float64)
    return torch.eye(4, dtype=torch.float64)[None], K[None], width, height


def test_projected_centres_are_opencvs_projection():
    viewmats, Ks, w, h = camera()
    rng = np.random.default_rng(2)
    means = torch.tensor(np.c_[rng.uniform(-1.5, 1.5, (100, 2)), rng.uniform(3, 5, 100)])
    n = len(means)
    quats = torch.tensor([[1.0, 0, 0, 0]] * n, dtype=torch.float64)
    scales = torch.full((n, 3), 0.01, dtype=torch.float64)
    radii, means2d, _, _ = project_gaussians(means, quats, scales, viewmats, Ks, w, h, radial_coeffs=coeffs()[0],
                                             tangential_coeffs=coeffs()[1])
    K_cv = Ks[0].numpy().copy()
    K_cv[:2, 2] -= 0.5  # OpenCV's pixel centres
    expected, _ = cv2.projectPoints(means.numpy(), np.zeros(3), np.zeros(3), K_cv, opencv_dist())
    seen = (radii[0] > 0).all(-1).numpy()
    assert seen.sum() > 50
    np.testing.assert_allclose(means2d[0].numpy()[seen], expected.reshape(-1, 2)[seen] + 0.5, atol=1e-9)


def test_projected_covariance_matches_monte_carlo():
    """A small anisotropic Gaussian near the image corner: the first-order 2D covariance against the
    covariance of 200k samples of it pushed through OpenCV's projection."""
    viewmats, Ks, w, h = camera()
    mean = np.array([1.6, -1.3, 4.0])
    rot = torch.tensor([[0.9, 0.3, -0.2, 0.25]], dtype=torch.float64)
    scales = torch.tensor([[0.02, 0.008, 0.012]], dtype=torch.float64)
    eps2d = 0.0
    radii, means2d, _, conics = project_gaussians(torch.tensor(mean[None]), rot, scales, viewmats, Ks, w, h, eps2d=eps2d,
                                                  radial_coeffs=coeffs()[0], tangential_coeffs=coeffs()[1])
    assert (radii > 0).all()
    a, b, c = conics[0, 0].numpy()
    cov2d = np.linalg.inv(np.array([[a, b], [b, c]]))
    from gs_vq.render.projection import quat_to_rotmat

    M = (quat_to_rotmat(rot)[0] * scales[0]).numpy()
    samples = mean + np.random.default_rng(3).standard_normal((200_000, 3)) @ M.T
    K_cv = Ks[0].numpy().copy()
    K_cv[:2, 2] -= 0.5
    px, _ = cv2.projectPoints(samples, np.zeros(3), np.zeros(3), K_cv, opencv_dist())
    empirical = np.cov(px.reshape(-1, 2).T)
    np.testing.assert_allclose(cov2d, empirical, rtol=0.03, atol=0.002)
    # the pinhole projection of the same Gaussian is off by far more: the lens is not a no-op here
    _, _, _, pin = project_gaussians(torch.tensor(mean[None]), rot, scales, viewmats, Ks, w, h, eps2d=eps2d)
    a, b, c = pin[0, 0].numpy()
    assert np.abs(np.linalg.inv(np.array([[a, b], [b, c]])) - empirical).max() > 0.1 * np.abs(empirical).max()


def test_zero_coefficients_are_the_pinhole_projection():
    viewmats, Ks, w, h = camera()
    g = torch.Generator().manual_seed(4)
    means = torch.cat([torch.rand(64, 2, generator=g, dtype=torch.float64) * 2 - 1,
                       3 + torch.rand(64, 1, generator=g, dtype=torch.float64)], -1)
    quats = torch.randn(64, 4, generator=g, dtype=torch.float64)
    scales = torch.rand(64, 3, generator=g, dtype=torch.float64) * 0.05
    pin = project_gaussians(means, quats, scales, viewmats, Ks, w, h)
    lens = project_gaussians(means, quats, scales, viewmats, Ks, w, h, radial_coeffs=torch.zeros(1, 6, dtype=torch.float64),
                             tangential_coeffs=torch.zeros(1, 2, dtype=torch.float64))
    for p, q in zip(pin, lens):
        torch.testing.assert_close(p, q, atol=1e-12, rtol=1e-12)


def test_centres_beyond_the_fold_are_culled():
    """A strong barrel lens folds at r^2 = 1/0.9: a Gaussian at r = 2 would land back inside the image."""
    viewmats, Ks, w, h = camera()
    barrel = torch.tensor([[-0.3, 0, 0, 0, 0, 0.0]], dtype=torch.float64)
    means = torch.tensor([[0.3, 0.0, 1.0], [2.0, 0.0, 1.0]], dtype=torch.float64)  # r = 0.3 and r = 2
    r = 2.0
    assert abs(90 * r * (1 - 0.3 * r * r) + 47) < w  # where the polynomial puts the far one: in the image
    quats = torch.tensor([[1.0, 0, 0, 0]] * 2, dtype=torch.float64)
    scales = torch.full((2, 3), 0.01, dtype=torch.float64)
    radii, _, _, _ = project_gaussians(means, quats, scales, viewmats, Ks, w, h, radial_coeffs=barrel,
                                       tangential_coeffs=torch.zeros(1, 2, dtype=torch.float64))
    assert (radii[0, 0] > 0).all() and (radii[0, 1] == 0).all()


def test_rasterize_checks_the_coefficients():
    viewmats, Ks, w, h = camera()
    args = (torch.zeros(1, 3), torch.tensor([[1.0, 0, 0, 0]]), torch.ones(1, 3), torch.ones(1), torch.ones(1, 3),
            viewmats.float(), Ks.float(), w, h)
    with pytest.raises(GsVqError, match="together"):
        rasterize(*args, radial_coeffs=torch.zeros(1, 6))
    with pytest.raises(GsVqError, match="radial_coeffs has shape"):
        rasterize(*args, radial_coeffs=torch.zeros(1, 4), tangential_coeffs=torch.zeros(1, 2))
    with pytest.raises(GsVqError, match="CPU backends only"):
        rasterize(*args, radial_coeffs=torch.zeros(1, 6), tangential_coeffs=torch.zeros(1, 2), backend="gsplat")

