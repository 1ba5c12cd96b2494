"""The position grid of compressed.ply: fixed point, optionally in a contracted space.

A :class:`PositionGrid` has ``2**bits`` cells per axis: ``u = lo + q * step``. Without contraction
``u`` is the position itself. With one (``radius > 0``), positions are first mapped by the
contraction of mip-NeRF 360 around ``center`` (the training cameras' centroid)::

    u = c + v                          if |v| <= r        (v = x - c)
    u = c + (2 - r / |v|) * r * v / |v|  otherwise          (|u - c| < 2r)

so inside the ball of radius ``r`` cells stay uniform, and outside it a cell spans a world length
that grows with distance: in proportion to it across the line of sight and to its square along
it, as a pixel's footprint and its depth resolution do. Forward-facing captures (fern) spread
their Gaussians over depths several times the cameras' spread; object captures (lego) lie
inside the ball, where contraction changes nothing.
"""

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

MAX_REACH = 2.0 - 2.0**-20  # contracted radii are clamped below 2r: world distance at most 2**20 r

Vec3 = Tuple[float, float, float]


def contract(x: np.ndarray, center: np.ndarray, radius: float) -> np.ndarray:
    """[N, 3] world positions -> [N, 3] contracted positions (float64)."""
    v = np.asarray(x, np.float64) - center
    d = np.linalg.norm(v, axis=1, keepdims=True)  # [N, 1]
    far = d > radius
    d = np.where(far, d, 1.0)  # only the far rows use it
    return center + v * np.where(far, (2.0 - radius / d) * radius / d, 1.0)


def uncontract(u: np.ndarray, center: np.ndarray, radius: float) -> np.ndarray:
    """Inverse of :func:`contract` (float64); radii past ``MAX_REACH * radius`` are clamped."""
    v = np.asarray(u, np.float64) - center
    rho = np.linalg.norm(v, axis=1, keepdims=True)  # [N, 1]
    far = rho > radius
    rho_c = np.minimum(rho, MAX_REACH * radius)
    d = np.where(far, radius * radius / (2.0 * radius - rho_c), rho)
    return center + v * np.where(far, d / np.where(far, rho, 1.0), 1.0)


def camera_contraction(centers: np.ndarray, spread_factor: float) -> Tuple[Vec3, float]:
    """(center, radius) for the cameras at [C, 3] ``centers``: their centroid and ``spread_factor``
    times their largest distance from it (world units)."""
    centers = np.asarray(centers, np.float64).reshape(-1, 3)
    c = centers.mean(axis=0)
    spread = float(np.linalg.norm(centers - c, axis=1).max()) if len(centers) > 1 else 0.0
    return tuple(float(v) for v in c), max(spread_factor * spread, 1e-6)


