"""Camera paths through a scene's training cameras, for ``render.py --traj``: ``ellipse``, ``spiral``, ``interp``.

The three generators are gsplat 1.5.3's ``examples/datasets/traj.py`` (itself from Google's
multinerf, Apache-2.0), ported line for line because the gsplat wheel does not ship its examples;
``tests/test_camera_path.py`` checks them against gsplat's outputs. Poses are camera-to-world
``[N, 3, 4]`` numpy arrays. :func:`camera_path` is the entry point: it takes gs-vq's cameras
(OpenCV axes, any world frame) and does what gsplat's parser does before calling them, turning
the world so that the cameras' mean up is +z (gsplat's ``similarity_from_cameras``, without the
scale, which no path depends on).
"""

from dataclasses import dataclass
from typing import Sequence

import numpy as np

TRAJ_KINDS = ("ellipse", "spiral", "interp")


@dataclass
class PathConfig:
    """What :func:`camera_path` makes."""

    kind: str = "ellipse"  # one of TRAJ_KINDS
    n_frames: int = 120  # frames of ellipse and spiral; interp gives about this many (a multiple of N - 1)
    n_rots: int = 2  # spiral: turns
    zrate: float = 0.5  # spiral: forward-backward rate per turn


def normalize(x: np.ndarray) -> np.ndarray:
    """Normalization helper function."""
    return x / np.linalg.norm(x)


def viewmatrix(lookdir: np.ndarray, up: np.ndarray, position: np.ndarray) -> np.ndarray:
    """[3, 4] pose with z along ``lookdir`` and y towards ``up``, at ``position``."""
    vec2 = normalize(lookdir)
    vec0 = normalize(np.cross(up, vec2))
    vec1 = normalize(np.cross(vec2, vec0))
    return np.stack([vec0, vec1, vec2, position], axis=1)


def focus_point_fn(poses: np.ndarray) -> np.ndarray:
    """[3] point nearest (least squares) to every camera's optical axis."""
    directions, origins = poses[:, :3, 2:3], poses[:, :3, 3:4]
    m = np.eye(3) - directions * np.transpose(directions, [0, 2, 1])
    mt_m = np.transpose(m, [0, 2, 1]) @ m
    return np.linalg.inv(mt_m.mean(0)) @ (mt_m @ origins).mean(0)[:, 0]


def average_pose(poses: np.ndarray) -> np.ndarray:
    """[3, 4] pose at the mean position with the mean z axis and up vector."""
    position = poses[:, :3, 3].mean(0)
    z_axis = poses[:, :3, 2].mean(0)
    up = poses[:, :3, 1].mean(0)
    return viewmatrix(z_axis, up, position)


def generate_spiral_path(poses, bounds, n_frames=120, n_rots=2, zrate=0.5, spiral_scale_f=1.0,
                         spiral_scale_r=1.0, focus_distance=0.75) -> np.ndarray:
    """[n_frames, 3, 4] forward-facing spiral (multinerf's: OpenGL axes, poses centred on their
    average); ``bounds`` are near and far depths of the scene (world units)."""
    near_bound, far_bound = bounds.min(), bounds.max()
    # all cameras point towards the world point (0, 0, -focal): a weighted mean in disparity space
    focal = 1 / (((1 - focus_distance) / near_bound + focus_distance / far_bound)) * spiral_scale_f
    radii = np.percentile(np.abs(poses[:, :3, 3]), 90, 0) * spiral_scale_r  # [3]
    radii = np.concatenate([radii, [1.0]])
    render_poses = []
    cam2world = average_pose(poses)
    up = poses[:, :3, 1].mean(0)
    for theta in np.linspace(0.0, 2.0 * np.pi * n_rots, n_frames, endpoint=False):
        t = radii * [np.cos(theta), -np.sin(theta), -np.sin(theta * zrate), 1.0]
        position = cam2world @ t
        lookat = cam2world @ [0, 0, -focal, 1.0]
        render_poses.append(viewmatrix(position - lookat, up, position))
    return np.stack(render_poses, axis=0)


def generate_ellipse_path_z(poses: np.ndarray, n_frames: int = 120, variation: float = 0.0,
                            phase: float = 0.0, height: float = 0.0) -> np.ndarray:
    """[n_frames, 3, 4] ellipse in the plane z = ``height`` around the cameras' focus point,
    looking at it (OpenCV axes: z forward)."""
    center = focus_point_fn(poses)
    offset = np.array([center[0], center[1], height])
    sc = np.percentile(np.abs(poses[:, :3, 3] - offset), 90, axis=0)  # ellipse axes, symmetric in xy
    low, high = -sc + offset, sc + offset
    z_low = np.percentile((poses[:, :3, 3]), 10, axis=0)
    z_high = np.percentile((poses[:, :3, 3]), 90, axis=0)

    def get_positions(theta):
        return np.stack([
            low[0] + (high - low)[0] * (np.cos(theta) * 0.5 + 0.5),
            low[1] + (high - low)[1] * (np.sin(theta) * 0.5 + 0.5),
            variation * (z_low[2] + (z_high - z_low)[2] * (np.cos(theta + 2 * np.pi * phase) * 0.5 + 0.5)) + height,
        ], -1)

    theta = np.linspace(0, 2.0 * np.pi, n_frames + 1, endpoint=True)
    positions = get_positions(theta)[:-1]  # the last one repeats the first
    # the path's up: the world axis closest to the mean of the input poses' y axes
    avg_up = poses[:, :3, 1].mean(0)
    avg_up = avg_up / np.linalg.norm(avg_up)
    ind_up = np.argmax(np.abs(avg_up))
    up = np.eye(3)[ind_up] * np.sign(avg_up[ind_up])
    return np.stack([viewmatrix(center - p, up, p) for p in positions])


