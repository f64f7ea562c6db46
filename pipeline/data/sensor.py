"""The depth sensor model (RealSense D435-like): z-dependent noise, holes at depth edges and in
blobs, 1e-4 m quantisation, the stereo occlusion band beside raised objects, and specular metal
without depth. Shared by the synthetic dishes and the rig release test trees."""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.io import DEPTH_SCALE_M


def sensor_noise(rng: np.random.Generator, depth: np.ndarray) -> np.ndarray:
    """RealSense-like: noise std ~ z^2 (1 mm at 0.4 m), holes at depth edges, dropout
    blobs, 1e-4 m quantisation (0 = hole)."""
    H, W = depth.shape
    z = depth.astype(np.float64)
    sigma = 0.001 * (z / 0.4) ** 2
    low = cv2.resize(rng.standard_normal((H // 16 + 1, W // 16 + 1)).astype(np.float32),
                     (W, H), interpolation=cv2.INTER_CUBIC)
    noisy = z + sigma * (0.8 * rng.standard_normal((H, W), dtype=np.float32) + 0.6 * low)
    # depth discontinuities: relative jump to a neighbour
    jump = np.zeros((H, W), bool)
    dzx = np.abs(np.diff(z, axis=1)) > 0.012 * z[:, 1:]
    dzy = np.abs(np.diff(z, axis=0)) > 0.012 * z[1:, :]
    jump[:, 1:] |= dzx
    jump[:, :-1] |= dzx
    jump[1:, :] |= dzy
    jump[:-1, :] |= dzy
    edge = cv2.dilate(jump.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    holes = edge & (rng.random((H, W), dtype=np.float32) < rng.uniform(0.3, 0.7))
    blobs = np.zeros((H, W), np.uint8)
    scale = W / 640
    for _ in range(int(rng.integers(2, 9))):
        c = (int(rng.integers(0, W)), int(rng.integers(0, H)))
        ax = (max(1, int(rng.uniform(2, 9) * scale)), max(1, int(rng.uniform(2, 9) * scale)))
        cv2.ellipse(blobs, c, ax, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    holes |= blobs > 0
    holes |= rng.random((H, W), dtype=np.float32) < 0.002
    out = np.round(noisy / DEPTH_SCALE_M) * DEPTH_SCALE_M
    out[holes | ~(z > 0) | (out <= 0) | (out > 65535 * DEPTH_SCALE_M)] = 0.0
    return out.astype(np.float32)



STEREO_BASELINE_M = 0.05  # RealSense D435 IR pair


def stereo_shadow(depth: np.ndarray, f_px: float, baseline: float = STEREO_BASELINE_M
                  ) -> np.ndarray:
    """Pixels the second IR camera cannot see (no stereo match, so no depth): left of a
    nearer object, a band as wide as the disparity jump (~11 px for the plate's 5 cm at
    0.36 m): u is hidden when some u + k has a disparity larger by >= k."""
    disp = np.where(depth > 0, baseline * f_px / np.maximum(depth, 1e-6), 0.0)
    hidden = np.zeros(depth.shape, bool)
    k_max = int(np.ceil(disp.max() - disp[depth > 0].min())) if (depth > 0).any() else 0
    for k in range(1, min(k_max, depth.shape[1] - 1) + 1):
        hidden[:, :-k] |= disp[:, k:] - disp[:, :-k] >= k
    return hidden



def metal_holes(rng: np.random.Generator, depth: np.ndarray, metal: np.ndarray,
                cosang: np.ndarray, frac: float) -> None:
    """Specular metal returns no depth where its surface turns away from the camera (steep
    walls, the rim) and in blotches elsewhere: the `frac` of metal pixels with the highest
    steepness + blotch score become holes (in place)."""
    H, W = depth.shape
    blot = cv2.resize(rng.standard_normal((H // 12 + 1, W // 12 + 1)).astype(np.float32),
                      (W, H), interpolation=cv2.INTER_CUBIC)
    score = 2.0 * (1 - cosang) + 0.5 * blot + 0.2 * rng.standard_normal((H, W), dtype=np.float32)
    thr = np.quantile(score[metal], 1 - frac)
    depth[metal & (score > thr)] = 0.0
