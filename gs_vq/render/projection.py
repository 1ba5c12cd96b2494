"""EWA projection of 3D Gaussians to pinhole (optionally distorted) cameras, and spherical-harmonics colours.

Plain vectorized torch (autograd differentiates it); the maths follows gsplat 1.5.3's
``fully_fused_projection`` (pinhole, classic mode) and ``spherical_harmonics``:

- covariance ``R diag(s)^2 R^T`` from a unit-normalized ``wxyz`` quaternion;
- the projection Jacobian evaluated at the camera-space mean with ``x/z`` and ``y/z`` clamped
  to 1.3x the field of view (gsplat's ``persp_proj``), gradients stopped where clamped;
- ``eps2d`` added to the diagonal of the 2D covariance ("dilation"), conic = its inverse;
- radius per axis ``ceil(extend * sqrt(cov2d[i, i]))`` with ``extend = 3.33``, or, when
  opacities are given (as ``gsplat.rasterization`` does), the opacity-aware
  ``extend = min(3.33, sqrt(2 ln(opacity / ALPHA_THRESHOLD)))`` and Gaussians with
  ``opacity < ALPHA_THRESHOLD`` culled;
- culled (radius 0): depth outside ``[near, far]``, singular 2D covariance, or bounding box
  entirely off the image.
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .lens import distort, distort_jacobian, fold_radius2

# Smallest alpha a Gaussian may contribute to a pixel (gsplat's ALPHA_THRESHOLD, Common.h).
ALPHA_THRESHOLD = 1.0 / 255.0
# Largest alpha of one Gaussian at one pixel (the 0.999f in gsplat 1.5.3's
# RasterizeToPixels3DGSFwd.cu / Bwd.cu); keeps 1 - alpha away from 0.
MAX_ALPHA = 0.999
# Stop compositing a pixel once the transmittance after the next Gaussian would be <= this
# (the 1e-4f of the same kernels; the Gaussian that would cross it is excluded).
T_EPS = 1e-4
# Bounding-box extent in standard deviations (gsplat's 3.33f).
EXTEND = 3.33
# FOV margin of the Jacobian clamp (gsplat's persp_proj: 0.3 * tan_fov beyond the image).
FOV_MARGIN = 0.3

SH_C0 = 0.28209479177387814  # zeroth SH basis constant (the one definition in gs_vq)
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
         0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` from (unnormalized) ``wxyz`` quaternions ``[..., 4]``."""
    w, x, y, z = F.normalize(quats, p=2, dim=-1).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(quats.shape[:-1] + (3, 3))


