"""Food volume above the support plane (numpy): `estimate_volume(depth, mask, K, method=...)`,
heightmap (rasterised on the plane, hidden cells filled) or columns (per-pixel prisms)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np
import torch

from pipeline.config import VolumeConfig, or_default
from pipeline.geometry.camera import _bbox, _check_inputs, _check_method, _ray_xy, _valid_depth, rays
from pipeline.geometry.coverage import (EDGE_SMOOTH, GAP_KERNEL, GAP_MASK_TOL_PX, HIDDEN_FILL, HIDDEN_PROBE,
                                        NOISE_BAND, PROBE_NOISE, TOP_BAND, _boundary, _cell_size, _edge_areas,
                                        _fill_plan, _filled_depth, _grid_plan, _hidden_samples, _patch_maps)
from pipeline.geometry.plane import (MIN_SUPPORT_PX, _fit_plane_drawn, _noise_sigma, _orient, _ransac_draws,
                                     _ring, _sigma_idx, plane_basis)


@dataclass
class VolumeResult:
    volume_ml: float
    plane_normal: np.ndarray   # (3,) unit, camera frame, towards the camera (d > 0)
    plane_d: float             # plane n.X + d = 0; height(X) = n.X + d
    n_food_px: int             # mask pixels with valid depth
    n_holes: int               # mask pixels with invalid depth (filled, not summed raw)
    height_map: np.ndarray | None = None  # heightmap method: integrated grid (m)


def estimate_volume(depth: np.ndarray, mask: np.ndarray, K: np.ndarray,
                    method: str | None = None, ring_px: int | None = None, cell_mm: float | None = None,
                    plane: tuple[np.ndarray, float] | None = None, seed: int = 0
                    ) -> VolumeResult:
    """Food volume (mL) above the support plane (fitted, or given as plane=(n, d)). method,
    ring_px, cell_mm: params `volume:` (None: its default)."""
    method, ring_px, cell_mm = or_default(VolumeConfig, method=method, ring_px=ring_px, cell_mm=cell_mm)
    _check_method(method)
    depth, mask, K = _check_inputs(depth, mask, K)
    if cell_mm <= 0:
        raise ValueError(f"cell_mm: must be positive, got {cell_mm}")
    # work on the mask's bounding box (+ ring): same pixels in the same order as the
    # full image, so the same result, but ~5x fewer pixels to touch
    (y0, y1), (x0, x1) = _bbox(mask)
    pad = ring_px + 2
    y0, x0 = max(y0 - pad, 0), max(x0 - pad, 0)
    y1, x1 = min(y1 + pad, mask.shape[0]), min(x1 + pad, mask.shape[1])
    full_depth, full_mask, full_K = depth, mask, K
    depth = depth[y0:y1, x0:x1].astype(np.float64)
    mask = mask[y0:y1, x0:x1]
    K = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]]) @ K
    valid = _valid_depth(depth)
    food = mask & valid
    n_food, n_holes = int(food.sum()), int((mask & ~valid).sum())
    if n_food == 0:
        raise ValueError("depth: no valid depth inside the mask")
    ring = _ring(mask, valid, ring_px)
    if ring.sum() >= MIN_SUPPORT_PX:
        sys_, sxs, sK, sdepth = *np.nonzero(ring), K, depth
    else:  # fall back to every valid non-food pixel of the whole image
        sdepth = full_depth.astype(np.float64)
        sys_, sxs = np.nonzero(_valid_depth(sdepth) & ~full_mask)
        sK = full_K

    def support(idx: np.ndarray) -> np.ndarray:
        """Back-projected support points (valid depth: finite) -- only those drawn."""
        return rays(sK, sys_[idx], sxs[idx]) * sdepth[sys_[idx], sxs[idx]][:, None]
    n_sup = len(sys_)
    if plane is None:
        if n_sup < 3:
            raise ValueError(f"depth: no valid support pixels around the mask ({n_sup} found)")
        sub, hyp, refit = _ransac_draws(n_sup, seed)
        n, d = _fit_plane_drawn(support(sub), hyp, support(refit))
    else:
        n = np.asarray(plane[0], dtype=np.float64).reshape(3)
        n, d = _orient(n / np.linalg.norm(n), float(plane[1]) / np.linalg.norm(plane[0]))
    sigma = _noise_sigma(support(_sigma_idx(n_sup)), n, d) if n_sup >= 3 else 0.0
    fy_, fx_ = K[1, 1], K[0, 0]
    ys, xs = np.nonzero(mask)    # holes get a depth grown from the food side
    # per-pixel work on (N,) columns, never (N, 3) points: X = Z (rx, ry, 1), so any
    # X @ v is Z (rx v0 + ry v1 + v2) (big temporaries cost more than the arithmetic)
    rx, ry = _ray_xy(K, ys, xs)
    rn = rx * n[0] + ry * n[1] + n[2]
    Z = depth[ys, xs]
    if n_holes:
        Z = _filled_depth(Z, food[ys, xs], rn, ys, xs, d, _fill_plan(mask, food), np)
    h = np.maximum(Z * rn + d, 0.0)
    area = Z * Z / (fx_ * fy_ * np.abs(rn))
    if method == "columns":
        return VolumeResult(float(np.sum(h * area)) * 1e6, n, float(d), n_food, n_holes)
    c = _cell_size(cell_mm, area)
    e1, e2 = plane_basis(n)
    a = Z * (rx * e1[0] + ry * e1[1] + e1[2])
    b = Z * (rx * e2[0] + ry * e2[1] + e2[2])
    # silhouette rays continue behind the food down to the plane: hidden cells
    bnd = _boundary(mask)[ys, xs]
    ab, bb, hb = a[bnd], b[bnd], h[bnd]
    nX = (Z * rn)[bnd]           # X (1 + s) lies on the plane; s <= 1 bounds grazing rays
    s = np.where(nX < -1e-9, np.minimum(-hb / np.minimum(nX, -1e-9), 1.0), 0.0)
    ap, bp = ab * (1.0 + s), bb * (1.0 + s)
    a0, b0, nx, ny = _grid_plan(np.concatenate([a, ap]), np.concatenate([b, bp]), c)
    cell = _cell_of(a, b, a0, b0, nx, c)
    patch_area = partial(_edge_areas, area, *_patch_maps(ys, xs, (a, b, h), np), np)
    grid = _heightmap_np(cell, h, patch_area, (a, b), (ab, bb, ap, bp, hb), a0, b0, nx, ny, c,
                         sigma, (e1, e2, n, d, K, mask))
    return VolumeResult(float(grid.sum() * c * c * 1e6), n, float(d), n_food, n_holes,
                        height_map=grid)


def _cell_of(a, b, a0: float, b0: float, nx: int, c: float):
    """Flat cell index of plane coordinates (numpy or torch, same arithmetic)."""
    if isinstance(a, np.ndarray):
        return np.floor((b - b0) / c).astype(np.int64) * nx + np.floor((a - a0) / c).astype(np.int64)
    return torch.floor((b - b0) / c).long() * nx + torch.floor((a - a0) / c).long()


def _in_mask(cand: np.ndarray, heights: np.ndarray, a0: float, b0: float, c: float,
             e1: np.ndarray, e2: np.ndarray, n: np.ndarray, d: float, K: np.ndarray,
             mask: np.ndarray) -> np.ndarray:
    """The candidate gap cells whose centre, at its filled height, projects into the food
    mask. Why: closing alone would bridge two separate foods a few mm apart on the plate
    (numpy only; the torch twin calls it on detached values)."""
    jj, ii = np.nonzero(cand)
    out = np.zeros_like(cand)
    if len(jj) == 0:
        return out
    X = ((a0 + (ii + 0.5) * c)[:, None] * e1 + (b0 + (jj + 0.5) * c)[:, None] * e2
         + (heights[jj, ii] - d)[:, None] * n)
    Z = X[:, 2]
    ok = Z > 1e-9
    Zs = np.where(ok, Z, 1.0)
    u = np.rint((K[0, 0] * X[:, 0] + K[0, 1] * X[:, 1]) / Zs + K[0, 2])
    v = np.rint(K[1, 1] * X[:, 1] / Zs + K[1, 2])
    H, W = mask.shape
    ok &= (u >= 0) & (u < W) & (v >= 0) & (v < H)
    ui = np.where(ok, u, 0).astype(np.int64)
    vi = np.where(ok, v, 0).astype(np.int64)
    if GAP_MASK_TOL_PX > 0:
        k = 2 * GAP_MASK_TOL_PX + 1
        mask = cv2.dilate(mask.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
    ok &= mask[vi, ui]
    out[jj[ok], ii[ok]] = True
    return out


def _footprint_splat(a: np.ndarray, b: np.ndarray, area: np.ndarray, a0: float, b0: float,
                     nx: int, c: float, occ: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Share each sample's footprint (a square of its area, < 1 cell) among the up to 4
    cells it overlaps: (target cells (4N,), fractions (4N,)); parts falling on cells with no
    sample go back to the sample's own cell. Why: counting whole footprints per cell makes
    edge-cell coverage jump with how many pixel rows land in it (3 or 4, say)."""
    half = np.maximum(0.5 * np.sqrt(np.maximum(area, 0.0)), 1e-12)
    i = np.floor((a - a0) / c)
    j = np.floor((b - b0) / c)
    lo_a, lo_b = a0 + i * c, b0 + j * c
    over_lo_a = np.maximum(lo_a - (a - half), 0.0)
    over_hi_a = np.maximum((a + half) - (lo_a + c), 0.0)
    over_lo_b = np.maximum(lo_b - (b - half), 0.0)
    over_hi_b = np.maximum((b + half) - (lo_b + c), 0.0)
    wa = np.minimum((over_lo_a + over_hi_a) / (2 * half), 1.0)
    wb = np.minimum((over_lo_b + over_hi_b) / (2 * half), 1.0)
    da = np.where(over_lo_a > 0, -1, np.where(over_hi_a > 0, 1, 0)).astype(np.int64)
    db = np.where(over_lo_b > 0, -nx, np.where(over_hi_b > 0, nx, 0)).astype(np.int64)
    own = (j * nx + i).astype(np.int64)
    tgt = np.concatenate([own, own + da, own + db, own + da + db])
    wts = np.concatenate([(1 - wa) * (1 - wb), wa * (1 - wb), (1 - wa) * wb, wa * wb])
    tgt = np.where(occ[np.clip(tgt, 0, len(occ) - 1)], tgt, np.tile(own, 4))
    return tgt, wts


