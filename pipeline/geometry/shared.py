"""What the numpy path (`volume.py`, `plane.py`) and its torch twin (`volume_torch.py`) share,
written once: input checks, the RANSAC draws and the noise estimate both twins take on numpy
values, and the coverage formulas written for both array libraries (`lib` is numpy or torch):
each pixel's horizontal surface-patch area, edge coverage, the food-side filling of depth holes,
the height-map grid, the hidden-cell samples and weights, the gap cells and footprint splats.
Public names, internal to `pipeline.geometry` (not re-exported). Imports no torch: the torch
branches use the `lib` module they are handed."""
from __future__ import annotations

from types import ModuleType
from typing import Any

import cv2
import numpy as np

HIDDEN_FILL = 0.8        # hidden cells get this fraction of the grazing-ray height
TOP_BAND = 1.0           # cell height = mean of samples within TOP_BAND * cell of its max
NOISE_BAND = 3.0         # ... plus NOISE_BAND * depth-noise sigma (from the support ring)
EDGE_SMOOTH = 3          # edge-cell coverage is averaged over this window of edge cells
MIN_CELL_PX = 3.0        # heightmap cells span at least this many pixel footprints
PROBE_NOISE = 2.0        # a fall smaller than PROBE_NOISE * sigma is noise, not a slope
HIDDEN_PROBE = 1         # cells inside the silhouette where the top's fall is probed
GAP_MASK_TOL_PX = 1      # a gap cell may project this far (px) outside the mask
GAP_KERNEL = 3           # closing kernel (cells) for sub-sampling gaps and holes
ENO_SMOOTH_M = 2e-5      # patch area: second differences below this (m) count as smooth
ENO_RATIO = 2.0          # ... and a one-sided stencil must be this much smoother
RANSAC_SUBSAMPLE = 512   # points scored per hypothesis (speed; robust enough for a table)
RANSAC_ITERS = 64        # hypotheses (3-point planes)
REFINE_MAX = 4000        # points used by the least-squares refit
INLIER_REL = 0.008       # inlier band = INLIER_REL * median depth (>= INLIER_MIN_M)
INLIER_MIN_M = 1e-3

Array = Any   # np.ndarray or torch.Tensor (the `lib` of the call)


def check_method(method: str) -> None:
    """ValueError unless `method` is one of the two volume methods."""
    if method not in ("heightmap", "columns"):
        raise ValueError(f"method: must be 'heightmap' or 'columns', got {method!r}")