def generate_interpolated_path(poses: np.ndarray, n_interp: int, spline_degree: int = 5,
                               smoothness: float = 0.03, rot_weight: float = 0.1) -> np.ndarray:
    """[n_interp * (N - 1), 3, 4] smooth B-spline through the keyframe ``poses`` [N, 3, 4], fitted on
    (position, lookat point, up point); ``rot_weight`` (world units) weighs rotation against
    translation, ``smoothness`` 0 interpolates exactly."""
    import scipy.interpolate

    def poses_to_points(poses, dist):
        pos = poses[:, :3, -1]
        lookat = poses[:, :3, -1] - dist * poses[:, :3, 2]
        up = poses[:, :3, -1] + dist * poses[:, :3, 1]
        return np.stack([pos, lookat, up], 1)

    def points_to_poses(points):
        return np.array([viewmatrix(p - l, u - p, p) for p, l, u in points])

    def interp(points, n, k, s):
        sh = points.shape
        pts = np.reshape(points, (sh[0], -1))
        k = min(k, sh[0] - 1)
        tck, _ = scipy.interpolate.splprep(pts.T, k=k, s=s)
        u = np.linspace(0, 1, n, endpoint=False)
        new_points = np.array(scipy.interpolate.splev(u, tck))
        return np.reshape(new_points.T, (n, sh[1], sh[2]))

    points = poses_to_points(poses, dist=rot_weight)
    new_points = interp(points, n_interp * (points.shape[0] - 1), k=spline_degree, s=smoothness)
    return points_to_poses(new_points)


def z_up_transform(c2w: np.ndarray) -> np.ndarray:
    """[4, 4] rigid transform of the world that turns the cameras' mean up (-y, OpenCV axes) onto
    +z, as gsplat's ``similarity_from_cameras`` does (without its scale, which no path depends on),
    moves the cameras' centre to the origin and turns the world about z so that the first camera
    lies towards +x. The path then does not depend on the world frame, and the ellipse starts beside
    the first camera. The centre is the point nearest to every optical axis (:func:`focus_point_fn`)
    where the axes cross, the mean camera position where they are nearly parallel (forward-facing
    captures); gsplat's median of the axes' points nearest the world origin depends on the origin."""
    R, t = c2w[:, :3, :3], c2w[:, :3, 3]
    world_up = normalize(np.mean(-R[:, :, 1], axis=0))
    z = np.array([0.0, 0.0, 1.0])
    c, cross = float(world_up @ z), np.cross(world_up, z)
    skew = np.array([[0.0, -cross[2], cross[1]], [cross[2], 0.0, -cross[0]], [-cross[1], cross[0], 0.0]])
    R_align = np.eye(3) + skew + skew @ skew / (1 + c) if c > -1 + 1e-9 else np.diag([1.0, -1.0, -1.0])
    d = R[:, :, 2]  # [N, 3] optical axes
    m = np.eye(3) - d[:, :, None] * d[:, None, :]  # [N, 3, 3] projections off each axis
    centre = focus_point_fn(c2w[:, :3]) if np.linalg.cond(m.mean(0)) < 1e3 else t.mean(0)
    dx, dy = (R_align @ (t[0] - centre))[:2]
    yaw = -np.arctan2(dy, dx) if dx * dx + dy * dy > 1e-18 else 0.0
    R_yaw = np.array([[np.cos(yaw), -np.sin(yaw), 0.0], [np.sin(yaw), np.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
    T = np.eye(4)
    T[:3, :3] = R_yaw @ R_align
    T[:3, 3] = -T[:3, :3] @ centre
    return T


def _h(poses: np.ndarray) -> np.ndarray:
    """[N, 3, 4] -> [N, 4, 4]."""
    out = np.tile(np.eye(4), (len(poses), 1, 1))
    out[:, :3, :4] = poses
    return out


def camera_path(c2w: np.ndarray, cfg: PathConfig, bounds: Sequence[float] = (0.01, 1.0)) -> np.ndarray:
    """[F, 4, 4] camera-to-world (OpenCV axes, the input's world frame) along ``cfg.kind``.

    ``c2w`` [N, 4, 4] are the keyframes, in order; ``bounds`` (near, far) the scene's depths in
    world units, which only the spiral uses (its focus depth).
    """
    if cfg.kind not in TRAJ_KINDS:
        raise ValueError(f"unknown camera path {cfg.kind!r}: one of {', '.join(TRAJ_KINDS)}")
    c2w = np.asarray(c2w, dtype=np.float64)
    if cfg.kind == "interp":
        if len(c2w) < 2:
            raise ValueError("an interpolated path needs at least 2 cameras")
        n_interp = max(1, int(round(cfg.n_frames / (len(c2w) - 1))))
        return _h(generate_interpolated_path(c2w[:, :3], n_interp))
    T = z_up_transform(c2w)
    poses = T @ c2w  # [N, 4, 4], z up
    if cfg.kind == "ellipse":
        path = _h(generate_ellipse_path_z(poses[:, :3], cfg.n_frames, height=poses[:, 2, 3].mean()))
    else:  # spiral: multinerf's, in OpenGL axes about the average pose
        flip = np.diag([1.0, -1.0, -1.0, 1.0])
        gl = poses @ flip
        centre = _h(average_pose(gl[:, :3])[None])[0]
        local = np.linalg.inv(centre) @ gl
        spiral = _h(generate_spiral_path(local[:, :3], np.asarray(bounds, dtype=np.float64), cfg.n_frames,
                                         cfg.n_rots, cfg.zrate))
        path = centre @ spiral @ flip
    return np.linalg.inv(T) @ path
