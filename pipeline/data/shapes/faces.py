"""Ray-face intersections shared by the solids: horizontal annuli, walls of revolution and the
row-wise vector helpers they use (written out: numpy's small-matrix paths are slow here).
Every function returns (t (N,), normals (N,3) or (1,3)), t = inf where the ray misses."""
from __future__ import annotations

import numpy as np

EPS_T = 1e-9  # smallest accepted ray parameter (m); rays start at the camera centre
INF = np.inf


def first_hit(cands: list) -> tuple[np.ndarray, np.ndarray]:
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


def unit_rows(n: np.ndarray) -> np.ndarray:
    """Row-normalise (N,3); np.linalg.norm(axis=1) is ~50x slower on this shape."""
    ln = np.sqrt(n[:, 0] * n[:, 0] + n[:, 1] * n[:, 1] + n[:, 2] * n[:, 2])
    return n / np.maximum(ln, 1e-30)[:, None]


def dot_rows(X: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Row-wise dot product: X (N,3) with v (3,) or (N,3)."""
    v = np.asarray(v, dtype=np.float64)
    if v.ndim == 1:
        return X[:, 0] * v[0] + X[:, 1] * v[1] + X[:, 2] * v[2]
    return X[:, 0] * v[:, 0] + X[:, 1] * v[:, 1] + X[:, 2] * v[:, 2]


def mul_rows(X: np.ndarray, M: np.ndarray) -> np.ndarray:
    """X @ M for X (N,3), M (3,3), written out (numpy's small-matrix matmul is slow here)."""
    return X[:, 0:1] * M[0][None] + X[:, 1:2] * M[1][None] + X[:, 2:3] * M[2][None]


def annulus(o: np.ndarray, d: np.ndarray, cx: float, cy: float, z: float, r_in: float,
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


def cone_wall(o: np.ndarray, d: np.ndarray, cx: float, cy: float, za: float, zb: float,
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


def base_disc(o: np.ndarray, d: np.ndarray, cx: float, cy: float, z0: float, r: float):
    """Base disc of a solid standing on z0; None (skipped) when the ray origin is above
    z0, since a ray from above always meets another face of the solid first."""
    return None if o[2] >= z0 else annulus(o, d, cx, cy, z0, 0.0, r, -1.0)


def rot_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def box_corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                     for z in (lo[2], hi[2])])
