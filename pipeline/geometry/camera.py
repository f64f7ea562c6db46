"""Pinhole camera and input checks: K, depth and mask validation, pixel rays and
back-projection (pixel centres at integer coordinates, z-depth in metres)."""
from __future__ import annotations

import numpy as np


def valid_depth(depth: np.ndarray) -> np.ndarray:
    """Pixels with a usable depth: finite and positive (0 = no return on depth cameras)."""
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


def check_inputs(depth: np.ndarray, mask: np.ndarray, K: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(depth, bool mask, float64 K) of one dish, or ValueError naming the bad input."""
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


def ray_xy(K: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(r_x, r_y) of r = K^-1 [u, v, 1] / r_z for pixels (r_z = 1, so X = Z * r). Written
    element-wise: an (N,3) @ (3,3) matmul is surprisingly slow here and this runs on every
    call."""
    Ki = np.linalg.inv(K)
    u = xs.astype(np.float64)
    v = ys.astype(np.float64)
    rz = Ki[2, 0] * u + Ki[2, 1] * v + Ki[2, 2]
    rx = (Ki[0, 0] * u + Ki[0, 1] * v + Ki[0, 2]) / rz
    return rx, (Ki[1, 0] * u + Ki[1, 1] * v + Ki[1, 2]) / rz


def rays(K: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """r = K^-1 [u, v, 1] / r_z for pixels (N,3), so X = Z * r."""
    r = np.empty((len(xs), 3))
    r[:, 0], r[:, 1] = ray_xy(K, ys, xs)
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
    r = rays(K, ys.ravel(), xs.ravel()).reshape(H, W, 3)
    z = np.where(valid_depth(depth), depth, np.nan)
    return r * z[..., None]


def resize_K(K: np.ndarray, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> np.ndarray:
    """K for an image resized from src_hw to dst_hw (pixel centres at integer coordinates)."""
    sx, sy = dst_hw[1] / src_hw[1], dst_hw[0] / src_hw[0]
    S = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]], dtype=np.float64)
    return S @ np.asarray(K, dtype=np.float64)
