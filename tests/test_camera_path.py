"""render.py --traj's camera paths: gsplat's generators ported exactly, and the paths they give
through a scene's cameras in any world frame (gs_vq.camera_path)."""

import os

import numpy as np
import pytest

from gs_vq import camera_path as cp

REF = os.path.join(os.path.dirname(__file__), "data", "gsplat_traj_ref.npz")


def test_generators_match_gsplat():
    """``tests/data/gsplat_traj_ref.npz`` holds gsplat 1.5.3's ``examples/datasets/traj.py`` outputs
    on 9 poses: ``generate_ellipse_path_z(poses, n_frames=30, height=poses[:, 2, 3].mean())``,
    ``generate_spiral_path(poses, bounds, n_frames=30)`` and ``generate_interpolated_path(poses, 3)``."""
    ref = np.load(REF)
    poses, bounds = ref["poses"], ref["bounds"]
    np.testing.assert_allclose(cp.generate_ellipse_path_z(poses, n_frames=30, height=poses[:, 2, 3].mean()),
                               ref["ellipse"], atol=1e-10)
    np.testing.assert_allclose(cp.generate_spiral_path(poses, bounds, n_frames=30), ref["spiral"], atol=1e-10)
    np.testing.assert_allclose(cp.generate_interpolated_path(poses, 3), ref["interp"], atol=1e-8)


def _ring(n=10, tilt=None):
    """[n, 4, 4] OpenCV camera-to-world on a ring at height 1 around the z axis, looking at the
    origin; with ``tilt``, the whole world turned by that rotation and shifted."""
    out = []
    for a in np.linspace(0, 2 * np.pi, n, endpoint=False):
        eye = np.array([3 * np.cos(a), 3 * np.sin(a), 1.0])
        z = -eye / np.linalg.norm(eye)
        x = np.cross(z, [0, 0, 1.0])
        x /= np.linalg.norm(x)
        out.append(_pose(x, z, eye))
    return _tilted(np.stack(out), tilt)


def _pose(x, z, eye):
    """[4, 4] camera-to-world of axes x, z (y = z cross x) at ``eye``."""
    m = np.eye(4)
    m[:3, :3] = np.stack([x, np.cross(z, x), z], 1)
    m[:3, 3] = eye
    return m


def _tilted(c2w, tilt):
    """``c2w [C, 4, 4]`` moved by the rotation ``tilt`` [3, 3] and a fixed shift (None: as is)."""
    if tilt is None:
        return c2w
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = tilt, [0.5, -2.0, 7.0]
    return T @ c2w


def _forward(tilt=None):
    """[9, 4, 4] a forward-facing capture (LLFF-like): a 3x3 grid of cameras looking down +z
    (OpenCV, y down), turned towards a point 5 ahead."""
    out = []
    for dx, dy in [(x, y) for x in (-0.3, 0, 0.3) for y in (-0.2, 0, 0.2)]:
        eye = np.array([dx, dy, 0.0])
        z = np.array([0.0, 0.0, 5.0]) - eye
        z /= np.linalg.norm(z)
        x = np.cross([0, 1.0, 0], z)  # OpenCV: x = y cross z, y down (+y)
        x /= np.linalg.norm(x)
        out.append(_pose(x, z, eye))
    return _tilted(np.stack(out), tilt)


def _rotation(seed=3):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


@pytest.mark.parametrize("kind", cp.TRAJ_KINDS)
def test_paths_are_rigid_poses_with_the_asked_frame_count(kind):
    c2w = _ring(10)
    path = cp.camera_path(c2w, cp.PathConfig(kind=kind, n_frames=36), bounds=(1.0, 5.0))
    expected = 36 if kind != "interp" else round(36 / 9) * 9
    assert path.shape == (expected, 4, 4)
    R = path[:, :3, :3]
    np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-8)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-8)


def test_the_ellipse_circles_the_cameras_at_their_height_looking_at_the_centre():
    path = cp.camera_path(_ring(12), cp.PathConfig(kind="ellipse", n_frames=24))
    pos = path[:, :3, 3]
    np.testing.assert_allclose(pos[:, 2], 1.0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(pos[:, :2], axis=1), 3.0, rtol=0.05)
    forward = path[:, :3, 2]
    to_axis = -pos * [1, 1, 0]
    cos = (forward * to_axis).sum(1) / np.linalg.norm(to_axis, axis=1)
    assert np.all(cos > 0.9)  # looking in, at the focus point near the origin
    assert np.all(path[:, 2, 1] < 0)  # OpenCV y points down in the world: the video is upright


@pytest.mark.parametrize("kind", cp.TRAJ_KINDS)
def test_paths_follow_the_cameras_in_any_world_frame(kind):
    """The same capture in a turned and shifted world gives the same path, turned and shifted."""
    R = _rotation()
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, [0.5, -2.0, 7.0]
    cfg = cp.PathConfig(kind=kind, n_frames=20)
    capture = _forward if kind == "spiral" else lambda tilt=None: _ring(10, tilt)  # a spiral is forward-facing
    a = cp.camera_path(capture(), cfg, bounds=(1.0, 5.0))
    b = cp.camera_path(capture(tilt=R), cfg, bounds=(1.0, 5.0))
    np.testing.assert_allclose(T @ a, b, atol=1e-6)


def test_spiral_looks_forward_like_its_cameras():
    """A forward-facing capture: the spiral's cameras look where the capture looks, upright, and
    converge on a point ahead."""
    path = cp.camera_path(_forward(), cp.PathConfig(kind="spiral", n_frames=30), bounds=(2.0, 10.0))
    assert np.all(path[:, 2, 2] > 0.9)  # forward stays +z
    assert np.all(path[:, 1, 1] > 0.9)  # and y stays down
    pos, fwd = path[:, :3, 3], path[:, :3, 2]
    spread = np.ptp(pos[:, :2], axis=0)
    assert np.all(spread > 0.05)  # it moves
    ahead = pos + fwd * ((4.0 - pos[:, 2]) / fwd[:, 2])[:, None]  # where each axis crosses z = 4
    assert np.all(np.ptp(ahead[:, :2], axis=0) < 0.5 * spread)  # closer together than the cameras


def test_bad_kind_and_too_few_cameras_are_value_errors():
    with pytest.raises(ValueError, match="ellipse, spiral, interp"):
        cp.camera_path(_ring(4), cp.PathConfig(kind="circle"))
    with pytest.raises(ValueError, match="at least 2"):
        cp.camera_path(_ring(1), cp.PathConfig(kind="interp"))
