"""Support plane and food volume from one metric depth map (numpy, plus a torch twin).

Why one module: labels (GT depth), losses (predicted depth, torch, differentiable) and
evaluation must measure volume with the *same* geometry, or a model could look good by
matching a different formula. The torch functions mirror the numpy ones step by step and
draw their random numbers from the same numpy generator, so both give the same numbers.

Conventions (SPEC.md): depth is camera z-depth in metres (0/NaN/inf = no measurement),
K is a 3x3 pinhole matrix, the plane is n.X + d = 0 with the unit normal n pointing
towards the camera (d > 0), so height(X) = n.X + d.

Mask pixels without depth (a depth camera drops about half the pixels at a depth edge, i.e.
on the food's silhouette) get a height grown inwards from the valid food next to them and
the depth where their ray reaches it (_fill_plan), before either method.

Two volume methods:
- "columns": each food pixel is a column of area Z^2 / (fx fy |r.n|), r = K^-1 [u, v, 1].
  Cheap, but ignores the surface slope (about -5 % on mounds) and counts visible walls.
- "heightmap": food points are moved to plane coordinates (two in-plane axes + height)
  and rasterised on cells of cell_mm: a cell's height is the mean of its samples within
  a band below its highest one (the top surface; the max alone is biased up by slope and
  noise, a plain mean is pulled down by visible walls). Small gaps are closed (box mean
  of seen neighbours). Cells hidden behind the food, between each silhouette pixel's
  footprint and the point where its ray meets the plane, get HIDDEN_FILL x the ray
  height, scaled by how steeply the seen top falls towards the silhouette (a flat top
  ending in a wall hides nothing; a dome keeps falling). Edge cells count by the
  horizontal area of the surface patches seen on them (plane-coordinate Jacobian of each
  pixel, ENO stencils so a pixel at a crease stays on its own surface): a wall pixel sees
  ~no table area, so visible walls no longer add coverage past the top's edge (they did
  with the level-column area: +3..+10 % on small boxes and cylinders). Scored on a
  tuned-on set and on a held-out set of scenes never tuned on (bench/bench_geometry.py).
"""
from __future__ import annotations

import contextvars
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np
import torch
import torch.nn.functional as F

Tensor = torch.Tensor

MIN_SUPPORT_PX = 100     # a ring with fewer valid pixels falls back to all valid non-food
RANSAC_SUBSAMPLE = 512   # points scored per hypothesis (speed; robust enough for a table)
RANSAC_ITERS = 64        # hypotheses (3-point planes)
REFINE_MAX = 4000        # points used by the least-squares refit
INLIER_REL = 0.008       # inlier band = INLIER_REL * median depth (>= INLIER_MIN_M)
INLIER_MIN_M = 1e-3
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


@dataclass
class VolumeResult:
    volume_ml: float
    plane_normal: np.ndarray   # (3,) unit, camera frame, towards the camera (d > 0)
    plane_d: float             # plane n.X + d = 0; height(X) = n.X + d
    n_food_px: int             # mask pixels with valid depth
    n_holes: int               # mask pixels with invalid depth (filled, not summed raw)
    height_map: np.ndarray | None = None  # heightmap method: integrated grid (m)


# --------------------------------------------------------------------------- validation
def _valid_depth(depth: np.ndarray) -> np.ndarray:
    return np.isfinite(depth) & (depth > 0)


def check_K(K: np.ndarray, what: str = "K") -> np.ndarray:
    """A valid pinhole K as float64, or ValueError saying what is wrong with `what`."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"{what}: must be 3x3, got shape {K.shape}")
    if not np.all(np.isfinite(K)):
        raise ValueError(f"{what}: contains non-finite values")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"{what}: focal lengths must be positive, got fx={K[0, 0]}, fy={K[1, 1]}")
    if abs(np.linalg.det(K)) < 1e-12:
        raise ValueError(f"{what}: not invertible")
    if not np.allclose(K[2], [0.0, 0.0, 1.0]):
        raise ValueError(f"{what}: last row must be [0, 0, 1], got {K[2].tolist()}")
    return K


def _check_inputs(depth: np.ndarray, mask: np.ndarray, K: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    depth = np.asarray(depth)
    mask = np.asarray(mask)
    if depth.ndim != 2:
        raise ValueError(f"depth: must be 2-D (HxW), got shape {depth.shape}")
    if mask.ndim != 2:
        raise ValueError(f"mask: must be 2-D (HxW), got shape {mask.shape}")
    if depth.shape != mask.shape:
        raise ValueError(f"depth/mask shape mismatch: {depth.shape} vs {mask.shape}")
    mask = mask.astype(bool)
    if not mask.any():
        raise ValueError("mask: empty (no food pixels)")
    return depth, mask, check_K(K)


def _check_method(method: str) -> None:
    if method not in ("heightmap", "columns"):
        raise ValueError(f"method: must be 'heightmap' or 'columns', got {method!r}")


# --------------------------------------------------------------------------- basics
def _ray_xy(K: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(r_x, r_y) of r = K^-1 [u, v, 1] / r_z for pixels (r_z = 1, so X = Z * r). Written
    element-wise: an (N,3) @ (3,3) matmul is surprisingly slow here and this runs on every
    call."""
    Ki = np.linalg.inv(K)
    u = xs.astype(np.float64)
    v = ys.astype(np.float64)
    rz = Ki[2, 0] * u + Ki[2, 1] * v + Ki[2, 2]
    rx = (Ki[0, 0] * u + Ki[0, 1] * v + Ki[0, 2]) / rz
    return rx, (Ki[1, 0] * u + Ki[1, 1] * v + Ki[1, 2]) / rz


