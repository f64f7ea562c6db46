"""Analytic solids standing on a horizontal support: exact volume and exact ray intersection of
the same surface (a `Shape` is what `render_full` casts rays at)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.data.shapes.faces import (
    EPS_T,
    INF,
    annulus,
    base_disc,
    cone_wall,
    dot_rows,
    first_hit,
    mul_rows,
    rot_z,
    unit_rows,
)


def _upright_bounds(cx: float, cy: float, r: float, z0: float, h: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """AABB of a solid within radius r of the axis (cx, cy), standing on z0, h high."""
    return np.array([cx - r, cy - r, z0]), np.array([cx + r, cy + r, z0 + h])


def _truncated_cone_hit(o: np.ndarray, dirs: np.ndarray, cx: float, cy: float, z0: float, h: float,
                        r0: float, r1: float) -> tuple[np.ndarray, np.ndarray]:
    """Top disc, side wall and base of an upright truncated cone (r0 at z0, r1 at z0 + h):
    cylinders (r0 == r1) and the frusta of a bowl's food layer."""
    z1 = z0 + h
    return first_hit([
        annulus(o, dirs, cx, cy, z1, 0.0, r1, 1.0),
        cone_wall(o, dirs, cx, cy, z0, z1, r0, r1),
        base_disc(o, dirs, cx, cy, z0, r0)])


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
        return first_hit([annulus(np.asarray(origin, float), dirs, 0.0, 0.0, self.z0, 0.0, INF, 1.0)])


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
        return _upright_bounds(self.cx, self.cy, r, self.z0, self.height)

    def contains(self, p: np.ndarray) -> np.ndarray:
        """Points (N,3) inside the closed solid (used by tests and overlap checks)."""
        c = np.array([self.cx, self.cy, self.zc])
        return (((p - c) ** 2).sum(1) <= self.R_sph ** 2) & (p[:, 2] >= self.z0)

    def intersect(self, origin, dirs):
        o = np.asarray(origin, float)
        c = np.array([self.cx, self.cy, self.zc])
        oc = o - c
        a = dot_rows(dirs, dirs)
        b = 2 * dot_rows(dirs, oc)
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
        return first_hit([(best, n), base_disc(o, dirs, self.cx, self.cy, self.z0, self.radius)])


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
        return _upright_bounds(self.cx, self.cy, self.radius, self.z0, self.height)

    def contains(self, p: np.ndarray) -> np.ndarray:
        rho2 = (p[:, 0] - self.cx) ** 2 + (p[:, 1] - self.cy) ** 2
        return (rho2 <= self.radius ** 2) & (p[:, 2] >= self.z0) & (p[:, 2] <= self.z0 + self.height)

    def intersect(self, origin, dirs):
        return _truncated_cone_hit(np.asarray(origin, float), dirs, self.cx, self.cy, self.z0,
                                   self.height, self.radius, self.radius)


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
        return _upright_bounds(self.cx, self.cy, r, self.z0, self.height)

    def contains(self, p: np.ndarray) -> np.ndarray:
        rho = np.hypot(p[:, 0] - self.cx, p[:, 1] - self.cy)
        s = (p[:, 2] - self.z0) / self.height
        return (s >= 0) & (s <= 1) & (rho <= self.r0 + (self.r1 - self.r0) * s)

    def intersect(self, origin, dirs):
        return _truncated_cone_hit(np.asarray(origin, float), dirs, self.cx, self.cy, self.z0,
                                   self.height, self.r0, self.r1)


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
        return _upright_bounds(self.cx, self.cy, self.radius, self.z0, self.height)

    def contains(self, p: np.ndarray) -> np.ndarray:
        rho = np.hypot(p[:, 0] - self.cx, p[:, 1] - self.cy)
        zr = self.z0 + self.height * (1 - rho / self.radius)
        return (p[:, 2] >= self.z0) & (p[:, 2] <= zr)

    def intersect(self, origin, dirs):
        o = np.asarray(origin, float)
        return first_hit([
            cone_wall(o, dirs, self.cx, self.cy, self.z0, self.z0 + self.height,
                      self.radius, 0.0),
            base_disc(o, dirs, self.cx, self.cy, self.z0, self.radius)])


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
        loc = (p - [self.cx, self.cy, self.z0 + self.sz / 2]) @ rot_z(self.yaw)
        return (np.abs(loc) <= np.array([self.sx, self.sy, self.sz]) / 2 + 1e-12).all(axis=1)

    def intersect(self, origin, dirs):
        Rz = rot_z(self.yaw)
        ctr = np.array([self.cx, self.cy, self.z0 + self.sz / 2])
        o = Rz.T @ (np.asarray(origin, float) - ctr)
        d = mul_rows(dirs, Rz)  # rows: Rz.T @ d
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
        return np.where(hit, t, INF), mul_rows(n_loc, Rz.T)


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
        return _upright_bounds(self.cx, self.cy, r, self.z0, self.c)

    def contains(self, p: np.ndarray) -> np.ndarray:
        loc = ((p - [self.cx, self.cy, self.z0]) @ rot_z(self.yaw)) / [self.a, self.b, self.c]
        return ((loc ** 2).sum(1) <= 1.0) & (loc[:, 2] >= 0)

    def intersect(self, origin, dirs):
        Rz = rot_z(self.yaw)
        sc = np.array([self.a, self.b, self.c])
        o = (Rz.T @ (np.asarray(origin, float) - [self.cx, self.cy, self.z0])) / sc
        d = mul_rows(dirs, Rz) / sc
        A = dot_rows(d, d)
        B = 2 * dot_rows(d, o)
        C = o @ o - 1.0
        disc = B * B - 4 * A * C
        sq = np.sqrt(np.maximum(disc, 0.0))
        best = np.full(len(A), INF)
        for r in ((-B + sq) / (2 * A), (-B - sq) / (2 * A)):
            z = o[2] + r * d[:, 2]
            ok = (disc >= 0) & (r > EPS_T) & (z >= 0) & (r < best)
            best = np.where(ok, r, best)
        p = o + np.where(np.isfinite(best), best, 0.0)[:, None] * d
        n = mul_rows(p / sc, Rz.T)
        n = unit_rows(n)
        if origin[2] >= self.z0:  # the base can't be the first hit from above
            return best, n
        bottom = annulus(np.asarray(origin, float), dirs, self.cx, self.cy, self.z0, 0.0,
                       max(self.a, self.b), -1.0)
        tb = bottom[0]
        pb = np.asarray(origin, float) + np.where(np.isfinite(tb), tb, 0.0)[:, None] * dirs
        loc = mul_rows(pb - [self.cx, self.cy, self.z0], Rz)[:, :2] / sc[:2]
        tb = np.where((loc ** 2).sum(1) <= 1.0, tb, INF)
        return first_hit([(best, n), (tb, bottom[1])])



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
        return _upright_bounds(self.cx, self.cy, r, self.z0, self.height)

    def intersect(self, origin, dirs):
        o = np.asarray(origin, float)
        z1 = self.z0 + self.height
        w = self.thickness
        return first_hit([
            annulus(o, dirs, self.cx, self.cy, z1, self.r_in1, self.r_in1 + w, 1.0),
            cone_wall(o, dirs, self.cx, self.cy, self.z0, z1, self.r_in0 + w, self.r_in1 + w, 1.0)
            if self.outer_wall else None,
            cone_wall(o, dirs, self.cx, self.cy, self.z0, z1, self.r_in0, self.r_in1, -1.0),
            None if o[2] >= self.z0 else
            annulus(o, dirs, self.cx, self.cy, self.z0, self.r_in0, self.r_in0 + w, -1.0)])