def _hidden_weight(seen_h: np.ndarray, ab, bb, ap, bp, hb, a0, b0, nx, c, sigma: float
                   ) -> np.ndarray:
    """Per silhouette ray, the fraction of the grazing-ray height given to the hidden cells.

    Why: behind a flat top ending in a wall (cylinder, box) the hidden cells are empty,
    behind a rounded top (dome) the surface keeps falling under the ray. The visible top
    just inside the silhouette tells which: its fall towards the silhouette over
    HIDDEN_PROBE cells, relative to the ray's own fall, scales HIDDEN_FILL. Both heights
    are cell means of the seen top, and a fall within PROBE_NOISE * sigma is noise
    (numpy only; the torch twin calls this on detached values)."""
    L = np.hypot(ap - ab, bp - bb)
    ok = (L > 1e-9) & (hb > 0)
    Ls = np.where(ok, L, 1.0)
    step = HIDDEN_PROBE * c
    ia = ab - (ap - ab) / Ls * step
    ib = bb - (bp - bb) / Ls * step
    ny = seen_h.shape[0]

    def at(pa, pb):
        ci = np.clip(np.floor((pa - a0) / c).astype(np.int64), 0, nx - 1)
        cj = np.clip(np.floor((pb - b0) / c).astype(np.int64), 0, ny - 1)
        return seen_h[cj, ci]
    fall = np.maximum(at(ia, ib) - at(ab, bb) - PROBE_NOISE * sigma, 0.0) / step
    ray_fall = hb / Ls
    return np.where(ok, HIDDEN_FILL * np.clip(fall / np.where(ok, ray_fall, 1.0), 0.0, 1.0), 0.0)


