"""Training augmentations that keep RGB, depth, masks and K consistent.

Geometry (scale, rotation about the image centre, crop/translation) is one similarity warp
in the output pixel frame; K follows it exactly: K' = A K Rz^T, where Rz is the camera roll
that the in-plane rotation amounts to. A roll leaves z-depth unchanged, so rotation and
translation only resample depth values. (With fx != fy a roll adds a tiny skew, which is dropped.)

Zoom needs care for a model that never sees K (Depth-Anything): zooming by s multiplies the
focal length by s while the depth stays, and such a model cannot tell zoom from distance.
`zoom` (per model, params `model_cfg.<model>.zoom`) chooses how a zoom is made consistent:
- "depth": the focal length of K stays at its unzoomed value and depth becomes depth / s.
  That is exactly the scene compressed by 1/s along the optical axis (X, Y, Z/s): every
  pixel still back-projects onto it, so its volume is the original / s; the sample's
  `volume_scale` (1/s) rescales the volume label. Right for any model.
- "intrinsics": K follows the zoom (focal * s), depth unchanged: the physical zoom lens,
  only learnable by a model that predicts or takes K (UniDepth).
- "off": no zoom (scale 1).
Photometric jitter, blur, depth noise/holes and mask erosion/dilation are train-only too.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import cv2
import numpy as np

from pipeline.config import AugmentConfig, build

ZOOM_MODES = ("depth", "intrinsics", "off")



def similarity(out_hw: tuple[int, int], in_hw: tuple[int, int], scale: float, angle_deg: float,
               shift_xy: tuple[float, float]) -> np.ndarray:
    """2x3 map from input pixels to output pixels: input centre -> output centre + shift,
    isotropic `scale` (times the plain resize factor) and rotation `angle_deg` (CCW on screen)."""
    (ho, wo), (hi, wi) = out_hw, in_hw
    base = wo / wi
    if abs(ho / hi - base) > 1e-3 * base:
        raise ValueError(f"augment: output {wo}x{ho} must keep the aspect ratio of {wi}x{hi}")
    s = base * scale
    a = math.radians(angle_deg)
    R = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])  # y axis points down
    c_in = np.array([(wi - 1) / 2, (hi - 1) / 2])
    c_out = np.array([(wo - 1) / 2 + shift_xy[0], (ho - 1) / 2 + shift_xy[1]])
    A = np.zeros((2, 3))
    A[:, :2] = s * R
    A[:, 2] = c_out - s * R @ c_in
    return A


def warp_K(K: np.ndarray, A: np.ndarray) -> np.ndarray:
    """K after the similarity warp A (2x3): A3 K Rz^T with Rz the equivalent camera roll."""
    A3 = np.vstack([A, [0, 0, 1]])
    s = math.hypot(A[0, 0], A[1, 0])
    Rz = np.eye(3)
    Rz[:2, :2] = A[:2, :2] / s
    K2 = A3 @ np.asarray(K, dtype=np.float64) @ Rz.T
    K2[0, 1] = 0.0  # exact when fx == fy; otherwise a negligible skew is dropped
    K2[1, 0] = K2[2, 0] = K2[2, 1] = 0.0
    K2[2, 2] = 1.0
    return K2


def warp_sample(rgb: np.ndarray, depth: np.ndarray, mask: np.ndarray, K: np.ndarray,
                A: np.ndarray, out_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Apply A to all maps (bilinear RGB, nearest depth/mask so no invalid depth leaks in)."""
    dsize = (out_hw[1], out_hw[0])
    rgb2 = cv2.warpAffine(rgb, A, dsize, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    depth2 = cv2.warpAffine(depth, A, dsize, flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    mask2 = cv2.warpAffine(mask.astype(np.uint8), A, dsize, flags=cv2.INTER_NEAREST,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0) > 0
    return rgb2, depth2, mask2, warp_K(K, A)


def _mask_bbox_out(mask: np.ndarray, A: np.ndarray) -> np.ndarray | None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    pts = np.stack([xs, ys, np.ones_like(xs)], 0).astype(np.float64)
    p = A @ pts
    return np.array([p[0].min(), p[1].min(), p[0].max(), p[1].max()])


def random_geometry(mask: np.ndarray, out_hw: tuple[int, int], cfg: AugmentConfig,
                    rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A random similarity that keeps the whole food mask in view (the volume label
    stays valid), and its zoom factor; falls back to the plain resize when no draw fits."""
    in_hw = mask.shape[:2]
    identity = similarity(out_hw, in_hw, 1.0, 0.0, (0.0, 0.0))
    if rng.random() >= cfg.p_geometric:
        return identity, 1.0
    ho, wo = out_hw
    for _ in range(4):
        scale = float(np.exp(rng.uniform(*np.log(cfg.scale))))
        if cfg.zoom == "off":
            scale = 1.0  # drawn anyway: the other draws stay those of the other modes
        angle = float(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg))
        A = similarity(out_hw, in_hw, scale, angle, (0.0, 0.0))
        bb = _mask_bbox_out(mask, A)
        if bb is None:
            return A, scale
        lo_x, hi_x = -bb[0], (wo - 1) - bb[2]   # shifts that keep the bbox inside
        lo_y, hi_y = -bb[1], (ho - 1) - bb[3]
        if lo_x > hi_x or lo_y > hi_y:
            continue
        mx, my = cfg.shift_frac * wo, cfg.shift_frac * ho
        sx = rng.uniform(max(lo_x, -mx), min(hi_x, mx)) if max(lo_x, -mx) <= min(hi_x, mx) else (lo_x + hi_x) / 2
        sy = rng.uniform(max(lo_y, -my), min(hi_y, my)) if max(lo_y, -my) <= min(hi_y, my) else (lo_y + hi_y) / 2
        return similarity(out_hw, in_hw, scale, angle, (sx, sy)), scale
    return identity, 1.0


def zoom_to_depth(depth: np.ndarray, K: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The "depth" zoom mode: depth / s (0 stays 0) and K with its unzoomed focal length;
    the principal point keeps following the warp."""
    K2 = np.array(K, dtype=np.float64)
    K2[0, 0] /= scale
    K2[1, 1] /= scale
    return (depth / np.float32(scale)).astype(np.float32), K2


def colour_jitter(rgb: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation, hue on float RGB in [0,1]."""
    x = rgb * rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
    mean = x.mean()
    x = (x - mean) * rng.uniform(1 - cfg.contrast, 1 + cfg.contrast) + mean
    grey = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    x = (x - grey[..., None]) * rng.uniform(1 - cfg.saturation, 1 + cfg.saturation) + grey[..., None]
    x = np.clip(x, 0, 1).astype(np.float32)
    if cfg.hue_deg > 0:
        hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-cfg.hue_deg, cfg.hue_deg)) % 360.0
        x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.clip(x, 0, 1).astype(np.float32)


def depth_noise_and_holes(depth: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Sensor-like relative noise and rectangular dropouts (0 = invalid) on the target."""
    d = depth.copy()
    valid = d > 0
    if rng.random() < cfg.p_depth_noise:
        d[valid] *= (1 + rng.normal(0, cfg.depth_noise_rel, size=int(valid.sum()))).astype(np.float32)
    if rng.random() < cfg.p_holes:
        h, w = d.shape
        for _ in range(int(rng.integers(1, cfg.max_holes + 1))):
            hh, ww = int(rng.integers(2, max(3, h // 8))), int(rng.integers(2, max(3, w // 8)))
            y, x = int(rng.integers(0, h - hh)), int(rng.integers(0, w - ww))
            d[y:y + hh, x:x + ww] = 0
    return d


def augment_sample(rgb: np.ndarray, depth: np.ndarray, mask: np.ndarray, K: np.ndarray,
                   out_hw: tuple[int, int], cfg: AugmentConfig | Mapping | None,
                   rng: np.random.Generator | None) -> dict[str, np.ndarray]:
    """One training (cfg, rng given) or evaluation (cfg None: plain resize) view.

    rgb HxWx3 float32 [0,1]; returns rgb, depth, mask (true, for volume/plane) and K, all at
    out_hw, plus `volume_scale`: the factor the volume label of this view gets (1/s under the
    "depth" zoom mode, else 1).
    """
    if cfg is None:
        A = similarity(out_hw, depth.shape, 1.0, 0.0, (0.0, 0.0))
        rgb2, depth2, mask2, K2 = warp_sample(rgb, depth, mask, K, A, out_hw)
        return {"rgb": rgb2, "depth": depth2, "mask": mask2, "K": K2, "volume_scale": 1.0}
    cfg = build(AugmentConfig, cfg, "augment")  # a mapping (tests, notebooks) or typed
    if cfg.zoom not in ZOOM_MODES:
        raise ValueError(f"augment zoom: expected one of {ZOOM_MODES}, got {cfg.zoom!r}")
    rng = rng if rng is not None else np.random.default_rng()
    A, scale = random_geometry(mask, out_hw, cfg, rng)
    rgb2, depth2, mask2, K2 = warp_sample(rgb, depth, mask, K, A, out_hw)
    volume_scale = 1.0
    if cfg.zoom == "depth" and scale != 1.0:
        depth2, K2 = zoom_to_depth(depth2, K2, scale)
        volume_scale = 1.0 / scale
    rgb2 = colour_jitter(rgb2, cfg, rng)
    if rng.random() < cfg.p_blur:
        rgb2 = cv2.GaussianBlur(rgb2, (0, 0), float(rng.uniform(*cfg.blur_sigma)))
    depth2 = depth_noise_and_holes(depth2, cfg, rng)
    return {"rgb": rgb2, "depth": depth2, "mask": mask2, "K": K2, "volume_scale": volume_scale}
