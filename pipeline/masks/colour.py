"""Colour votes that confirm what the depth decided: Lab histograms of food samples against
container samples (a plate rim or bowl wall at food height keeps the container's colour), and
how alike two regions look (a bowl's bare floor has its wall's colours)."""
from __future__ import annotations

import cv2
import numpy as np

COLOUR_BINS = 12         # per Lab channel, for the food / container colour histograms
FOOD_PRIOR = 3.0         # a colour counts as food unless it is this much more typical of the container
MIN_SAMPLES_PX = 200     # fewer samples in a region: no vote


def colour_like(rgb: np.ndarray | None, food: np.ndarray, container: np.ndarray) -> np.ndarray:
    """Pixels whose colour is at least as typical of `food` samples as of `container` samples
    (Lab histograms). All True without an image or without enough samples of either."""
    if rgb is None or food.sum() < MIN_SAMPLES_PX or container.sum() < MIN_SAMPLES_PX:
        return np.ones(food.shape, dtype=bool)
    idx = colour_bins(rgb)
    pf, pc = histogram(idx, food), histogram(idx, container)
    return FOOD_PRIOR * pf[idx] >= pc[idx]


def colour_bins(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel Lab histogram bin (COLOUR_BINS per channel)."""
    lab = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2LAB).astype(np.int32)
    q = lab * COLOUR_BINS // 256
    return (q[..., 0] * COLOUR_BINS + q[..., 1]) * COLOUR_BINS + q[..., 2]


def histogram(idx: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Normalised histogram of the bins `idx` over `region`."""
    return np.bincount(idx[region], minlength=COLOUR_BINS ** 3) / max(int(region.sum()), 1)


def colour_match(rgb: np.ndarray | None, a: np.ndarray, b: np.ndarray) -> float | None:
    """Bhattacharyya coefficient of the Lab colour histograms of regions a and b (1: the
    same colours); None without an image or with too few pixels in either."""
    if rgb is None or a.sum() < MIN_SAMPLES_PX or b.sum() < MIN_SAMPLES_PX:
        return None
    idx = colour_bins(rgb)
    return round(float(np.sum(np.sqrt(histogram(idx, a) * histogram(idx, b)))), 4)
