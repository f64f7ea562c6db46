"""Exact ray casting of simple solids: the ground truth behind the synthetic dishes.

Why: synthetic depth, masks and volumes must agree exactly, so every food shape has an
analytic (or exact piecewise-bilinear) volume and a ray intersection of the same surface.
World frame: z up, table plane z = 0, metres. Camera: OpenCV pinhole (x right, y down,
z forward), X_cam = R @ X_world + t. Ray directions are scaled so that the ray parameter
t equals the camera z-depth, which is what depth maps store (see SPEC.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS_T = 1e-9  # smallest accepted ray parameter (m); rays start at the camera centre
INF = np.inf


# --------------------------------------------------------------------------- camera
@dataclass
class Camera:
    """Pinhole camera; X_cam = R @ X_world + t, pixel centres at integer coordinates."""
    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    width: int
    height: int

    def __post_init__(self) -> None:
        self.K = np.asarray(self.K, dtype=np.float64)
        self.R = np.asarray(self.R, dtype=np.float64)
        self.t = np.asarray(self.t, dtype=np.float64).reshape(3)
        if self.K.shape != (3, 3) or self.R.shape != (3, 3):
            raise ValueError(f"Camera: K and R must be 3x3, got {self.K.shape}, {self.R.shape}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"Camera: width/height must be positive, got {self.width}x{self.height}")

    @classmethod
    def look_at(cls, elevation_deg: float, azimuth_deg: float, distance_m: float,
                target: tuple[float, float, float] = (0.0, 0.0, 0.0), f_px: float = 615.0,
                width: int = 640, height: int = 480, cx: float | None = None,
                cy: float | None = None) -> "Camera":
        """Camera on a sphere around `target`; elevation 90 = straight down.

        The image x axis is horizontal (perpendicular to the azimuth direction), so the
        pose stays well defined at elevation 90.
        """
        if not (0.0 < elevation_deg <= 90.0):
            raise ValueError(f"elevation_deg must be in (0, 90], got {elevation_deg}")
        if distance_m <= 0:
            raise ValueError(f"distance_m must be positive, got {distance_m}")
        el, az = np.deg2rad(elevation_deg), np.deg2rad(azimuth_deg)
        tgt = np.asarray(target, dtype=np.float64)
        back = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        C = tgt + distance_m * back
        z_ax = -back
        x_ax = np.array([-np.sin(az), np.cos(az), 0.0])
        y_ax = np.cross(z_ax, x_ax)
        R = np.stack([x_ax, y_ax, z_ax])
        t = -R @ C
        cx = (width - 1) / 2.0 if cx is None else cx
        cy = (height - 1) / 2.0 if cy is None else cy
        K = np.array([[f_px, 0.0, cx], [0.0, f_px, cy], [0.0, 0.0, 1.0]])
        return cls(K=K, R=R, t=t, width=int(width), height=int(height))

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates."""
        return -self.R.T @ self.t

    def rays(self) -> tuple[np.ndarray, np.ndarray]:
        """(origin (3,), dirs (H*W, 3)) in world; dirs have camera-z component 1."""
        u, v = np.meshgrid(np.arange(self.width, dtype=np.float64),
                           np.arange(self.height, dtype=np.float64))
        u, v = u.ravel(), v.ravel()
        Ki = np.linalg.inv(self.K)
        w = Ki[2, 0] * u + Ki[2, 1] * v + Ki[2, 2]
        x = (Ki[0, 0] * u + Ki[0, 1] * v + Ki[0, 2]) / w
        y = (Ki[1, 0] * u + Ki[1, 1] * v + Ki[1, 2]) / w
        R = self.R  # world dir = R.T @ (x, y, 1), written out: small matmuls are slow here
        dirs = x[:, None] * R[0][None] + y[:, None] * R[1][None] + R[2][None]
        return self.center, dirs

    def project(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (N,3) -> (pixel uv (N,2), camera z-depth (N,))."""
        Xc = np.asarray(X, dtype=np.float64) @ self.R.T + self.t
        z = Xc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = (Xc @ self.K.T)[:, :2] / z[:, None]
        return uv, z


# --------------------------------------------------------------------------- primitives
def _first(cands: list) -> tuple[np.ndarray, np.ndarray]:
    """Nearest of several face hits (None entries are skipped faces): (t (N,), normals (N,3)).
    Face normals may be (1,3) constants; they are broadcast here."""
    cands = [c for c in cands if c is not None]
    t = cands[0][0].copy()
    n = np.array(np.broadcast_to(cands[0][1], (len(t), 3)))
    for tf, nf in cands[1:]:
        better = np.nonzero(tf < t)[0]
        t[better] = tf[better]
        n[better] = nf if nf.shape[0] == 1 else nf[better]
    return t, n


def _unit(n: np.ndarray) -> np.ndarray:
    """Row-normalise (N,3); np.linalg.norm(axis=1) is ~50x slower on this shape."""
    ln = np.sqrt(n[:, 0] * n[:, 0] + n[:, 1] * n[:, 1] + n[:, 2] * n[:, 2])
    return n / np.maximum(ln, 1e-30)[:, None]


def _dot(X: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Row-wise dot product: X (N,3) with v (3,) or (N,3)."""
    v = np.asarray(v, dtype=np.float64)
    if v.ndim == 1:
        return X[:, 0] * v[0] + X[:, 1] * v[1] + X[:, 2] * v[2]
    return X[:, 0] * v[:, 0] + X[:, 1] * v[:, 1] + X[:, 2] * v[:, 2]


def _mul(X: np.ndarray, M: np.ndarray) -> np.ndarray:
    """X @ M for X (N,3), M (3,3), written out (numpy's small-matrix matmul is slow here)."""
    return X[:, 0:1] * M[0][None] + X[:, 1:2] * M[1][None] + X[:, 2:3] * M[2][None]


def _disc(o: np.ndarray, d: np.ndarray, cx: float, cy: float, z: float, r_in: float,
          r_out: float, nz: float) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal annulus r_in <= rho <= r_out at height z (r_in = 0: a disc)."""
    dz = np.ascontiguousarray(d[:, 2])
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (z - o[2]) / dz
    px = o[0] - cx + t * np.ascontiguousarray(d[:, 0])
    py = o[1] - cy + t * np.ascontiguousarray(d[:, 1])
    rho2 = px * px + py * py
    ok = np.isfinite(t) & (t > EPS_T) & (rho2 <= r_out * r_out) & (rho2 >= r_in * r_in)
    return np.where(ok, t, INF), np.array([[0.0, 0.0, nz]])


def _cone_wall(o: np.ndarray, d: np.ndarray, cx: float, cy: float, za: float, zb: float,
               ra: float, rb: float, sign: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Surface of revolution rho(z) = ra + (rb - ra)(z - za)/(zb - za), za <= z <= zb.

    Cylinder walls (ra == rb), cone walls (rb == 0) and flaring bowl walls share this
    quadratic. sign = +1: normal points away from the axis, -1: towards it.
    Only rays whose piece inside the slab za <= z <= zb comes within the wall's radius
    range are solved (big plates and bowls cover the whole image; their walls don't).
    """
    N = len(d)
    best_all = np.full(N, INF)
    n_all = np.zeros((N, 3))
    lo, hi = min(ra, rb), max(ra, rb)
    px0, py0 = o[0] - cx, o[1] - cy
    if o[2] >= zb:  # camera above the wall: only downward rays, entering at zb
        dz = np.ascontiguousarray(d[:, 2])  # strided column arithmetic is several x slower
        down = dz < 0
        inv = 1.0 / np.where(down, dz, -1.0)
        gx = np.ascontiguousarray(d[:, 0]) * inv  # horizontal step per unit of height
        gy = np.ascontiguousarray(d[:, 1]) * inv
        ax = px0 + (zb - o[2]) * gx  # horizontal segment inside the slab: a + u e, u in [0, 1]
        ay = py0 + (zb - o[2]) * gy
        ex, ey = (za - zb) * gx, (za - zb) * gy
        u = np.clip(-(ax * ex + ay * ey) / (ex * ex + ey * ey + 1e-300), 0.0, 1.0)
        mx, my = ax + u * ex, ay + u * ey
        near = (mx * mx + my * my) <= hi * hi * (1 + 1e-9) + 1e-12
        ax2 = ax * ax + ay * ay
        ax += ex
        ay += ey
        far = np.maximum(ax2, ax * ax + ay * ay) >= lo * lo * (1 - 1e-9)
        cand = np.nonzero(down & near & far)[0]
    else:
        cand = np.arange(N)
    if cand.size == 0:
        return best_all, n_all
    d = d[cand]
    k = (rb - ra) / (zb - za)
    q = ra + k * (o[2] - za)
    dx, dy, dz = (np.ascontiguousarray(d[:, i]) for i in range(3))
    s = k * dz
    A = dx * dx + dy * dy - s * s
    B = 2.0 * (px0 * dx + py0 * dy - q * s)
    C = px0 * px0 + py0 * py0 - q * q
    small = np.abs(A) < 1e-14
    disc = B * B - 4 * A * C
    sq = np.sqrt(np.maximum(disc, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        Asafe = np.where(small, 1.0, A)
        r1 = (-B - sq) / (2 * Asafe)
        r2 = (-B + sq) / (2 * Asafe)
        lin = np.where(np.abs(B) > 1e-18, -C / np.where(B == 0, 1.0, B), INF)
    r1 = np.where(small, lin, np.where(disc >= 0, r1, INF))
    r2 = np.where(small, INF, np.where(disc >= 0, r2, INF))
    best = np.full(len(A), INF)
    for r in (r2, r1):  # r1 wins when both are valid and r1 < r2 (A may be negative)
        with np.errstate(invalid="ignore"):
            z = o[2] + r * dz
            rad = q + r * s
        ok = np.isfinite(r) & (r > EPS_T) & (z >= za) & (z <= zb) & (rad >= 0)
        best = np.where(ok & (r < best), r, best)
    bf = np.where(np.isfinite(best), best, 0.0)
    nx, ny = px0 + bf * dx, py0 + bf * dy
    nz = -(q + bf * s) * k
    inv_len = sign / np.maximum(np.sqrt(nx * nx + ny * ny + nz * nz), 1e-30)
    best_all[cand] = best
    n_all[cand, 0] = nx * inv_len
    n_all[cand, 1] = ny * inv_len
    n_all[cand, 2] = nz * inv_len
    return best_all, n_all


def _bottom(o: np.ndarray, d: np.ndarray, cx: float, cy: float, z0: float, r: float):
    """Base disc of a solid standing on z0; None (skipped) when the ray origin is above
    z0, since a ray from above always meets another face of the solid first."""
    return None if o[2] >= z0 else _disc(o, d, cx, cy, z0, 0.0, r, -1.0)


def _rot_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _box_corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                     for z in (lo[2], hi[2])])


# --------------------------------------------------------------------------- shapes
class Shape:
    """Base: closed solid (or plane) with exact volume above z0 and a ray intersection."""
    volume_m3: float = 0.0

    def bounds(self) -> tuple[np.ndarray, np.ndarray] | None:
        """World AABB (lo, hi), or None when unbounded."""
        return None

    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


@dataclass
class Plane(Shape):
    """Infinite horizontal support plane (table)."""
    z0: float = 0.0

    @property
    def volume_m3(self) -> float:  # type: ignore[override]
        return 0.0

    def intersect(self, origin, dirs):
        return _first([_disc(np.asarray(origin, float), dirs, 0.0, 0.0, self.z0, 0.0, INF, 1.0)])


@dataclass
class SphereCap(Shape):
    """Spherical cap: base circle of `radius` on z = z0, apex at z0 + height."""
    cx: float
    cy: float
    radius: float
    height: float
    z0: float = 0.0

    def __post_init__(self) -> None:
        if self.radius <= 0 or self.height <= 0:
            raise ValueError(f"SphereCap: radius and height must be positive, got "
                             f"{self.radius}, {self.height}")
        self.R_sph = (self.radius ** 2 + self.height ** 2) / (2 * self.height)
        self.zc = self.z0 + self.height - self.R_sph

    @property
    def volume_m3(self) -> float:  # type: ignore[override]
        h, a = self.height, self.radius
        return float(np.pi * h * (3 * a * a + h * h) / 6.0)

    def bounds(self):
        r = self.R_sph if self.height > self.radius else self.radius
        return (np.array([self.cx - r, self.cy - r, self.z0]),
                np.array([self.cx + r, self.cy + r, self.z0 + self.height]))

    def contains(self, p: np.ndarray) -> np.ndarray:
        """Points (N,3) inside the closed solid (used by tests and overlap checks)."""
        c = np.array([self.cx, self.cy, self.zc])
        return (((p - c) ** 2).sum(1) <= self.R_sph ** 2) & (p[:, 2] >= self.z0)

    def intersect(self, origin, dirs):
        o = np.asarray(origin, float)
        c = np.array([self.cx, self.cy, self.zc])
        oc = o - c
        a = _dot(dirs, dirs)
        b = 2 * _dot(dirs, oc)
        cc = oc @ oc - self.R_sph ** 2
        disc = b * b - 4 * a * cc
        sq = np.sqrt(np.maximum(disc, 0.0))
        best = np.full(len(a), INF)
        for r in ((-b + sq) / (2 * a), (-b - sq) / (2 * a)):
            z = o[2] + r * dirs[:, 2]
            ok = (disc >= 0) & (r > EPS_T) & (z >= self.z0) & (r < best)
            best = np.where(ok, r, best)
        p = o + np.where(np.isfinite(best), best, 0.0)[:, None] * dirs
        n = (p - c) / self.R_sph
        return _first([(best, n), _bottom(o, dirs, self.cx, self.cy, self.z0, self.radius)])


@dataclass
class Cylinder(Shape):
    """Upright cylinder standing on z = z0."""
    cx: float
    cy: float
    radius: float
    height: float
    z0: float = 0.0

    @property
    def volume_m3(self) -> float:  # type: ignore[override]
        return float(np.pi * self.radius ** 2 * self.height)

    def bounds(self):
        r = self.radius
        return (np.array([self.cx - r, self.cy - r, self.z0]),
                np.array([self.cx + r, self.cy + r, self.z0 + self.height]))

    def contains(self, p: np.ndarray) -> np.ndarray:
        rho2 = (p[:, 0] - self.cx) ** 2 + (p[:, 1] - self.cy) ** 2
        return (rho2 <= self.radius ** 2) & (p[:, 2] >= self.z0) & (p[:, 2] <= self.z0 + self.height)

    def intersect(self, origin, dirs):
        o = np.asarray(origin, float)
        z1 = self.z0 + self.height
        return _first([
            _disc(o, dirs, self.cx, self.cy, z1, 0.0, self.radius, 1.0),
            _cone_wall(o, dirs, self.cx, self.cy, self.z0, z1, self.radius, self.radius),
            _bottom(o, dirs, self.cx, self.cy, self.z0, self.radius)])


@dataclass
class Frustum(Shape):
    """Solid truncated cone standing on z = z0: radius r0 at z0, r1 at z0 + height (food
    that fills a bowl up to the wall: its side follows one segment of the bowl profile)."""
    cx: float
    cy: float
    r0: float
    r1: float
    height: float
    z0: float = 0.0

    def __post_init__(self) -> None:
        if self.r0 <= 0 or self.r1 <= 0 or self.height <= 0:
            raise ValueError(f"Frustum: radii and height must be positive, got "
                             f"{self.r0}, {self.r1}, {self.height}")

    @property
    def volume_m3(self) -> float:  # type: ignore[override]
        r0, r1 = self.r0, self.r1
        return float(np.pi * self.height * (r0 * r0 + r0 * r1 + r1 * r1) / 3.0)

    def bounds(self):
        r = max(self.r0, self.r1)
        return (np.array([self.cx - r, self.cy - r, self.z0]),
                np.array([self.cx + r, self.cy + r, self.z0 + self.height]))

    def contains(self, p: np.ndarray) -> np.ndarray:
        rho = np.hypot(p[:, 0] - self.cx, p[:, 1] - self.cy)
        s = (p[:, 2] - self.z0) / self.height
        return (s >= 0) & (s <= 1) & (rho <= self.r0 + (self.r1 - self.r0) * s)

    def intersect(self, origin, dirs):
        o = np.asarray(origin, float)
        z1 = self.z0 + self.height
        return _first([
            _disc(o, dirs, self.cx, self.cy, z1, 0.0, self.r1, 1.0),
            _cone_wall(o, dirs, self.cx, self.cy, self.z0, z1, self.r0, self.r1),
            _bottom(o, dirs, self.cx, self.cy, self.z0, self.r0)])


@dataclass
class Cone(Shape):
    """Upright cone: base circle on z = z0, apex at z0 + height."""
    cx: float
    cy: float
    radius: float
    height: float
    z0: float = 0.0

    @property
    def volume_m3(self) -> float:  # type: ignore[override]
        return float(np.pi * self.radius ** 2 * self.height / 3.0)

    def bounds(self):
        r = self.radius
        return (np.array([self.cx - r, self.cy - r, self.z0]),
                np.array([self.cx + r, self.cy + r, self.z0 + self.height]))

    def contains(self, p: np.ndarray) -> np.ndarray:
        rho = np.hypot(p[:, 0] - self.cx, p[:, 1] - self.cy)
        zr = self.z0 + self.height * (1 - rho / self.radius)
        return (p[:, 2] >= self.z0) & (p[:, 2] <= zr)

    def intersect(self, origin, dirs):
        o = np.asarray(origin, float)
        return _first([
            _cone_wall(o, dirs, self.cx, self.cy, self.z0, self.z0 + self.height,
                       self.radius, 0.0),
            _bottom(o, dirs, self.cx, self.cy, self.z0, self.radius)])


@dataclass
class Box(Shape):
    """Box of size sx, sy, sz centred on (cx, cy), rotated by yaw (rad) about z, on z = z0."""
    cx: float
    cy: float
    sx: float
    sy: float
    sz: float
    yaw: float = 0.0
    z0: float = 0.0

    @property
    def volume_m3(self) -> float:  # type: ignore[override]
        return float(self.sx * self.sy * self.sz)

    def bounds(self):
        c, s = abs(np.cos(self.yaw)), abs(np.sin(self.yaw))
        ex = (c * self.sx + s * self.sy) / 2
        ey = (s * self.sx + c * self.sy) / 2
        return (np.array([self.cx - ex, self.cy - ey, self.z0]),
                np.array([self.cx + ex, self.cy + ey, self.z0 + self.sz]))

    def contains(self, p: np.ndarray) -> np.ndarray:
        loc = (p - [self.cx, self.cy, self.z0 + self.sz / 2]) @ _rot_z(self.yaw)
        return (np.abs(loc) <= np.array([self.sx, self.sy, self.sz]) / 2 + 1e-12).all(axis=1)

    def intersect(self, origin, dirs):
        Rz = _rot_z(self.yaw)
        ctr = np.array([self.cx, self.cy, self.z0 + self.sz / 2])
        o = Rz.T @ (np.asarray(origin, float) - ctr)
        d = _mul(dirs, Rz)  # rows: Rz.T @ d
        half = np.array([self.sx, self.sy, self.sz]) / 2
        dsafe = np.where(np.abs(d) < 1e-15, 1e-15, d)
        t1 = (-half - o) / dsafe
        t2 = (half - o) / dsafe
        tn = np.minimum(t1, t2)
        tf = np.maximum(t1, t2)
        tmin = tn.max(axis=1)
        tmax = tf.min(axis=1)
        hit = (tmax >= tmin) & (tmax > EPS_T)
        t = np.where(tmin > EPS_T, tmin, tmax)
        ax = np.where((tmin > EPS_T)[:, None], tn, -tf).argmax(axis=1)
        rows = np.arange(len(d))
        n_loc = np.zeros_like(d)
        n_loc[rows, ax] = -np.sign(dsafe[rows, ax])
        return np.where(hit, t, INF), _mul(n_loc, Rz.T)


@dataclass
class Ellipsoid(Shape):
    """Half-ellipsoid mound: semi-axes a (x), b (y) on z = z0, height c, yaw about z."""
    cx: float
    cy: float
    a: float
    b: float
    c: float
    yaw: float = 0.0
    z0: float = 0.0

    @property
    def volume_m3(self) -> float:  # type: ignore[override]
        return float(2.0 / 3.0 * np.pi * self.a * self.b * self.c)

    def bounds(self):
        r = max(self.a, self.b)
        return (np.array([self.cx - r, self.cy - r, self.z0]),
                np.array([self.cx + r, self.cy + r, self.z0 + self.c]))

    def contains(self, p: np.ndarray) -> np.ndarray:
        loc = ((p - [self.cx, self.cy, self.z0]) @ _rot_z(self.yaw)) / [self.a, self.b, self.c]
        return ((loc ** 2).sum(1) <= 1.0) & (loc[:, 2] >= 0)

    def intersect(self, origin, dirs):
        Rz = _rot_z(self.yaw)
        sc = np.array([self.a, self.b, self.c])
        o = (Rz.T @ (np.asarray(origin, float) - [self.cx, self.cy, self.z0])) / sc
        d = _mul(dirs, Rz) / sc
        A = _dot(d, d)
        B = 2 * _dot(d, o)
        C = o @ o - 1.0
        disc = B * B - 4 * A * C
        sq = np.sqrt(np.maximum(disc, 0.0))
        best = np.full(len(A), INF)
        for r in ((-B + sq) / (2 * A), (-B - sq) / (2 * A)):
            z = o[2] + r * d[:, 2]
            ok = (disc >= 0) & (r > EPS_T) & (z >= 0) & (r < best)
            best = np.where(ok, r, best)
        p = o + np.where(np.isfinite(best), best, 0.0)[:, None] * d
        n = _mul(p / sc, Rz.T)
        n = _unit(n)
        if origin[2] >= self.z0:  # the base can't be the first hit from above
            return best, n
        bottom = _disc(np.asarray(origin, float), dirs, self.cx, self.cy, self.z0, 0.0,
                       max(self.a, self.b), -1.0)
        tb = bottom[0]
        pb = np.asarray(origin, float) + np.where(np.isfinite(tb), tb, 0.0)[:, None] * dirs
        loc = _mul(pb - [self.cx, self.cy, self.z0], Rz)[:, :2] / sc[:2]
        tb = np.where((loc ** 2).sum(1) <= 1.0, tb, INF)
        return _first([(best, n), (tb, bottom[1])])


@dataclass
class HeightField(Shape):
    """Bilinear height field z = z0 + h(x, y) >= z0 on a regular grid (a noisy mound).

    Heights must be >= 0 and 0 on the border, so the solid is closed by the support.
    The volume of a bilinear surface is exactly the trapezoid sum of its grid values.
    Intersection: uniform ray marching through the AABB, then bisection.
    """
    x0: float
    y0: float
    cell: float
    heights: np.ndarray  # (ny, nx) metres
    z0: float = 0.0
    n_steps: int = 40
    n_bisect: int = 22

    def __post_init__(self) -> None:
        self.heights = np.asarray(self.heights, dtype=np.float64)
        h = self.heights
        if h.ndim != 2 or min(h.shape) < 2:
            raise ValueError(f"HeightField: heights must be 2-D with >= 2x2 values, got {h.shape}")
        if (h < 0).any():
            raise ValueError("HeightField: heights must be >= 0")
        if np.any(h[0]) or np.any(h[-1]) or np.any(h[:, 0]) or np.any(h[:, -1]):
            raise ValueError("HeightField: heights must be 0 on the grid border")
        self.hmax = float(h.max())

    @property
    def volume_m3(self) -> float:  # type: ignore[override]
        h = self.heights
        w = np.ones(h.shape)
        w[0, :] *= 0.5
        w[-1, :] *= 0.5
        w[:, 0] *= 0.5
        w[:, -1] *= 0.5
        return float((h * w).sum() * self.cell ** 2)

    def bounds(self):
        ny, nx = self.heights.shape
        return (np.array([self.x0, self.y0, self.z0]),
                np.array([self.x0 + (nx - 1) * self.cell, self.y0 + (ny - 1) * self.cell,
                          self.z0 + self.hmax]))

    def height_at(self, x: np.ndarray, y: np.ndarray, grad: bool = False):
        """h of the bilinear surface (0 outside the grid); with grad, (h, dh/dx, dh/dy)."""
        ny, nx = self.heights.shape
        gx = (x - self.x0) * (1.0 / self.cell)
        gy = (y - self.y0) * (1.0 / self.cell)
        inside = (gx >= 0) & (gx <= nx - 1) & (gy >= 0) & (gy <= ny - 1)
        i = np.clip(gx.astype(np.int64), 0, nx - 2)
        j = np.clip(gy.astype(np.int64), 0, ny - 2)
        fx = gx - i
        fy = gy - j
        flat = self.heights.ravel()
        base = j * nx + i
        h00, h10 = flat[base], flat[base + 1]
        h01, h11 = flat[base + nx], flat[base + nx + 1]
        top = h00 + (h10 - h00) * fx
        bot = h01 + (h11 - h01) * fx
        h = np.where(inside, top + (bot - top) * fy, 0.0)
        if not grad:
            return h
        dhx = ((h10 - h00) * (1 - fy) + (h11 - h01) * fy) / self.cell
        dhy = (bot - top) / self.cell
        return h, np.where(inside, dhx, 0.0), np.where(inside, dhy, 0.0)

    def _support_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """AABB of the cells where h > 0 (tighter than the grid: fewer rays to march)."""
        ny, nx = self.heights.shape
        rows = np.nonzero(self.heights.any(axis=1))[0]
        cols = np.nonzero(self.heights.any(axis=0))[0]
        if rows.size == 0:
            return self.bounds()
        j0, j1 = max(rows[0] - 1, 0), min(rows[-1] + 1, ny - 1)
        i0, i1 = max(cols[0] - 1, 0), min(cols[-1] + 1, nx - 1)
        return (np.array([self.x0 + i0 * self.cell, self.y0 + j0 * self.cell, self.z0]),
                np.array([self.x0 + i1 * self.cell, self.y0 + j1 * self.cell,
                          self.z0 + self.hmax]))

    def contains(self, p: np.ndarray) -> np.ndarray:
        return (p[:, 2] >= self.z0) & (p[:, 2] - self.z0 <= self.height_at(p[:, 0], p[:, 1]))

    def intersect(self, origin, dirs):
        o = np.asarray(origin, float)
        lo, hi = self._support_bounds()
        N = len(dirs)
        t_out = np.full(N, INF)
        n_out = np.zeros((N, 3))
        dsafe = np.where(np.abs(dirs) < 1e-15, 1e-15, dirs)
        t1 = (lo - o) / dsafe
        t2 = (hi - o) / dsafe
        tin = np.maximum(np.minimum(t1, t2).max(axis=1), EPS_T)
        tex = np.maximum(t1, t2).min(axis=1)
        act = np.nonzero(tex > tin)[0]  # rays still marching (indices into dirs)
        step = (tex[act] - tin[act]) / self.n_steps
        t_prev = tin[act]
        hit_idx, hit_a, hit_b = [], [], []
        for k in range(1, self.n_steps + 1):
            if act.size == 0:
                break
            t_cur = tin[act] + step * k
            d = dirs[act]
            px, py, pz = (o[0] + t_cur * d[:, 0], o[1] + t_cur * d[:, 1],
                          o[2] + t_cur * d[:, 2])
            h = self.height_at(px, py)
            below = ((pz - self.z0) < h) & (h > 0)  # h > 0: not the support plane itself
            hit_idx.append(act[below])
            hit_a.append(t_prev[below])
            hit_b.append(t_cur[below])
            keep = ~below
            act, step, t_prev = act[keep], step[keep], t_cur[keep]
        idx = np.concatenate(hit_idx) if hit_idx else np.zeros(0, np.int64)
        if idx.size == 0:
            return t_out, n_out
        a, b = np.concatenate(hit_a), np.concatenate(hit_b)
        d = dirs[idx]
        for _ in range(self.n_bisect):
            m = 0.5 * (a + b)
            p = o + m[:, None] * d
            hm = self.height_at(p[:, 0], p[:, 1])
            inside = ((p[:, 2] - self.z0) < hm) & (hm > 0)
            b = np.where(inside, m, b)
            a = np.where(inside, a, m)
        p = o + b[:, None] * d
        _, gx, gy = self.height_at(p[:, 0], p[:, 1], grad=True)
        n = np.stack([-gx, -gy, np.ones_like(gx)], axis=1)
        n = _unit(n)
        t_out[idx] = b
        n_out[idx] = n
        return t_out, n_out


@dataclass
class Ring(Shape):
    """Annular wall (plate rim, bowl wall): inner radius r_in0 at z0 flaring to r_in1 at
    z0 + height, constant horizontal thickness. Not food: volume is the wall material."""
    cx: float
    cy: float
    r_in0: float
    r_in1: float
    thickness: float
    height: float
    z0: float = 0.0
    outer_wall: bool = True  # False: never hit from a camera above the rim, inside its radius

    @property
    def volume_m3(self) -> float:  # type: ignore[override]
        def frustum(r0: float, r1: float) -> float:
            return np.pi * self.height * (r0 * r0 + r0 * r1 + r1 * r1) / 3.0
        w = self.thickness
        return float(frustum(self.r_in0 + w, self.r_in1 + w) - frustum(self.r_in0, self.r_in1))

    def bounds(self):
        r = max(self.r_in0, self.r_in1) + self.thickness
        return (np.array([self.cx - r, self.cy - r, self.z0]),
                np.array([self.cx + r, self.cy + r, self.z0 + self.height]))

    def intersect(self, origin, dirs):
        o = np.asarray(origin, float)
        z1 = self.z0 + self.height
        w = self.thickness
        return _first([
            _disc(o, dirs, self.cx, self.cy, z1, self.r_in1, self.r_in1 + w, 1.0),
            _cone_wall(o, dirs, self.cx, self.cy, self.z0, z1, self.r_in0 + w, self.r_in1 + w, 1.0)
            if self.outer_wall else None,
            _cone_wall(o, dirs, self.cx, self.cy, self.z0, z1, self.r_in0, self.r_in1, -1.0),
            None if o[2] >= self.z0 else
            _disc(o, dirs, self.cx, self.cy, self.z0, self.r_in0, self.r_in0 + w, -1.0)])


# --------------------------------------------------------------------------- render
def _slab_inv(origin: np.ndarray, inv: np.ndarray, lo: np.ndarray, hi: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """_slab with precomputed 1/dirs (zero components replaced by a tiny number, so a
    parallel ray gets +-huge slab parameters: inside the slab or never)."""
    o = np.asarray(origin, float)
    t1 = (lo[0] - o[0]) * inv[:, 0]
    t2 = (hi[0] - o[0]) * inv[:, 0]
    tmin = np.maximum(np.minimum(t1, t2), 0.0)
    tmax = np.maximum(t1, t2)
    for ax in (1, 2):
        t1 = (lo[ax] - o[ax]) * inv[:, ax]
        t2 = (hi[ax] - o[ax]) * inv[:, ax]
        np.maximum(tmin, np.minimum(t1, t2), out=tmin)
        np.minimum(tmax, np.maximum(t1, t2), out=tmax)
    return tmin, tmax


def _slab(origin: np.ndarray, dirs: np.ndarray, lo: np.ndarray, hi: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    """(t_enter, t_exit) of each ray through the box lo..hi (t_enter > t_exit: a miss)."""
    o = np.asarray(origin, float)
    tmin = np.zeros(len(dirs))
    tmax = np.full(len(dirs), INF)
    for ax in range(3):
        dax = dirs[:, ax]
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = (lo[ax] - o[ax]) / dax
            t2 = (hi[ax] - o[ax]) / dax
        par = dax == 0  # parallel: inside the slab or never
        inside = (o[ax] >= lo[ax]) & (o[ax] <= hi[ax])
        t1 = np.where(par, -INF if inside else INF, t1)
        t2 = np.where(par, INF if inside else -INF, t2)
        tmin = np.maximum(tmin, np.minimum(t1, t2))
        tmax = np.minimum(tmax, np.maximum(t1, t2))
    return tmin, tmax


def intersect_culled(shape: Shape, origin: np.ndarray, dirs: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """shape.intersect, solved only for rays that meet the shape's AABB (slab test): for
    ray bundles without a pixel box, e.g. shadow rays from a light."""
    b = shape.bounds()
    if b is None:
        return shape.intersect(origin, dirs)
    o = np.asarray(origin, float)
    tmin, tmax = _slab(o, dirs, b[0] - 1e-9, b[1] + 1e-9)
    idx = np.nonzero(tmax >= tmin)[0]
    t = np.full(len(dirs), INF)
    n = np.zeros((len(dirs), 3))
    if idx.size:
        t[idx], n[idx] = shape.intersect(o, dirs[idx])
    return t, n


def _pixel_box(shape: Shape, camera: Camera) -> tuple[int, int, int, int] | None:
    """(u0, u1, v0, v1) half-open pixel box covering the shape's projection; None = empty."""
    W, H = camera.width, camera.height
    b = shape.bounds()
    if b is None:
        return 0, W, 0, H
    uv, z = camera.project(_box_corners(*b))
    if (z <= 1e-6).any():
        return 0, W, 0, H
    u0 = max(int(np.floor(uv[:, 0].min())) - 1, 0)
    u1 = min(int(np.ceil(uv[:, 0].max())) + 2, W)
    v0 = max(int(np.floor(uv[:, 1].min())) - 1, 0)
    v1 = min(int(np.ceil(uv[:, 1].max())) + 2, H)
    if u0 >= u1 or v0 >= v1:
        return None
    return u0, u1, v0, v1


def render_full(shapes: list[Shape], camera: Camera,
                rays: tuple[np.ndarray, np.ndarray] | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z-depth HxW float64 (inf = miss), label HxW int32, world normals HxWx3).
    `rays`: camera.rays(), when the caller already has them."""
    W, H = camera.width, camera.height
    origin, dirs = camera.rays() if rays is None else rays
    inv = 1.0 / np.where(dirs == 0, 1e-300, dirs)
    depth = np.full(H * W, INF)
    label = np.full(H * W, -1, dtype=np.int32)
    normals = np.zeros((H * W, 3))
    for i, s in enumerate(shapes):
        box = _pixel_box(s, camera)
        if box is None:
            continue
        u0, u1, v0, v1 = box
        if (u0, u1, v0, v1) == (0, W, 0, H):
            idx = np.arange(H * W)
        else:
            idx = (np.arange(v0, v1)[:, None] * W + np.arange(u0, u1)[None, :]).ravel()
        b = s.bounds()
        if b is not None:  # z-culling: skip rays that enter the AABB behind their current hit
            tmin, tmax = _slab_inv(origin, inv[idx], b[0] - 1e-9, b[1] + 1e-9)
            idx = idx[(tmax >= tmin) & (tmin < depth[idx])]
            if idx.size == 0:
                continue
        t, n = s.intersect(origin, dirs[idx])
        better = t < depth[idx]
        j = idx[better]
        depth[j] = t[better]
        label[j] = i
        normals[j] = n[better]
    return depth.reshape(H, W), label.reshape(H, W), normals.reshape(H, W, 3)


def render(shapes: list[Shape], camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """(z-depth HxW float32 m, 0 where nothing is hit; label HxW int32, -1 = none)."""
    depth, label, _ = render_full(shapes, camera)
    return np.where(np.isfinite(depth), depth, 0.0).astype(np.float32), label