def _clamped_ratio(num: Tensor, z: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """``z * clamp(num / z, -lo, hi)``: gsplat's FOV clamp of the Jacobian's ``tx, ty``."""
    return z * torch.maximum(torch.minimum(num / z, hi), -lo)


def project_gaussians(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    opacities: Optional[Tensor] = None,  # [N]
    radial_coeffs: Optional[Tensor] = None,  # [C, 6]
    tangential_coeffs: Optional[Tensor] = None,  # [C, 2]
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Project Gaussians into ``C`` pinhole cameras (EWA splatting), optionally distorted.

    Args:
        means: world-space centres. [N, 3]
        quats: rotations, ``wxyz``, any norm. [N, 4]
        scales: standard deviations along the local axes (activated). [N, 3]
        viewmats: world-to-camera matrices, OpenCV axes. [C, 4, 4]
        Ks: intrinsics in pixels. [C, 3, 3]
        width, height: image size in pixels.
        eps2d: added to the 2D covariance diagonal, pixels^2.
        near_plane, far_plane: camera-space depth range kept.
        opacities: activated opacities for the tighter, opacity-aware radius; None for 3.33 sigma.
        radial_coeffs, tangential_coeffs: OpenCV lens distortion (:mod:`~gs_vq.render.lens`),
            both or neither. The centre goes through the lens exactly; the covariance through
            its Jacobian at the (FOV-clamped) centre, the first-order step EWA already takes for
            the perspective division. Centres beyond the lens's fold radius are culled.

    Returns:
        radii ``[C, N, 2]`` int32 (0 where culled), means2d ``[C, N, 2]`` pixels, depths
        ``[C, N]`` camera-space z, conics ``[C, N, 3]`` (upper triangle of the inverse 2D
        covariance). means2d, depths and conics are 0 where culled.
    """
    R = viewmats[:, :3, :3]  # [C, 3, 3]
    t = viewmats[:, :3, 3]  # [C, 3]
    means_c = means @ R.transpose(1, 2) + t[:, None, :]  # [C, N, 3]
    x, y, z = means_c.unbind(-1)  # [C, N]
    in_depth = (z >= near_plane) & (z <= far_plane)  # [C, N]
    z = torch.where(in_depth, z, torch.ones_like(z))  # keeps culled entries finite

    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [C, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]  # [C, 1]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy  # [C, 1]
    tx = _clamped_ratio(x, z, cx / fx + FOV_MARGIN * tan_fovx,
                        (width - cx) / fx + FOV_MARGIN * tan_fovx)  # [C, N]
    ty = _clamped_ratio(y, z, cy / fy + FOV_MARGIN * tan_fovy,
                        (height - cy) / fy + FOV_MARGIN * tan_fovy)  # [C, N]

    # Rows of J @ R_cam, J = [[fx/z, 0, -fx tx/z^2], [0, fy/z, -fy ty/z^2]] (pinhole), or
    # J = diag(fx, fy) @ D @ [[1/z, 0, -tx/z^2], [0, 1/z, -ty/z^2]] with D the lens's Jacobian.
    rz = 1.0 / z  # [C, N]
    n0 = rz[..., None] * R[:, None, 0] - (tx * rz * rz)[..., None] * R[:, None, 2]  # [C, N, 3]
    n1 = rz[..., None] * R[:, None, 1] - (ty * rz * rz)[..., None] * R[:, None, 2]  # [C, N, 3]
    u, v = x * rz, y * rz  # [C, N] normalized coordinates of the centre
    in_lens = torch.ones_like(in_depth)
    if radial_coeffs is not None:
        d00, d01, d10, d11 = distort_jacobian(tx * rz, ty * rz, radial_coeffs, tangential_coeffs)
        n0, n1 = d00[..., None] * n0 + d01[..., None] * n1, d10[..., None] * n0 + d11[..., None] * n1
        with torch.no_grad():
            in_lens = u * u + v * v < fold_radius2(radial_coeffs)[:, None]
        u, v = distort(u, v, radial_coeffs, tangential_coeffs)
    a0, a1 = fx[..., None] * n0, fy[..., None] * n1  # [C, N, 3]
    M = quat_to_rotmat(quats) * scales[:, None, :]  # [N, 3, 3], covar = M M^T
    b0 = (a0[..., :, None] * M).sum(-2)  # [C, N, 3] (broadcast-sum: bmm is slow for 3x3)
    b1 = (a1[..., :, None] * M).sum(-2)  # [C, N, 3]
    cov_xx = (b0 * b0).sum(-1) + eps2d  # [C, N]
    cov_xy = (b0 * b1).sum(-1)  # [C, N]
    cov_yy = (b1 * b1).sum(-1) + eps2d  # [C, N]
    det = cov_xx * cov_yy - cov_xy * cov_xy  # [C, N]
    ok_det = det > 0
    inv_det = 1.0 / torch.where(ok_det, det, torch.ones_like(det))
    conics = torch.stack([cov_yy * inv_det, -cov_xy * inv_det, cov_xx * inv_det], -1)
    means2d = torch.stack([fx * u + cx, fy * v + cy], dim=-1)  # [C, N, 2]

    with torch.no_grad():
        if opacities is None:
            extend = torch.full_like(z, EXTEND)
            ok_opa = torch.ones_like(in_depth)
        else:
            opa = opacities.detach()[None, :].expand_as(z)  # [C, N]
            ok_opa = opa >= ALPHA_THRESHOLD
            ratio = torch.where(ok_opa, opa / ALPHA_THRESHOLD, torch.ones_like(opa))
            extend = torch.clamp(torch.sqrt(2.0 * torch.log(ratio)), max=EXTEND)
        rx = torch.ceil(extend * torch.sqrt(cov_xx.detach().clamp(min=0)))  # [C, N]
        ry = torch.ceil(extend * torch.sqrt(cov_yy.detach().clamp(min=0)))  # [C, N]
        mx, my = means2d.detach().unbind(-1)
        valid = in_depth & in_lens & ok_det & ok_opa & ((rx > 0) | (ry > 0))
        valid &= (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
        radii = (torch.stack([rx, ry], -1) * valid[..., None]).to(torch.int32)  # [C, N, 2]

    keep = valid[..., None]
    zero = means2d.new_zeros(())
    means2d = torch.where(keep, means2d, zero)
    conics = torch.where(keep, conics, zero)
    depths = torch.where(valid, means_c[..., 2], zero)
    return radii, means2d, depths, conics


def sh_bases(degree: int, dirs: Tensor) -> Tensor:
    """Real SH basis up to ``degree`` (<= 3) at unit directions ``[..., 3]`` -> ``[..., (d+1)^2]``.

    Same basis, ordering and signs as the reference 3DGS / gsplat code.
    """
    if not 0 <= degree <= 3:
        raise ValueError(f"sh_degree must be in [0, 3], got {degree}")
    out = [torch.full_like(dirs[..., 0], SH_C0)]
    if degree >= 1:
        x, y, z = dirs.unbind(-1)
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [SH_C2[0] * xy, SH_C2[1] * yz, SH_C2[2] * (2 * zz - xx - yy), SH_C2[3] * xz,
                SH_C2[4] * (xx - yy)]
    if degree >= 3:
        out += [
            SH_C3[0] * y * (3 * xx - yy),
            SH_C3[1] * xy * z,
            SH_C3[2] * y * (4 * zz - xx - yy),
            SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            SH_C3[4] * x * (4 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(out, dim=-1)


def sh_colors(
    degree: int,
    means: Tensor,  # [N, 3]
    coeffs: Tensor,  # [N, K, 3] or [C, N, K, 3]
    viewmats: Tensor,  # [C, 4, 4]
) -> Tensor:
    """View-dependent RGB ``[C, N, 3]`` as in gsplat.rasterization: ``max(SH(dir) + 0.5, 0)``.

    ``dir = mean - camera centre``, normalized; only the first ``(degree + 1)^2`` coefficients
    are used, so higher bands may hold anything.
    """
    n_bases = (degree + 1) ** 2
    if coeffs.shape[-2] < n_bases:
        raise ValueError(f"sh_degree {degree} needs {n_bases} coefficients, got {coeffs.shape[-2]}")
    campos = torch.inverse(viewmats)[:, :3, 3]  # [C, 3]
    dirs = F.normalize(means[None, :, :] - campos[:, None, :], p=2, dim=-1)  # [C, N, 3]
    bases = sh_bases(degree, dirs)  # [C, N, B]
    rgb = (bases[..., None] * coeffs[..., :n_bases, :]).sum(-2)  # [C, N, 3]
    return torch.clamp_min(rgb + 0.5, 0.0)


@torch.no_grad()
def reach_bounds(
    means: Tensor,  # [N, 3]
    max_scales: Tensor,  # [N]
    viewmat: Tensor,  # [4, 4]
    K: Tensor,  # [3, 3]
    eps2d: float = 0.3,
    near_plane: float = 0.01,
) -> Tuple[Tensor, Tensor, Tensor]:
    """A cheap bound on the pixels each Gaussian's projected box (pinhole, as
    :func:`project_gaussians` bounds it) can cover: ``lo [N, 2]``, ``hi [N, 2]`` (pixels) and
    ``in_front [N]`` (centre in front of the near plane; the others are culled anyway).
    ``max_scales``: each Gaussian's largest standard deviation (activated), world units.

    Bound: a 2D standard deviation is at most ``|row of J| * max(scale)`` (``covar = M M^T``
    with ``|M| = max(scale)``), and each row of the Jacobian has norm at most
    ``f / z * sqrt(1 + (x/z)^2 + (y/z)^2)`` (the FOV clamp only shrinks it); the box is
    ``EXTEND`` of those plus one pixel of rounding.
    """
    x, y, z = (means @ viewmat[:3, :3].T + viewmat[:3, 3]).unbind(-1)  # [N]
    zc = z.clamp(min=near_plane)
    u, v = x / zc, y / zc
    grow = torch.sqrt(1 + u * u + v * v) * max_scales / zc  # [N]
    f, c = torch.stack([K[0, 0], K[1, 1]]), torch.stack([K[0, 2], K[1, 2]])  # [2]
    r = EXTEND * torch.sqrt((f * grow[:, None]) ** 2 + eps2d) + 1  # [N, 2]
    centre = f * torch.stack([u, v], -1) + c  # [N, 2]
    return centre - r, centre + r, z >= near_plane
