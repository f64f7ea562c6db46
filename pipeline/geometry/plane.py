"""The support plane: a robust RANSAC + least-squares fit on the ring of valid non-food
pixels around the food, and heights above it."""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.config import VolumeConfig, or_default
from pipeline.geometry.camera import backproject, check_inputs, rays, valid_depth
from pipeline.geometry.shared import bbox, inlier_thr, ransac_draws

MIN_SUPPORT_PX = 100     # a ring with fewer valid pixels falls back to all valid non-food


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
    ring = support_ring(mask, valid, ring_px)
    if ring.sum() >= MIN_SUPPORT_PX:
        return ring
    return valid & ~mask


def support_ring(mask: np.ndarray, valid: np.ndarray, ring_px: int) -> np.ndarray:
    """Valid non-food pixels within ring_px (Euclidean) of the mask."""
    ring = np.zeros_like(mask)
    if mask.any() and ring_px > 0:
        ys, xs = bbox(mask)
        H, W = mask.shape
        y0, y1 = max(ys[0] - ring_px, 0), min(ys[1] + ring_px, H)
        x0, x1 = max(xs[0] - ring_px, 0), min(xs[1] + ring_px, W)
        crop = (~mask[y0:y1, x0:x1]).astype(np.uint8)
        dist = cv2.distanceTransform(crop, cv2.DIST_L2, 3)
        ring[y0:y1, x0:x1] = dist <= ring_px
        ring &= valid & ~mask
    return ring


def orient_plane(normal: np.ndarray, d: float) -> tuple[np.ndarray, float]:
    """Flip so that d > 0 (the camera centre, the origin, is on the positive side)."""
    s = 1.0 if d >= 0 else -1.0
    return normal * s, d * s


def _ls_plane(P: np.ndarray) -> tuple[np.ndarray, float]:
    c = np.ones(len(P)) @ P / len(P)     # = P.mean(axis=0), ~10x faster on (N, 3)
    Q = P - c
    _, vec = np.linalg.eigh(Q.T @ Q)
    n = vec[:, 0]
    return orient_plane(n, -float(n @ c))


def fit_plane(points: np.ndarray, seed: int = 0) -> tuple[np.ndarray, float]:
    """Robust plane (normal towards the camera, d): RANSAC over 3-point hypotheses scored on
    a subsample (fast), then two least-squares refits on the inliers (accurate)."""
    P = np.asarray(points, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] != 3:
        raise ValueError(f"points: must be Nx3, got shape {P.shape}")
    P = P[np.all(np.isfinite(P), axis=1)]
    if len(P) < 3:
        raise ValueError(f"points: need >= 3 finite points to fit a plane, got {len(P)}")
    sub, hyp, refit = ransac_draws(len(P), seed)
    return fit_plane_drawn(P[sub], hyp, P[refit])


def fit_plane_drawn(S: np.ndarray, hyp: np.ndarray, R: np.ndarray) -> tuple[np.ndarray, float]:
    """fit_plane on its drawn points: subsample S, hypothesis triples into S, refit points R
    (finite). Why split: a caller can back-project only the points that are drawn."""
    thr = inlier_thr(S)
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
    return orient_plane(n, d)


def fit_support_plane(depth: np.ndarray, mask: np.ndarray, K: np.ndarray, ring_px: int | None = None,
                      seed: int = 0) -> tuple[np.ndarray, float]:
    """Plane of the table/plate around the food (see support_mask); ring_px None: params' default."""
    ring_px = or_default(VolumeConfig, ring_px=ring_px)
    depth, mask, K = check_inputs(depth, mask, K)
    return _fit_support(depth, mask, K, valid_depth(depth), ring_px, seed)


def _fit_support(depth, mask, K, valid, ring_px, seed):
    sup = support_mask(mask, valid, ring_px)
    ys, xs = np.nonzero(sup)
    if len(ys) < 3:
        raise ValueError(f"depth: no valid support pixels around the mask ({len(ys)} found)")
    P = rays(K, ys, xs) * depth[ys, xs].astype(np.float64)[:, None]
    return fit_plane(P, seed)


def height_above_plane(depth: np.ndarray, K: np.ndarray, normal: np.ndarray, d: float
                       ) -> np.ndarray:
    """HxW height n.X + d in metres; NaN where depth is invalid."""
    X = backproject(depth, K)
    return X @ np.asarray(normal, dtype=np.float64) + float(d)


def plane_basis(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two in-plane unit axes (deterministic: e1 follows the camera x axis)."""
    a = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = a - (a @ n) * n
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(n, e1)


LEVEL_BAND_M = 0.003   # a height within this of a level surface lies on it


def levels(h: np.ndarray, region: np.ndarray, min_px: int, max_levels: int = 8) -> list[float]:
    """Heights of the level surfaces in `region` (at least `min_px` pixels within
    LEVEL_BAND_M of each), found as histogram modes one after another."""
    v = h[region]
    out: list[float] = []
    for _ in range(max_levels):
        if len(v) < min_px:
            break
        counts, edges = np.histogram(v, bins=np.arange(v.min(), v.max() + 0.002, 0.001))
        if not len(counts):
            break
        smooth = np.convolve(counts, np.ones(5), mode="same")
        peak = float(edges[int(np.argmax(smooth))] + 0.0005)
        near = np.abs(v - peak) < LEVEL_BAND_M
        if near.sum() < min_px:
            break
        out.append(float(np.median(v[near])))
        v = v[~near]
    return out