def bbox(mask: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    """((y0, y1), (x0, x1)) half-open bounding box of a non-empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return (int(rows[0]), int(rows[-1]) + 1), (int(cols[0]), int(cols[-1]) + 1)


def median(x: np.ndarray) -> float:
    """np.median of a non-empty 1-D array by partitioning (np.median's checks cost more than
    the work at these sizes, and this runs on every call)."""
    n = len(x)
    p = np.partition(x, [(n - 1) // 2, n // 2])
    return 0.5 * (float(p[(n - 1) // 2]) + float(p[n // 2]))


def ransac_draws(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(subsample idx, hypothesis triples into the subsample, refit idx): drawn with numpy
    in both twins so that numpy and torch test the same planes."""
    rng = np.random.default_rng(seed)
    sub = rng.integers(0, n, RANSAC_SUBSAMPLE) if n > RANSAC_SUBSAMPLE else np.arange(n)
    hyp = rng.integers(0, len(sub), (RANSAC_ITERS, 3))
    refit = rng.integers(0, n, REFINE_MAX) if n > REFINE_MAX else np.arange(n)
    return sub, hyp, refit


def inlier_thr(S: np.ndarray) -> float:
    """RANSAC inlier band (m): grows with depth, like depth noise does."""
    z = np.abs(S[:, 2])
    z = z[np.isfinite(z)]
    return max(INLIER_MIN_M, INLIER_REL * float(np.sort(z)[len(z) // 2])) if len(z) else INLIER_MIN_M


def sigma_idx(n: int) -> np.ndarray:
    """The support points noise_sigma looks at (evenly spread, at most 1024)."""
    return np.linspace(0, n - 1, min(n, 1024)).astype(np.int64)


def noise_sigma(P: np.ndarray, n: np.ndarray, d: float) -> float:
    """Depth noise (m) seen as the robust spread (1.4826 MAD) of support heights: widens
    the heightmap's top band so noise is averaged, not maxed (numpy only; the torch twin
    calls it on detached values)."""
    if len(P) < 3:
        return 0.0
    S = P[sigma_idx(len(P))]
    r = S @ np.asarray(n, dtype=np.float64) + float(d)
    # only the plane's inliers: the ring may also hold plate rims or neighbouring food
    r = r[np.abs(r) < inlier_thr(S)]
    return float(1.4826 * median(np.abs(r - median(r)))) if len(r) else 0.0


def box_sum_torch(x: Array, k: int) -> Array:
    """k x k box sum of a 2-D tensor with zeros outside: the torch twin of
    cv2.boxFilter(normalize=False, borderType=BORDER_CONSTANT)."""
    import torch
    import torch.nn.functional as F
    w = torch.ones((1, 1, k, k), dtype=x.dtype, device=x.device)
    return F.conv2d(x[None, None], w, padding=k // 2)[0, 0]


def cell_size(cell_mm: float, area: np.ndarray) -> float:
    """Cell edge (m): cell_mm, but at least MIN_CELL_PX pixel footprints, so every cell
    holds several samples (edge coverage and gap closing need them at low resolution)."""
    return max(cell_mm * 1e-3, MIN_CELL_PX * float(np.sqrt(median(area[::8]))))


def _eno_diff(S, lib):
    """Derivatives of plane coordinates (a, b) along the image axes from samples S
    (3 = [a, b, h], 2 axes, 5 offsets -2..2, N pixels; NaN = not food), each with the
    smoothest stencil (ENO): central where the surface is smooth across the pixel, else the
    one-sided difference whose side is smoother. Why: at a crease (a flat top meeting a
    wall) a central difference mixes the top's and the wall's footprints; the smoother side
    keeps each pixel on its own surface. Stencil choices are made on detached values.
    Returns (d (2, 2, N): [a, b] x axis x pixel, ok (2, N)). Pixels last: numpy is slow
    on short inner axes."""
    D = S if lib is np else S.detach()
    inf = float("inf")
    sec = D[:, :, 2:] - 2 * D[:, :, 1:4] + D[:, :, :3]   # at offsets -1, 0, +1
    nrm = lib.sqrt((sec * sec).sum(0))                   # (2 axes, 3, N)
    nrm = lib.where(lib.isfinite(nrm), nrm, inf) if lib is np else lib.nan_to_num(nrm, nan=inf)
    b2, c2, f2 = nrm[:, 0], nrm[:, 1], nrm[:, 2]
    has_b, has_f = lib.isfinite(D[0, :, 1]), lib.isfinite(D[0, :, 3])
    big = 1e30      # a side with one neighbour only is usable, but least preferred
    f2 = lib.where(has_f, f2.clip(max=big), inf)
    b2 = lib.where(has_b, b2.clip(max=big), inf)
    # central unless a side is clearly smoother: near-ties would flip the stencil with
    # round-off (a jump in the volume, wrong finite-difference gradients)
    use_c = has_f & has_b & (c2 <= ENO_RATIO * lib.minimum(f2, b2) + ENO_SMOOTH_M)
    use_f = ~use_c & has_f & (f2 <= b2)
    use_b = ~use_c & ~use_f & has_b
    x0 = S[:2, :, 2]
    zero = x0 * 0.0
    fwd = lib.where(use_f | use_c, S[:2, :, 3] - x0, zero)   # NaN-free where unused
    bwd = lib.where(use_b | use_c, x0 - S[:2, :, 1], zero)
    return lib.where(use_c, 0.5 * (fwd + bwd), fwd + bwd), use_c | use_f | use_b


def patch_maps(ys: np.ndarray, xs: np.ndarray, vals: tuple[Array, Array, Array], lib: ModuleType):
    """(maps (3, P): a, b, h of the food pixels on their bounding box padded by 2 pixels,
    NaN off the food; that frame's row width less 4; each pixel's flat index in it)."""
    y0, x0 = int(ys.min()), int(xs.min())
    H, W = int(ys.max()) - y0 + 1, int(xs.max()) - x0 + 1
    pidx = (ys - y0 + 2) * (W + 4) + (xs - x0 + 2)
    if lib is np:
        maps = np.full((3, (H + 4) * (W + 4)), np.nan)
        for m, v in zip(maps, vals):
            m[pidx] = v
        return maps, W, pidx
    a = vals[0]
    pidx = lib.as_tensor(pidx, device=a.device)
    maps = lib.full((3, (H + 4) * (W + 4)), float("nan"), dtype=a.dtype, device=a.device)
    maps[:, pidx] = lib.stack(list(vals))
    return maps, W, pidx


def _patch_area(maps, W: int, idx, lib):
    """Horizontal area (m^2) of the surface patch seen by each selected pixel:
    |da/du db/dv - da/dv db/du| of the food's own plane coordinates. `maps` (3, P) = [a, b,
    h] flattened, padded by 2 pixels (row width W + 4) with NaN off the food; idx = flat
    indices of the pixels in that padded frame. Why not the column area Z^2/(fx fy |r.n|):
    that is a pixel's footprint on a level surface, so a pixel on a vertical wall counts
    as much table as one on the top; the patch area of a wall pixel is ~0, so walls add no
    coverage beyond the top's edge, and the error shrinks with resolution. Signed (the
    image -> plane map keeps its orientation on any surface seen from its front), so depth
    noise averages out instead of adding up. Returns (area, ok); ok is False where a pixel
    has no food neighbour along an axis."""
    k = np.arange(-2, 3)
    offs = np.stack([k, k * (W + 4)])                        # (2 axes, 5 offsets)
    if lib is np:
        ii = (offs[:, :, None] + idx[None, None]).ravel()
        S = np.stack([m[ii] for m in maps]).reshape(3, 2, 5, len(idx))
    else:
        S = maps[:, lib.as_tensor(offs, device=idx.device)[:, :, None] + idx[None, None]]
    dd, ok = _eno_diff(S, lib)
    # basis e1 ~ camera x, e2 = n x e1 flips the orientation: area = -(a_u b_v - a_v b_u)
    return -(dd[0, 0] * dd[1, 1] - dd[0, 1] * dd[1, 0]), ok[0] & ok[1]


def boundary(mask: np.ndarray) -> np.ndarray:
    """Mask pixels with a non-mask 4-neighbour (the silhouette; image border excluded)."""
    er = cv2.erode(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)),
                   borderType=cv2.BORDER_REPLICATE)
    return mask & ~er.astype(bool)


def edge_areas(area: Array, maps: Array, W: int, pidx: Array, lib: ModuleType, sel: Array, sub: Array) -> Array:
    """Horizontal areas of the samples `sel`: surface patch areas (_patch_area) for the
    subset `sub` (those in edge cells) where defined, level-column areas `area` otherwise.
    numpy or torch (one formula for both twins)."""
    out = area[sel]                  # a copy (boolean index): safe to write into
    pa, ok = _patch_area(maps, W, pidx[sel][sub], lib)
    out[sub] = lib.where(ok, pa, out[sub])
    return out


def fill_plan(mask: np.ndarray, food: np.ndarray) -> tuple[tuple[int, int],
                                                             list[np.ndarray], np.ndarray]:
    """How the mask's holes (no depth) are filled from the food side: the frame's origin
    (mask bbox padded by 1 px), per growth step the holes filled in it (each takes the mean
    height of its already known 8-neighbours), and the holes no step reaches. Why: depth
    cameras drop ~half the pixels at a depth edge, i.e. on the food's silhouette; without
    them the edge cells lose coverage (-2..-5 % on boxes), and a window median mixes in
    heights from far inside. Growing inwards from the valid side follows the surface.
    Depends on the masks only, so numpy and torch fill the same pixels the same way."""
    (y0, y1), (x0, x1) = bbox(mask)
    y0, x0 = max(y0 - 1, 0), max(x0 - 1, 0)
    known = food[y0:y1 + 1, x0:x1 + 1].astype(np.uint8)
    todo = mask[y0:y1 + 1, x0:x1 + 1] & ~food[y0:y1 + 1, x0:x1 + 1]
    steps: list[np.ndarray] = []
    k = np.ones((3, 3), np.uint8)
    while todo.any():
        new = todo & cv2.dilate(known, k).astype(bool)
        if not new.any():
            break
        steps.append(new)
        known |= new.astype(np.uint8)
        todo &= ~new
    return (y0, x0), steps, todo


def filled_depth(Z: Array, ok: Array, rn: Array, ys: np.ndarray, xs: np.ndarray, d: Any, plan: tuple,
                 lib: ModuleType) -> Array:
    """Z of the mask pixels (ys, xs) with the holes (~ok) filled: heights grown from the food
    side (fill_plan), then Z where each hole's ray reaches its height (rn = r.n per pixel).
    numpy or torch; the torch version keeps the graph (a hole's depth follows its
    neighbours')."""
    (y0, x0), steps, left = plan
    shape = steps[0].shape if steps else left.shape
    iy, ix = ys - y0, xs - x0
    rn = lib.minimum(rn, lib.full_like(rn, -1e-9)) if lib is not np else np.minimum(rn, -1e-9)
    Zs = lib.where(ok, Z, lib.ones_like(Z))
    h = (Zs * rn + d).clamp(min=0.0) if lib is not np else np.maximum(Zs * rn + d, 0.0)
    h = lib.where(ok, h, lib.zeros_like(h))
    if lib is np:
        img = np.zeros(shape)
        img[iy, ix] = h
        wt = np.zeros(shape)
        wt[iy[ok], ix[ok]] = 1.0
        box = dict(ksize=(3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
        for new in steps:
            num, den = cv2.boxFilter(img, -1, **box), cv2.boxFilter(wt, -1, **box)
            img = np.where(new, num / np.maximum(den, 1.0), img)
            wt = wt + new
        img[left] = h[ok].mean()
        hf = img[iy, ix]
    else:
        dev = Z.device
        iy_t, ix_t = lib.as_tensor(iy, device=dev), lib.as_tensor(ix, device=dev)
        img = lib.zeros(shape, dtype=Z.dtype, device=dev).index_put((iy_t, ix_t), h)
        wt = lib.zeros(shape, dtype=Z.dtype, device=dev).index_put(
            (iy_t[ok], ix_t[ok]), lib.ones((), dtype=Z.dtype, device=dev))
        for new in steps:
            new_t = lib.as_tensor(new, device=dev)
            img = lib.where(new_t, box_sum_torch(img, 3) / box_sum_torch(wt, 3).clamp(min=1.0), img)
            wt = wt + new_t.to(Z.dtype)
        img = lib.where(lib.as_tensor(left, device=dev), h[ok].mean(), img)
        hf = img[iy_t, ix_t]
    return lib.where(ok, Z, (hf - d) / rn)


def grid_plan(a: np.ndarray, b: np.ndarray, c: float, margin: int = 3
               ) -> tuple[float, float, int, int]:
    """Grid origin and size covering coordinates a, b with a margin (cells)."""
    a0 = float(np.floor(a.min() / c) - margin) * c
    b0 = float(np.floor(b.min() / c) - margin) * c
    nx = int(np.floor((a.max() - a0) / c)) + margin + 1
    ny = int(np.floor((b.max() - b0) / c)) + margin + 1
    return a0, b0, nx, ny


def hidden_samples(ab: Array, bb: Array, ap: Array, bp: Array, hb: Array, c: float, lib: ModuleType
                   ) -> tuple[Array, Array, Array]:
    """Points along each silhouette ray from its footprint to the plane (flattened)."""
    L = lib.hypot(ap - ab, bp - bb)
    Lmax = float(L.max().detach() if lib is not np else L.max()) if len(L) else 0.0
    S = int(np.clip(np.ceil(Lmax / (0.5 * c)) + 1, 2, 256))
    if lib is np:
        t = np.linspace(0.0, 1.0, S)
    else:
        t = lib.linspace(0.0, 1.0, S, dtype=ab.dtype, device=ab.device)
    ha = (ab[:, None] + t * (ap - ab)[:, None]).reshape(-1)
    hbb = (bb[:, None] + t * (bp - bb)[:, None]).reshape(-1)
    return ha, hbb, (1.0 - t)


def cell_of(a: Array, b: Array, a0: float, b0: float, nx: int, c: float) -> Array:
    """Flat cell index of plane coordinates (numpy or torch, same arithmetic)."""
    if isinstance(a, np.ndarray):
        return np.floor((b - b0) / c).astype(np.int64) * nx + np.floor((a - a0) / c).astype(np.int64)
    return ((b - b0) / c).floor().long() * nx + ((a - a0) / c).floor().long()   # torch


def in_mask(cand: np.ndarray, heights: np.ndarray, a0: float, b0: float, c: float,
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


def footprint_splat(a: np.ndarray, b: np.ndarray, area: np.ndarray, a0: float, b0: float,
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


def hidden_weight(seen_h: np.ndarray, ab: np.ndarray, bb: np.ndarray, ap: np.ndarray, bp: np.ndarray,
                  hb: np.ndarray, a0: float, b0: float, nx: int, c: float, sigma: float) -> np.ndarray:
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
