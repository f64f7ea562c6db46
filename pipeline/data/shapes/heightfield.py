"""Bilinear height field: an irregular mound with an exact (trapezoid-sum) volume, ray marched."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.data.shapes.faces import EPS_T, INF, unit_rows
from pipeline.data.shapes.solids import Shape


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
        n = unit_rows(n)
        t_out[idx] = b
        n_out[idx] = n
        return t_out, n_out