def _rays(K: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """r = K^-1 [u, v, 1] / r_z for pixels (N,3), so X = Z * r."""
    r = np.empty((len(xs), 3))
    r[:, 0], r[:, 1] = _ray_xy(K, ys, xs)
    r[:, 2] = 1.0
    return r


def backproject(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """HxWx3 camera-frame points X = Z K^-1 [u, v, 1]; NaN where depth is invalid."""
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"depth: must be 2-D (HxW), got shape {depth.shape}")
    K = check_K(K)
    H, W = depth.shape
    ys, xs = np.mgrid[0:H, 0:W]
    r = _rays(K, ys.ravel(), xs.ravel()).reshape(H, W, 3)
    z = np.where(_valid_depth(depth), depth, np.nan)
    return r * z[..., None]


def support_mask(mask: np.ndarray, valid: np.ndarray, ring_px: int) -> np.ndarray:
    """Valid non-food pixels within `ring_px` of the mask (the table right around the
    food, where the plane is most relevant); all valid non-food pixels when the ring has
    fewer than MIN_SUPPORT_PX pixels."""
    mask = np.asarray(mask, dtype=bool)
    valid = np.asarray(valid, dtype=bool)
    if mask.shape != valid.shape or mask.ndim != 2:
        raise ValueError(f"support_mask: mask {mask.shape} and valid {valid.shape} must be "
                         "equal 2-D shapes")
    if ring_px < 0:
        raise ValueError(f"ring_px: must be >= 0, got {ring_px}")
    ring = _ring(mask, valid, ring_px)
    if ring.sum() >= MIN_SUPPORT_PX:
        return ring
    return valid & ~mask


def _ring(mask: np.ndarray, valid: np.ndarray, ring_px: int) -> np.ndarray:
    """Valid non-food pixels within ring_px (Euclidean) of the mask."""
    ring = np.zeros_like(mask)
    if mask.any() and ring_px > 0:
        ys, xs = _bbox(mask)
        H, W = mask.shape
        y0, y1 = max(ys[0] - ring_px, 0), min(ys[1] + ring_px, H)
        x0, x1 = max(xs[0] - ring_px, 0), min(xs[1] + ring_px, W)
        crop = (~mask[y0:y1, x0:x1]).astype(np.uint8)
        dist = cv2.distanceTransform(crop, cv2.DIST_L2, 3)
        ring[y0:y1, x0:x1] = dist <= ring_px
        ring &= valid & ~mask
    return ring


def _bbox(mask: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    """((y0, y1), (x0, x1)) half-open bounding box of a non-empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return (int(rows[0]), int(rows[-1]) + 1), (int(cols[0]), int(cols[-1]) + 1)


def _ransac_draws(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(subsample idx, hypothesis triples into the subsample, refit idx): drawn with numpy
    in both twins so that numpy and torch test the same planes."""
    rng = np.random.default_rng(seed)
    sub = rng.integers(0, n, RANSAC_SUBSAMPLE) if n > RANSAC_SUBSAMPLE else np.arange(n)
    hyp = rng.integers(0, len(sub), (RANSAC_ITERS, 3))
    refit = rng.integers(0, n, REFINE_MAX) if n > REFINE_MAX else np.arange(n)
    return sub, hyp, refit


def _orient(normal, d):
    """Flip so that d > 0 (the camera centre, the origin, is on the positive side)."""
    s = 1.0 if d >= 0 else -1.0
    return normal * s, d * s


def _ls_plane(P: np.ndarray) -> tuple[np.ndarray, float]:
    c = np.ones(len(P)) @ P / len(P)     # = P.mean(axis=0), ~10x faster on (N, 3)
    Q = P - c
    _, vec = np.linalg.eigh(Q.T @ Q)
    n = vec[:, 0]
    return _orient(n, -float(n @ c))


def _inlier_thr(S: np.ndarray) -> float:
    """RANSAC inlier band (m): grows with depth, like depth noise does."""
    z = np.abs(S[:, 2])
    z = z[np.isfinite(z)]
    return max(INLIER_MIN_M, INLIER_REL * float(np.sort(z)[len(z) // 2])) if len(z) else INLIER_MIN_M


def fit_plane(points: np.ndarray, seed: int = 0) -> tuple[np.ndarray, float]:
    """Robust plane (normal towards the camera, d): RANSAC over 3-point hypotheses scored on
    a subsample (fast), then two least-squares refits on the inliers (accurate)."""
    P = np.asarray(points, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] != 3:
        raise ValueError(f"points: must be Nx3, got shape {P.shape}")
    P = P[np.all(np.isfinite(P), axis=1)]
    if len(P) < 3:
        raise ValueError(f"points: need >= 3 finite points to fit a plane, got {len(P)}")
    sub, hyp, refit = _ransac_draws(len(P), seed)
    return _fit_plane_drawn(P[sub], hyp, P[refit])


def _fit_plane_drawn(S: np.ndarray, hyp: np.ndarray, R: np.ndarray) -> tuple[np.ndarray, float]:
    """fit_plane on its drawn points: subsample S, hypothesis triples into S, refit points R
    (finite). Why split: a caller can back-project only the points that are drawn."""
    thr = _inlier_thr(S)
    A, B, C = S[hyp[:, 0]], S[hyp[:, 1]], S[hyp[:, 2]]
    u, v = B - A, C - A
    nrm = np.stack([u[:, 1] * v[:, 2] - u[:, 2] * v[:, 1], u[:, 2] * v[:, 0] - u[:, 0] * v[:, 2],
                    u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]], axis=1)
    ln = np.linalg.norm(nrm, axis=1)
    ok = ln > 1e-12
    nrm = nrm / np.where(ok, ln, 1.0)[:, None]
    dd = -np.einsum("ij,ij->i", nrm, A)
    dist = S @ nrm.T             # in place: fresh temporaries of this size cost more
    dist += dd
    score = (np.abs(dist, out=dist) < thr).sum(axis=0)
    score = np.where(ok, score, -1)
    k = int(np.argmax(score))
    if score[k] < 3:
        raise ValueError("points: degenerate (collinear) point set, no plane")
    n, d = nrm[k], float(dd[k])
    for _ in range(2):
        inl = np.abs(R @ n + d) < thr
        if inl.sum() < 3:
            break
        n, d = _ls_plane(R[inl])
    return _orient(n, d)


def fit_support_plane(depth: np.ndarray, mask: np.ndarray, K: np.ndarray, ring_px: int = 20,
                      seed: int = 0) -> tuple[np.ndarray, float]:
    """Plane of the table/plate around the food (see support_mask)."""
    depth, mask, K = _check_inputs(depth, mask, K)
    return _fit_support(depth, mask, K, _valid_depth(depth), ring_px, seed)


def _fit_support(depth, mask, K, valid, ring_px, seed):
    sup = support_mask(mask, valid, ring_px)
    ys, xs = np.nonzero(sup)
    if len(ys) < 3:
        raise ValueError(f"depth: no valid support pixels around the mask ({len(ys)} found)")
    P = _rays(K, ys, xs) * depth[ys, xs].astype(np.float64)[:, None]
    return fit_plane(P, seed)


def height_above_plane(depth: np.ndarray, K: np.ndarray, normal: np.ndarray, d: float
                       ) -> np.ndarray:
    """HxW height n.X + d in metres; NaN where depth is invalid."""
    X = backproject(depth, K)
    return X @ np.asarray(normal, dtype=np.float64) + float(d)


def _median(x: np.ndarray) -> float:
    """np.median of a non-empty 1-D array by partitioning (np.median's checks cost more than
    the work at these sizes, and this runs on every call)."""
    n = len(x)
    p = np.partition(x, [(n - 1) // 2, n // 2])
    return 0.5 * (float(p[(n - 1) // 2]) + float(p[n // 2]))


def _cell_size(cell_mm: float, area: np.ndarray) -> float:
    """Cell edge (m): cell_mm, but at least MIN_CELL_PX pixel footprints, so every cell
    holds several samples (edge coverage and gap closing need them at low resolution)."""
    return max(cell_mm * 1e-3, MIN_CELL_PX * float(np.sqrt(_median(area[::8]))))


def _sigma_idx(n: int) -> np.ndarray:
    """The support points _noise_sigma looks at (evenly spread, at most 1024)."""
    return np.linspace(0, n - 1, min(n, 1024)).astype(np.int64)


def _noise_sigma(P: np.ndarray, n: np.ndarray, d: float) -> float:
    """Depth noise (m) seen as the robust spread (1.4826 MAD) of support heights: widens
    the heightmap's top band so noise is averaged, not maxed (numpy only; the torch twin
    calls it on detached values)."""
    if len(P) < 3:
        return 0.0
    S = P[_sigma_idx(len(P))]
    r = S @ np.asarray(n, dtype=np.float64) + float(d)
    # only the plane's inliers: the ring may also hold plate rims or neighbouring food
    r = r[np.abs(r) < _inlier_thr(S)]
    return float(1.4826 * _median(np.abs(r - _median(r)))) if len(r) else 0.0


def _plane_basis(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two in-plane unit axes (deterministic: e1 follows the camera x axis)."""
    a = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = a - (a @ n) * n
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(n, e1)


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
    nrm = lib.where(lib.isfinite(nrm), nrm, inf) if lib is np else torch.nan_to_num(nrm, nan=inf)
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


def _patch_maps(ys: np.ndarray, xs: np.ndarray, vals, lib):
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
    pidx = torch.as_tensor(pidx, device=a.device)
    maps = torch.full((3, (H + 4) * (W + 4)), float("nan"), dtype=a.dtype, device=a.device)
    maps[:, pidx] = torch.stack(list(vals))
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
        S = maps[:, torch.as_tensor(offs, device=idx.device)[:, :, None] + idx[None, None]]
    dd, ok = _eno_diff(S, lib)
    # basis e1 ~ camera x, e2 = n x e1 flips the orientation: area = -(a_u b_v - a_v b_u)
    return -(dd[0, 0] * dd[1, 1] - dd[0, 1] * dd[1, 0]), ok[0] & ok[1]


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Mask pixels with a non-mask 4-neighbour (the silhouette; image border excluded)."""
    er = cv2.erode(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)),
                   borderType=cv2.BORDER_REPLICATE)
    return mask & ~er.astype(bool)


def _edge_areas(area, maps, W: int, pidx, lib, sel, sub):
    """Horizontal areas of the samples `sel`: surface patch areas (_patch_area) for the
    subset `sub` (those in edge cells) where defined, level-column areas `area` otherwise.
    numpy or torch (one formula for both twins)."""
    out = area[sel]                  # a copy (boolean index): safe to write into
    pa, ok = _patch_area(maps, W, pidx[sel][sub], lib)
    out[sub] = lib.where(ok, pa, out[sub])
    return out


def _fill_plan(mask: np.ndarray, food: np.ndarray) -> tuple[tuple[int, int],
                                                             list[np.ndarray], np.ndarray]:
    """How the mask's holes (no depth) are filled from the food side: the frame's origin
    (mask bbox padded by 1 px), per growth step the holes filled in it (each takes the mean
    height of its already known 8-neighbours), and the holes no step reaches. Why: depth
    cameras drop ~half the pixels at a depth edge, i.e. on the food's silhouette; without
    them the edge cells lose coverage (-2..-5 % on boxes), and a window median mixes in
    heights from far inside. Growing inwards from the valid side follows the surface.
    Depends on the masks only, so numpy and torch fill the same pixels the same way."""
    (y0, y1), (x0, x1) = _bbox(mask)
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


def _filled_depth(Z, ok, rn, ys, xs, d, plan, lib):
    """Z of the mask pixels (ys, xs) with the holes (~ok) filled: heights grown from the food
    side (_fill_plan), then Z where each hole's ray reaches its height (rn = r.n per pixel).
    numpy or torch; the torch version keeps the graph (a hole's depth follows its
    neighbours')."""
    (y0, x0), steps, left = plan
    shape = steps[0].shape if steps else left.shape
    iy, ix = ys - y0, xs - x0
    rn = lib.minimum(rn, lib.full_like(rn, -1e-9)) if lib is torch else np.minimum(rn, -1e-9)
    Zs = lib.where(ok, Z, lib.ones_like(Z))
    h = (Zs * rn + d).clamp(min=0.0) if lib is torch else np.maximum(Zs * rn + d, 0.0)
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
        iy_t, ix_t = torch.as_tensor(iy, device=dev), torch.as_tensor(ix, device=dev)
        img = torch.zeros(shape, dtype=Z.dtype, device=dev).index_put((iy_t, ix_t), h)
        wt = torch.zeros(shape, dtype=Z.dtype, device=dev).index_put(
            (iy_t[ok], ix_t[ok]), torch.ones((), dtype=Z.dtype, device=dev))
        for new in steps:
            new_t = torch.as_tensor(new, device=dev)
            img = torch.where(new_t, _t_box(img, 3) / _t_box(wt, 3).clamp(min=1.0), img)
            wt = wt + new_t.to(Z.dtype)
        img = torch.where(torch.as_tensor(left, device=dev), h[ok].mean(), img)
        hf = img[iy_t, ix_t]
    return lib.where(ok, Z, (hf - d) / rn)


def _grid_plan(a: np.ndarray, b: np.ndarray, c: float, margin: int = 3
               ) -> tuple[float, float, int, int]:
    """Grid origin and size covering coordinates a, b with a margin (cells)."""
    a0 = float(np.floor(a.min() / c) - margin) * c
    b0 = float(np.floor(b.min() / c) - margin) * c
    nx = int(np.floor((a.max() - a0) / c)) + margin + 1
    ny = int(np.floor((b.max() - b0) / c)) + margin + 1
    return a0, b0, nx, ny


# --------------------------------------------------------------------------- numpy volume
def estimate_volume(depth: np.ndarray, mask: np.ndarray, K: np.ndarray,
                    method: str = "heightmap", ring_px: int = 20, cell_mm: float = 2.0,
                    plane: tuple[np.ndarray, float] | None = None, seed: int = 0
                    ) -> VolumeResult:
    """Food volume (mL) above the support plane (fitted, or given as plane=(n, d))."""
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
        return _rays(sK, sys_[idx], sxs[idx]) * sdepth[sys_[idx], sxs[idx]][:, None]
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
    e1, e2 = _plane_basis(n)
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


def _hidden_samples(ab, bb, ap, bp, hb, c, lib):
    """Points along each silhouette ray from its footprint to the plane (flattened)."""
    L = lib.hypot(ap - ab, bp - bb)
    Lmax = float(L.max().detach() if lib is torch else L.max()) if len(L) else 0.0
    S = int(np.clip(np.ceil(Lmax / (0.5 * c)) + 1, 2, 256))
    if lib is np:
        t = np.linspace(0.0, 1.0, S)
    else:
        t = torch.linspace(0.0, 1.0, S, dtype=ab.dtype, device=ab.device)
    ha = (ab[:, None] + t * (ap - ab)[:, None]).reshape(-1)
    hbb = (bb[:, None] + t * (bp - bb)[:, None]).reshape(-1)
    return ha, hbb, (1.0 - t)


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


# --------------------------------------------------------------------------- torch twin
def _t_rays(Kinv: Tensor, ys: Tensor, xs: Tensor) -> Tensor:
    pix = torch.stack([xs.to(Kinv.dtype), ys.to(Kinv.dtype), torch.ones_like(xs, dtype=Kinv.dtype)], 1)
    r = pix @ Kinv.T
    return r / r[:, 2:3]


def _t_orient(n: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
    s = torch.where(d.detach() >= 0, 1.0, -1.0).to(n.dtype)
    return n * s, d * s


def _t_ls_plane(P: Tensor) -> tuple[Tensor, Tensor]:
    c = P.mean(0)
    Q = P - c
    _, vec = torch.linalg.eigh(Q.T @ Q)
    n = vec[:, 0]
    return _t_orient(n, -(n @ c))


def fit_plane_torch(points: Tensor, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Torch twin of fit_plane (same draws): differentiable through the LS refit."""
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points: must be Nx3, got shape {tuple(points.shape)}")
    P = points[torch.isfinite(points).all(1)]
    if len(P) < 3:
        raise ValueError(f"points: need >= 3 finite points to fit a plane, got {len(P)}")
    sub, hyp, refit = _ransac_draws(len(P), seed)
    dev = P.device
    with torch.no_grad():
        S = P[torch.as_tensor(sub, device=dev)]
        thr = _inlier_thr(S.cpu().numpy())
        hy = torch.as_tensor(hyp, device=dev)
        A, B, C = S[hy[:, 0]], S[hy[:, 1]], S[hy[:, 2]]
        nrm = torch.linalg.cross(B - A, C - A)
        ln = nrm.norm(dim=1)
        ok = ln > 1e-12
        nrm = nrm / torch.where(ok, ln, torch.ones_like(ln))[:, None]
        dd = -(nrm * A).sum(1)
        score = ((S @ nrm.T + dd).abs() < thr).sum(0)
        score = torch.where(ok, score, torch.full_like(score, -1))
        k = int(torch.argmax(score))
        if int(score[k]) < 3:
            raise ValueError("points: degenerate (collinear) point set, no plane")
        n, d = nrm[k], dd[k]
    R = P[torch.as_tensor(refit, device=dev)]
    for _ in range(2):
        inl = (R.detach() @ n.detach() + d.detach()).abs() < thr
        if int(inl.sum()) < 3:
            break
        n, d = _t_ls_plane(R[inl])
    return _t_orient(n, d)


def _t_check(depth: Tensor, mask: Tensor, K: Tensor) -> None:
    if depth.ndim != 3:
        raise ValueError(f"depth: must be BxHxW, got shape {tuple(depth.shape)}")
    if mask.shape != depth.shape:
        raise ValueError(f"depth/mask shape mismatch: {tuple(depth.shape)} vs {tuple(mask.shape)}")
    if K.ndim != 3 or K.shape[0] != depth.shape[0] or K.shape[1:] != (3, 3):
        raise ValueError(f"K: must be Bx3x3 with B={depth.shape[0]}, got {tuple(K.shape)}")


def _t_support_points(depth: Tensor, mask_np: np.ndarray, valid_np: np.ndarray,
                      Kinv: Tensor, ring_px: int) -> Tensor:
    ys, xs = np.nonzero(support_mask(mask_np, valid_np, ring_px))
    ys_t = torch.as_tensor(ys, device=depth.device)
    xs_t = torch.as_tensor(xs, device=depth.device)
    return _t_rays(Kinv, ys_t, xs_t) * depth[ys_t, xs_t][:, None].to(Kinv.dtype)


def _t_support_fit(depth: Tensor, mask_np: np.ndarray, valid_np: np.ndarray, Kinv: Tensor,
                   ring_px: int, seed: int) -> tuple[Tensor, Tensor]:
    P = _t_support_points(depth, mask_np, valid_np, Kinv, ring_px)
    if len(P) < 3:
        raise ValueError(f"depth: no valid support pixels around the mask ({len(P)} found)")
    return fit_plane_torch(P, seed)


def _t_prepare(depth: Tensor, mask: Tensor, K: Tensor, b: int):
    """Per-item numpy views of the non-differentiable inputs (mask, validity) and K^-1."""
    Kb = check_K(K[b].detach().cpu().numpy())
    dt = depth.dtype if depth.dtype in (torch.float32, torch.float64) else torch.float32
    Kinv = torch.linalg.inv(K[b].to(dt))
    m = mask[b].detach().cpu().numpy().astype(bool)
    if not m.any():
        raise ValueError(f"mask[{b}]: empty (no food pixels)")
    db = depth[b]
    valid_t = torch.isfinite(db) & (db > 0)
    return Kb, Kinv, m, valid_t, valid_t.cpu().numpy()


# while True, the twin works on a host copy: what it does there makes the device wait for
# nothing (sync counters in bench/bench_geometry.py skip it)
HOST_SIDE: contextvars.ContextVar[bool] = contextvars.ContextVar("geometry_host_side",
                                                                 default=False)


HOST_COPY: bool | None = None   # default of host_copy; None: when depth is not on the CPU


def _use_host(depth: Tensor, host_copy: bool | None) -> bool:
    host_copy = HOST_COPY if host_copy is None else host_copy
    return depth.device.type != "cpu" if host_copy is None else bool(host_copy)


def _host_twin(fn, depth: Tensor, mask: Tensor, K: Tensor, params: list[Tensor]) -> Tensor:
    """fn(depth, mask, K, *params) -> (B, k), evaluated on a host copy of the batch and
    returned on depth's device with the same values and the same first derivatives w.r.t.
    depth and params: y = y0 + sum(J * (x - x.detach())).

    Why: the twin's discrete decisions (which pixels, how many cells, which stencil) depend
    on the data, so on a GPU each is a host sync (about 75 per dish). Here the device sends
    one packed copy per call and gets the values and Jacobians back in one asynchronous
    (pinned) copy. First derivatives only (no double backward)."""
    dev, dt, B = depth.device, depth.dtype, depth.shape[0]
    grad_in = [x for x in [depth, *params] if x.requires_grad and torch.is_grad_enabled()]
    parts = [x.detach().reshape(B, -1).to(device=dev, dtype=dt) for x in [depth, mask, K, *params]]
    host = torch.cat(parts, 1).cpu().split([x.shape[1] for x in parts], 1)   # the one sync
    dh = host[0].reshape(depth.shape).requires_grad_(depth.requires_grad)
    ph = [h.reshape(p.shape).requires_grad_(p.requires_grad) for h, p in zip(host[3:], params)]
    token = HOST_SIDE.set(True)
    try:
        with torch.enable_grad():
            y = fn(dh, host[1].reshape(mask.shape) > 0.5, host[2].reshape(K.shape), *ph)
            h_in = [x for x, d in zip([dh, *ph], [depth, *params]) if any(d is g for g in grad_in)]
            jac = [torch.autograd.grad(y[:, j].sum(), h_in, retain_graph=j + 1 < y.shape[1],
                                       allow_unused=True, materialize_grads=True)
                   for j in range(y.shape[1])] if h_in else []
    finally:
        HOST_SIDE.reset(token)
    # values and Jacobians back in one copy: J[i] (B, k, numel of input i per dish)
    J = [torch.stack([jac[j][i].reshape(B, -1) for j in range(y.shape[1])], 1)
         for i in range(len(h_in))]
    back = torch.cat([y.detach()] + [x.reshape(B, -1) for x in J], 1).to(dt)
    if dev.type == "cuda":
        back = back.pin_memory()
    back = back.to(dev, non_blocking=True).split(
        [y.shape[1]] + [x.shape[1] * x.shape[2] for x in J], 1)
    out = back[0]
    for x, Jx in zip(grad_in, back[1:]):
        delta = (x - x.detach()).reshape(B, 1, -1).to(dt)
        out = out + (Jx.reshape(B, y.shape[1], -1) * delta).sum(-1)
    return out


def fit_support_plane_torch(depth: Tensor, mask: Tensor, K: Tensor, ring_px: int = 20,
                            seed: int = 0, host_copy: bool | None = None
                            ) -> tuple[Tensor, Tensor]:
    """Batched torch twin of fit_support_plane: (normals Bx3, d B). host_copy: see
    estimate_volume_torch."""
    _t_check(depth, mask, K)
    if _use_host(depth, host_copy):
        def fit(dh, mh, Kh):
            n, d = fit_support_plane_torch(dh, mh, Kh, ring_px, seed, host_copy=False)
            return torch.cat([n, d[:, None]], 1)
        nd = _host_twin(fit, depth, mask, K, [])
        return nd[:, :3], nd[:, 3]
    ns, ds = [], []
    for b in range(depth.shape[0]):
        _, Kinv, m, _, valid = _t_prepare(depth, mask, K, b)
        n, d = _t_support_fit(depth[b], m, valid, Kinv, ring_px, seed)
        ns.append(n)
        ds.append(d)
    return torch.stack(ns), torch.stack(ds)


def estimate_volume_torch(depth: Tensor, mask: Tensor, K: Tensor, method: str = "heightmap",
                          ring_px: int = 20, cell_mm: float = 2.0,
                          plane: tuple[Tensor, Tensor] | None = None, seed: int = 0,
                          host_copy: bool | None = None) -> Tensor:
    """Batched, differentiable (w.r.t. depth and a given plane) twin of estimate_volume:
    volumes (B,) in mL.

    Discrete decisions (support pixels, inliers, cell indices, occupancy) are taken on
    detached values; every value that enters the volume keeps its graph. host_copy (default:
    when depth is not on the CPU): the per-dish work (data-dependent point counts, grid
    sizes, stencils) runs on one host copy of the batch and comes back as values plus their
    first derivatives (see _host_twin): one device->host copy per call instead of tens of
    host syncs per dish."""
    _check_method(method)
    _t_check(depth, mask, K)
    if cell_mm <= 0:
        raise ValueError(f"cell_mm: must be positive, got {cell_mm}")
    if _use_host(depth, host_copy):
        def vol(dh, mh, Kh, *pl):
            return estimate_volume_torch(dh, mh, Kh, method, ring_px, cell_mm,
                                         tuple(pl) if pl else None, seed, host_copy=False)[:, None]
        return _host_twin(vol, depth, mask, K, list(plane) if plane is not None else [])[:, 0]
    out = []
    for b in range(depth.shape[0]):
        Kb, Kinv, m, valid_t, valid = _t_prepare(depth, mask, K, b)
        db = depth[b].to(Kinv.dtype)
        food = m & valid
        if not food.any():
            raise ValueError(f"depth[{b}]: no valid depth inside the mask")
        P = _t_support_points(db, m, valid, Kinv, ring_px)
        if plane is None:
            if len(P) < 3:
                raise ValueError(f"depth[{b}]: no valid support pixels around the mask "
                                 f"({len(P)} found)")
            n, d = fit_plane_torch(P, seed)
        else:
            n0 = plane[0][b].to(db.dtype)
            ln = n0.norm()
            n, d = _t_orient(n0 / ln, plane[1][b].to(db.dtype) / ln)
        sigma = _noise_sigma(P.detach().cpu().numpy(), n.detach().cpu().numpy(), float(d.detach()))
        out.append(_t_volume(db, m, food, Kb, Kinv, n, d, method, cell_mm * 1e-3, sigma))
    return torch.stack(out)


def _t_volume(db, m, food, Kb, Kinv, n, d, method, c, sigma) -> Tensor:
    dev = db.device
    ys, xs = np.nonzero(m)
    ys_t, xs_t = torch.as_tensor(ys, device=dev), torch.as_tensor(xs, device=dev)
    r = _t_rays(Kinv, ys_t, xs_t)
    Z = db[ys_t, xs_t]
    ok = food[ys, xs]
    if not ok.all():
        Z = _filled_depth(Z, torch.as_tensor(ok, device=dev), r @ n, ys, xs, d,
                          _fill_plan(m, food), torch)
    X = r * Z[:, None]
    h = (X @ n + d).clamp(min=0.0)
    area = Z * Z / (float(Kb[0, 0] * Kb[1, 1]) * (r @ n).abs())
    if method == "columns":
        return (h * area).sum() * 1e6
    c = _cell_size(c * 1e3, area.detach().cpu().numpy())
    e1, e2 = _t_plane_basis(n)
    bnd = torch.as_tensor(_boundary(m)[ys, xs], device=dev)
    Xb, hb = X[bnd], h[bnd]
    nX = Xb @ n
    s = torch.where(nX < -1e-9, (-hb / nX.clamp(max=-1e-9)).clamp(max=1.0), torch.zeros_like(hb))
    Xp = Xb * (1.0 + s)[:, None]
    ab, bb = Xb @ e1, Xb @ e2
    ap, bp = Xp @ e1, Xp @ e2
    a, b = X @ e1, X @ e2
    with torch.no_grad():
        a0, b0, nx, ny = _grid_plan(torch.cat([a, ap]).cpu().numpy(),
                                    torch.cat([b, bp]).cpu().numpy(), c)
        cell = _cell_of(a.detach(), b.detach(), a0, b0, nx, c)
    view = (*(x.detach().cpu().numpy() for x in (e1, e2, n)), float(d.detach()), Kb, m)
    patch_area = partial(_edge_areas, area, *_patch_maps(ys, xs, (a, b, h), torch), torch)
    grid = _t_heightmap(cell, h, patch_area, (a, b), (ab, bb, ap, bp, hb), a0, b0, nx, ny, c,
                        sigma, view)
    return grid.sum() * c * c * 1e6


def _t_plane_basis(n: Tensor) -> tuple[Tensor, Tensor]:
    ax = 0 if abs(float(n[0].detach())) < 0.9 else 1
    a = torch.zeros(3, dtype=n.dtype, device=n.device)
    a[ax] = 1.0
    e1 = a - (a @ n) * n
    e1 = e1 / e1.norm()
    return e1, torch.linalg.cross(n, e1)


def _t_box(x: Tensor, k: int) -> Tensor:
    w = torch.ones((1, 1, k, k), dtype=x.dtype, device=x.device)
    return F.conv2d(x[None, None], w, padding=k // 2)[0, 0]


def _t_dilate(x: Tensor, k: int) -> Tensor:
    return F.max_pool2d(x[None, None], k, stride=1, padding=k // 2)[0, 0]


def _t_erode(x: Tensor, k: int) -> Tensor:
    return -_t_dilate(-x, k)


def _t_heightmap(cell, h, patch_area, ab_pts, rays, a0, b0, nx, ny, c, sigma, view) -> Tensor:
    """Torch twin of _heightmap_np; heights and coverage keep their graph."""
    N = nx * ny
    dt, dev = h.dtype, h.device
    top = torch.full((N,), -torch.inf, dtype=dt, device=dev).scatter_reduce(
        0, cell, h.detach(), "amax")
    band = h.detach() >= top[cell] - (TOP_BAND * c + NOISE_BAND * sigma)
    cnt = torch.bincount(cell, minlength=N)
    nb = torch.bincount(cell[band], minlength=N).clamp(min=1).to(dt)
    vis = torch.zeros(N, dtype=dt, device=dev).index_add(0, cell[band], h[band]) / nb
    occ = (cnt > 0).reshape(ny, nx)
    vis = vis.reshape(ny, nx)
    occf = occ.to(dt)
    closed = _t_erode(_t_dilate(occf, GAP_KERNEL), GAP_KERNEL) > 0.5
    num = _t_box(vis * occf, GAP_KERNEL)
    den = _t_box(occf, GAP_KERNEL)
    gap_h = num / den.clamp(min=1.0)
    gap = torch.as_tensor(_in_mask((closed & ~occ).cpu().numpy(), gap_h.detach().cpu().numpy(),
                                   a0, b0, c, *view), device=dev)
    zero = torch.zeros((), dtype=dt, device=dev)
    seen_h = torch.where(occ, vis, torch.where(gap, gap_h, zero))
    ab, bb, ap, bp, hb = rays
    with torch.no_grad():
        w = _hidden_weight(*(x.detach().cpu().numpy() for x in (seen_h, ab, bb, ap, bp, hb)),
                           a0, b0, nx, c, sigma)
    ha, hbb, tw = _hidden_samples(ab, bb, ap, bp, hb, c, torch)
    hcell = _cell_of(ha.detach(), hbb.detach(), a0, b0, nx, c)
    hh = ((torch.as_tensor(w, dtype=dt, device=dev) * hb)[:, None] * tw).reshape(-1)
    hid = torch.full((N,), -torch.inf, dtype=dt, device=dev).scatter_reduce(0, hcell, hh, "amax")
    hid = torch.where(torch.isfinite(hid), hid, zero).reshape(ny, nx)
    fill = (hid.detach() > 0) & ~(occ | gap)
    out = torch.where(fill, hid, seen_h)
    seen = (occ | gap).to(dt)
    edge = occ & ~(_t_erode(seen, 3) > 0.5)
    near = (_t_dilate(edge.to(dt), 3) > 0.5).reshape(-1)[cell]
    area = patch_area(near, edge.reshape(-1)[cell][near])
    with torch.no_grad():
        tgt, wts = _footprint_splat(*(x.detach().cpu().numpy()
                                      for x in (ab_pts[0][near], ab_pts[1][near], area)),
                                    a0, b0, nx, c, (cnt > 0).cpu().numpy())
    wts_t = torch.as_tensor(wts, dtype=dt, device=dev)
    asum = torch.zeros(N, dtype=dt, device=dev).index_add(
        0, torch.as_tensor(tgt, device=dev), wts_t * area.repeat(4)).reshape(ny, nx)
    ef = edge.to(dt)
    cov = _t_box(asum * ef, EDGE_SMOOTH) / _t_box(ef, EDGE_SMOOTH).clamp(min=1.0)
    cov = (cov / (c * c)).clamp(max=1.0)
    return out * torch.where(edge, cov, torch.ones_like(cov))
