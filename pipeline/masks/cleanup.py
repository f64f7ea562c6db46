"""Mask morphology shared by every mask source: hole filling, largest component, hysteresis
growth down to the noise floor, dropping rims, arcs and border-touching specks, IoU."""
from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

_MIN_RIM_PX = 200


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill enclosed holes (flood the background from the border)."""
    m = mask.astype(np.uint8)
    padded = np.pad(m, 1)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 1)
    holes = flood[1:-1, 1:-1] == 0
    return mask | holes


def image_border(shape: tuple[int, ...]) -> np.ndarray:
    """The image's outermost rows and columns (where a surround, rim or frame runs out)."""
    border = np.zeros(shape[:2], dtype=bool)
    border[[0, -1], :] = border[:, [0, -1]] = True
    return border


def largest_component(mask: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros_like(mask)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def grow_seeds(strong: np.ndarray, weak: np.ndarray, edge: np.ndarray) -> np.ndarray:
    """Seeds not touching `edge` (rims, walls, frame), grown through the weak pixels whose
    regions do not touch it either (growth must not glue food to a rim)."""
    seeds = drop_touching(strong, edge)
    return seeds | hysteresis(seeds, drop_touching(weak, edge))


def hysteresis(strong: np.ndarray, weak: np.ndarray) -> np.ndarray:
    """Pixels of `weak` connected to a pixel of `strong` (grow confident seeds down to the
    noise floor, so the low margins of spreading food are kept)."""
    n, labels = cv2.connectedComponents((weak | strong).astype(np.uint8), connectivity=8)
    hit = np.unique(labels[strong])
    return np.isin(labels, hit[hit > 0])


def noise_floor(h: np.ndarray, on: np.ndarray, lo_m: float = 0.0015) -> float:
    """3 sigma (robust) of heights of pixels on a flat support, at least `lo_m`."""
    v = h[on & np.isfinite(h)]
    if len(v) < 50:
        return lo_m
    return max(lo_m, 3 * 1.4826 * float(np.median(np.abs(v - np.median(v)))))


def drop_rings(mask: np.ndarray) -> np.ndarray:
    """Remove ring-shaped regions (a plate rim seen from above encloses far more than it covers)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    out = mask.copy()
    for k in range(1, n):
        x, y, w, h, area = stats[k]
        if area < _MIN_RIM_PX:  # specks cannot be rims; skip the flood fill
            continue
        comp = labels[y:y + h, x:x + w] == k
        if fill_holes(comp).sum() > 2 * area:
            out[y:y + h, x:x + w] &= ~comp
    return out


def ring_fraction(mask: np.ndarray, support: np.ndarray, width: int = 7) -> float:
    """Fraction of the ring just outside `mask` that lies on `support`."""
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    ring = cv2.dilate(mask.astype(np.uint8), k).astype(bool) & ~mask
    return float((ring & support).sum() / max(ring.sum(), 1))


def drop_arcs(mask: np.ndarray, max_half_width_px: float = 10.0, min_elongation: float = 8.0
               ) -> np.ndarray:
    """Remove long thin regions: pieces of a plate rim left after noise broke its ring.
    Food, even a small piece, is about as wide as it is long."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return mask
    half_width = ndimage.maximum(cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3),
                                 labels, index=np.arange(1, n))
    w, h = stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT]
    length = np.maximum(w, h)
    fill = stats[1:, cv2.CC_STAT_AREA] / (w * h)  # a broken ring fills little of its box
    arc = (((half_width <= max_half_width_px) & (length > min_elongation * half_width))
           | ((fill < 0.12) & (length > 60)))
    return mask & ~np.isin(labels, 1 + np.flatnonzero(arc))


def drop_touching(mask: np.ndarray, edge: np.ndarray) -> np.ndarray:
    """Remove connected regions of `mask` that touch `edge` (rims, walls)."""
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    touching = np.unique(labels[edge & mask])
    return mask & ~np.isin(labels, touching[touching > 0])


def clean_mask(mask: np.ndarray, min_area_px: int) -> np.ndarray:
    """Close small gaps, drop rims, fill holes (depth holes inside food), drop specks."""
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    m = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, k)
    m = drop_rings(m.astype(bool)).astype(np.uint8)
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, k)
    m = drop_arcs(m.astype(bool)).astype(np.uint8)
    m = fill_holes(m.astype(bool)).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    keep = np.zeros(n, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area_px
    return keep[labels]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)