@dataclass(frozen=True)
class PositionGrid:
    """Uniform grid of ``2**bits`` cells per axis in (optionally contracted) space.

    ``lo``/``step``: the grid in contracted units (float32 arithmetic); ``center``/``radius``: the
    contraction (``radius`` 0: none, the grid is in world units).
    """

    lo: Vec3
    step: Vec3
    bits: int
    center: Vec3 = (0.0, 0.0, 0.0)
    radius: float = 0.0

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> "PositionGrid":
        """The grid of a file header's ``params`` (or a checkpoint's dict): ``lo``, ``step``,
        ``bits``; ``center`` and ``radius`` (world units) when contracted, else none."""
        return cls(tuple(p["lo"]), tuple(p["step"]), int(p["bits"]),
                   tuple(p.get("center", (0.0, 0.0, 0.0))), float(p.get("radius", 0.0)))

    def params(self) -> Dict[str, Any]:
        """Inverse of :meth:`from_params` (JSON-able): ``center``/``radius`` only when contracted."""
        out: Dict[str, Any] = {"lo": list(self.lo), "step": list(self.step), "bits": self.bits}
        if self.radius > 0:  # version 3: the grid lives in contracted space
            out.update(center=list(self.center), radius=self.radius)
        return out

    @classmethod
    def fit(cls, means: np.ndarray, bits: int, isotropic: bool = False,
            contraction: Optional[Tuple[Vec3, float]] = None) -> "PositionGrid":
        """Smallest grid with ``bits`` bits per axis covering [N, 3] ``means``.

        ``isotropic``: one step for all three axes, set by the longest extent (cubic cells; the
        shorter axes use fewer of their ``2**bits`` cells, which the octree codes for free).
        ``contraction``: (center, radius) in world units, e.g. :func:`camera_contraction`; dropped
        when every point lies inside the ball (it would change nothing).
        """
        if not 1 <= bits <= 21:
            raise ValueError(f"position bits must be in 1..21, got {bits}")
        center, radius = contraction if contraction is not None else ((0.0, 0.0, 0.0), 0.0)
        if not (radius >= 0 and np.isfinite(radius) and np.isfinite(center).all()):
            raise ValueError(f"contraction needs a finite center and radius >= 0, got {center}, {radius}")
        means = np.asarray(means, np.float32).reshape(-1, 3)
        if radius > 0 and not (np.linalg.norm(means - np.asarray(center), axis=1) > radius).any():
            center, radius = (0.0, 0.0, 0.0), 0.0
        warped = cls((0.0,) * 3, (1.0,) * 3, bits, tuple(float(v) for v in center), float(radius))
        u = warped.warp(means).astype(np.float32)
        lo = u.min(axis=0) if len(u) else np.zeros(3, np.float32)
        hi = u.max(axis=0) if len(u) else np.ones(3, np.float32)
        step = np.maximum((hi.astype(np.float64) - lo) / (2**bits - 1), 1e-12)
        if isotropic:
            step = np.full(3, step.max())
        # round the step up so that lo + (2**bits - 1) * step covers hi in float32
        step = np.nextafter(step.astype(np.float32), np.float32(np.inf))
        return cls(tuple(float(v) for v in lo), tuple(float(v) for v in step), bits, warped.center, warped.radius)

    def warp(self, x: np.ndarray) -> np.ndarray:
        """[N, 3] world -> [N, 3] grid space (float64)."""
        x = np.asarray(x, np.float64)
        return contract(x, np.asarray(self.center), self.radius) if self.radius > 0 else x

    def unwarp(self, u: np.ndarray) -> np.ndarray:
        """[N, 3] grid space -> [N, 3] world (float32)."""
        if self.radius > 0:
            u = uncontract(u, np.asarray(self.center), self.radius)
        return np.asarray(u).astype(np.float32)

    def error_bound(self, means: np.ndarray) -> np.ndarray:
        """[N, 3] world positions -> [N, 3] the largest error of their stored copies (world units):
        half a step, stretched by the contraction's largest local gain, plus float32 rounding."""
        x = np.asarray(means, np.float64).reshape(-1, 3)
        half = np.asarray(self.step, np.float64) / 2  # [3]
        gain = np.ones((len(x), 1))
        if self.radius > 0:  # |d uncontract| <= (d / r)^2 outside the ball, 1 inside
            rho = np.linalg.norm(self.warp(x) - np.asarray(self.center), axis=1, keepdims=True)
            rho = np.minimum(rho + np.linalg.norm(half), MAX_REACH * self.radius)
            d = np.where(rho > self.radius, self.radius**2 / (2 * self.radius - rho), rho)
            gain = np.maximum(1.0, (d / self.radius) ** 2)
            half = np.full(3, np.linalg.norm(half))
        big = (np.abs(x) + half * gain).astype(np.float32)
        return half * gain + 2 * np.spacing(big).astype(np.float64)

    @property
    def precision(self) -> Vec3:
        """Largest error per axis over the whole grid (world units). With a contraction this is the
        bound at the grid's farthest corner, usually loose: see :meth:`error_bound`."""
        lo, step = np.asarray(self.lo, np.float64), np.asarray(self.step, np.float64)
        corners = lo + step * (2**self.bits - 1) * np.array(list(np.ndindex(2, 2, 2)))  # [8, 3] grid space
        return tuple(float(v) for v in self.error_bound(self.unwarp(corners)).max(axis=0))

    def quantize(self, means: np.ndarray) -> np.ndarray:
        """[N, 3] float -> [N, 3] int64 cell indices (clamped to the grid)."""
        lo, step = np.asarray(self.lo, np.float64), np.asarray(self.step, np.float64)
        q = np.rint((self.warp(means) - lo) / step)
        return np.clip(q, 0, 2**self.bits - 1).astype(np.int64)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """[N, 3] cell indices -> [N, 3] float32 cell centres (world units)."""
        lo, step = np.asarray(self.lo, np.float32), np.asarray(self.step, np.float32)
        u = (lo + q.astype(np.float32) * step).astype(np.float32)
        return u if self.radius <= 0 else self.unwarp(u)
