"""Food volume above the support plane (numpy): `estimate_volume(depth, mask, K, method=...)`,
heightmap (rasterised on the plane, hidden cells filled) or columns (per-pixel prisms)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np

from pipeline.config import VolumeConfig, or_default
from pipeline.geometry.camera import check_inputs, ray_xy, rays, valid_depth
from pipeline.geometry.plane import MIN_SUPPORT_PX, fit_plane_drawn, orient_plane, plane_basis, support_ring
from pipeline.geometry.shared import (
    EDGE_SMOOTH,
    GAP_KERNEL,
    NOISE_BAND,
    TOP_BAND,
    bbox,
    boundary,
    cell_of,
    cell_size,
    check_method,
    edge_areas,
    fill_plan,
    filled_depth,
    footprint_splat,
    grid_plan,
    hidden_samples,
    hidden_weight,
    in_mask,
    noise_sigma,
    patch_maps,
    ransac_draws,
    sigma_idx,
)


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
    check_method(method)
    depth, mask, K = check_inputs(depth, mask, K)
    if cell_mm <= 0:
        raise ValueError(f"cell_mm: must be positive, got {cell_mm}")
    # work on the mask's bounding box (+ ring): same pixels in the same order as the
    # full image, so the same result, but ~5x fewer pixels to touch
    (y0, y1), (x0, x1) = bbox(mask)
    pad = ring_px + 2
    y0, x0 = max(y0 - pad, 0), max(x0 - pad, 0)
    y1, x1 = min(y1 + pad, mask.shape[0]), min(x1 + pad, mask.shape[1])
    full_depth, full_mask, full_K = depth, mask, K
    depth = depth[y0:y1, x0:x1].astype(np.float64)
    mask = mask[y0:y1, x0:x1]
    K = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]]) @ K
    valid = valid_depth(depth)
    food = mask & valid
    n_food, n_holes = int(food.sum()), int((mask & ~valid).sum())
    if n_food == 0:
        raise ValueError("depth: no valid depth inside the mask")
    ring = support_ring(mask, valid, ring_px)
    if ring.sum() >= MIN_SUPPORT_PX:
        sys_, sxs, sK, sdepth = *np.nonzero(ring), K, depth
    else:  # fall back to every valid non-food pixel of the whole image
        sdepth = full_depth.astype(np.float64)
        sys_, sxs = np.nonzero(valid_depth(sdepth) & ~full_mask)
        sK = full_K

    def support(idx: np.ndarray) -> np.ndarray:
        """Back-projected support points (valid depth: finite) -- only those drawn."""
        return rays(sK, sys_[idx], sxs[idx]) * sdepth[sys_[idx], sxs[idx]][:, None]
    n_sup = len(sys_)
    if plane is None:
        if n_sup < 3:
            raise ValueError(f"depth: no valid support pixels around the mask ({n_sup} found)")
        sub, hyp, refit = ransac_draws(n_sup, seed)
        n, d = fit_plane_drawn(support(sub), hyp, support(refit))
    else:
        n = np.asarray(plane[0], dtype=np.float64).reshape(3)
        n, d = orient_plane(n / np.linalg.norm(n), float(plane[1]) / np.linalg.norm(plane[0]))
    sigma = noise_sigma(support(sigma_idx(n_sup)), n, d) if n_sup >= 3 else 0.0
    fy_, fx_ = K[1, 1], K[0, 0]
    ys, xs = np.nonzero(mask)    # holes get a depth grown from the food side
    # per-pixel work on (N,) columns, never (N, 3) points: X = Z (rx, ry, 1), so any
    # X @ v is Z (rx v0 + ry v1 + v2) (big temporaries cost more than the arithmetic)
    rx, ry = ray_xy(K, ys, xs)
    rn = rx * n[0] + ry * n[1] + n[2]
    Z = depth[ys, xs]
    if n_holes:
        Z = filled_depth(Z, food[ys, xs], rn, ys, xs, d, fill_plan(mask, food), np)
    h = np.maximum(Z * rn + d, 0.0)
    area = Z * Z / (fx_ * fy_ * np.abs(rn))
    if method == "columns":
        return VolumeResult(float(np.sum(h * area)) * 1e6, n, float(d), n_food, n_holes)
    c = cell_size(cell_mm, area)
    e1, e2 = plane_basis(n)
    a = Z * (rx * e1[0] + ry * e1[1] + e1[2])
    b = Z * (rx * e2[0] + ry * e2[1] + e2[2])
    # silhouette rays continue behind the food down to the plane: hidden cells
    bnd = boundary(mask)[ys, xs]
    ab, bb, hb = a[bnd], b[bnd], h[bnd]
    nX = (Z * rn)[bnd]           # X (1 + s) lies on the plane; s <= 1 bounds grazing rays
    s = np.where(nX < -1e-9, np.minimum(-hb / np.minimum(nX, -1e-9), 1.0), 0.0)
    ap, bp = ab * (1.0 + s), bb * (1.0 + s)
    a0, b0, nx, ny = grid_plan(np.concatenate([a, ap]), np.concatenate([b, bp]), c)
    cell = cell_of(a, b, a0, b0, nx, c)
    patch_area = partial(edge_areas, area, *patch_maps(ys, xs, (a, b, h), np), np)
    grid = _heightmap_np(cell, h, patch_area, (a, b), (ab, bb, ap, bp, hb), a0, b0, nx, ny, c,
                         sigma, (e1, e2, n, d, K, mask))
    return VolumeResult(float(grid.sum() * c * c * 1e6), n, float(d), n_food, n_holes,
                        height_map=grid)


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
    gap = in_mask(closed & ~occ, gap_h, a0, b0, c, *view)
    seen_h = np.where(occ, vis, np.where(gap, gap_h, 0.0))
    ab, bb, ap, bp, hb = rays
    w = hidden_weight(seen_h, ab, bb, ap, bp, hb, a0, b0, nx, c, sigma)
    ha, hbb, tw = hidden_samples(ab, bb, ap, bp, hb, c, np)
    hcell = cell_of(ha, hbb, a0, b0, nx, c)
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
    tgt, wts = footprint_splat(ab_pts[0][near], ab_pts[1][near], area, a0, b0, nx, c, cnt > 0)
    asum = np.bincount(tgt, weights=wts * np.tile(area, 4), minlength=N)
    ef = edge.astype(np.float64)
    box = dict(ksize=(EDGE_SMOOTH, EDGE_SMOOTH), normalize=False, borderType=cv2.BORDER_CONSTANT)
    cov = cv2.boxFilter(asum.reshape(ny, nx) * ef, -1, **box) / np.maximum(
        cv2.boxFilter(ef, -1, **box), 1.0)
    return out * np.where(edge, np.minimum(cov / (c * c), 1.0), 1.0)