def _heightmap_np(cell, h, patch_area, ab_pts, rays, a0, b0, nx, ny, c, sigma, view
                  ) -> np.ndarray:
    """Rasterise (top-band mean), close gaps, fill hidden cells, weight edges by coverage
    (patch_area(sel, sub): horizontal areas of the selected samples, surface patch areas for
    the subset sub, level-column areas for the rest)."""
    N = nx * ny
    top = np.full(N, -np.inf)
    np.maximum.at(top, cell, h)
    # mean of the top band, not the max: the max of a sloped (or noisy) cell is biased up
    # by slope * cell / 2 (or ~1.5 sigma), while walls far below the top are left out
    band = h >= top[cell] - (TOP_BAND * c + NOISE_BAND * sigma)
    cnt = np.bincount(cell, minlength=N)
    vis = np.bincount(cell[band], weights=h[band], minlength=N) / np.maximum(
        np.bincount(cell[band], minlength=N), 1)
    occ = (cnt > 0).reshape(ny, nx)
    vis = np.where(occ.ravel(), vis, 0.0).reshape(ny, nx)
    k = np.ones((GAP_KERNEL, GAP_KERNEL), np.uint8)
    closed = cv2.erode(cv2.dilate(occ.astype(np.uint8), k), k).astype(bool)
    box = dict(ksize=(GAP_KERNEL, GAP_KERNEL), normalize=False, borderType=cv2.BORDER_CONSTANT)
    num = cv2.boxFilter(vis, -1, **box)
    den = cv2.boxFilter(occ.astype(np.float64), -1, **box)
    gap_h = num / np.maximum(den, 1.0)
    gap = _in_mask(closed & ~occ, gap_h, a0, b0, c, *view)
    seen_h = np.where(occ, vis, np.where(gap, gap_h, 0.0))
    ab, bb, ap, bp, hb = rays
    w = _hidden_weight(seen_h, ab, bb, ap, bp, hb, a0, b0, nx, c, sigma)
    ha, hbb, tw = _hidden_samples(ab, bb, ap, bp, hb, c, np)
    hcell = _cell_of(ha, hbb, a0, b0, nx, c)
    hid = np.full(N, -np.inf)
    np.maximum.at(hid, hcell, ((w * hb)[:, None] * tw).ravel())
    hid = np.where(np.isfinite(hid), hid, 0.0).reshape(ny, nx)
    fill = (hid > 0) & ~(occ | gap)
    out = np.where(fill, hid, seen_h)
    seen = (occ | gap).astype(np.uint8)   # edge cells of the seen top: partly covered
    edge = occ & ~cv2.erode(seen, np.ones((3, 3), np.uint8)).astype(bool)
    # coverage of an edge cell = area of the pixel footprints on it / cell area; only
    # samples in or next to edge cells can reach one
    near = cv2.dilate(edge.astype(np.uint8), np.ones((3, 3), np.uint8)).ravel().astype(bool)[cell]
    area = patch_area(near, edge.ravel()[cell][near])   # surface patch areas in edge cells
    tgt, wts = _footprint_splat(ab_pts[0][near], ab_pts[1][near], area, a0, b0, nx, c, cnt > 0)
    asum = np.bincount(tgt, weights=wts * np.tile(area, 4), minlength=N)
    ef = edge.astype(np.float64)
    box = dict(ksize=(EDGE_SMOOTH, EDGE_SMOOTH), normalize=False, borderType=cv2.BORDER_CONSTANT)
    cov = cv2.boxFilter(asum.reshape(ny, nx) * ef, -1, **box) / np.maximum(
        cv2.boxFilter(ef, -1, **box), 1.0)
    return out * np.where(edge, np.minimum(cov / (c * c), 1.0), 1.0)
