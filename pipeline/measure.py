"""Food mask and per-region volumes of one depth map: what `python -m pipeline.predict` reports for
a new photo, and what the evaluation's end-to-end setting scores, so both run the same code.

Torch-free (numpy, OpenCV and the geometry), so the evaluation does not import the predict CLI.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from pipeline.config import MasksConfig, VolumeConfig

MASK_HEAD = "mask_head"   # mask_source of a mask from the model's food-mask head (pipeline.models.mask_head)
FOOD_THRESHOLD = 0.5      # the head's food probability above this is food


@dataclass
class Prediction:
    depth: np.ndarray
    K: np.ndarray
    mask: np.ndarray
    labels: np.ndarray                  # 0 background, 1..N regions
    height_mm: np.ndarray               # height above the support plane (NaN where unknown)
    volumes_ml: list[float] = field(default_factory=list)
    total_ml: float = 0.0
    K_source: str = ""
    mask_source: str = ""
    plane_normal: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)   # why the result may not be trusted


def region_volumes(depth: np.ndarray, mask: np.ndarray, K: np.ndarray, volume: VolumeConfig | None = None,
                   min_area_px: int = 1) -> tuple[np.ndarray, list[float], np.ndarray, np.ndarray]:
    """(labels, volume per region, plane normal, plane offset).

    The support plane is fitted once, on the ring around the WHOLE food mask, and every region
    is integrated against it: a ring around one region would lie partly on its neighbours."""
    from pipeline.geometry import estimate_volume

    v = volume or VolumeConfig()
    method, ring_px, cell_mm = v.method, v.ring_px, v.cell_mm
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    whole = estimate_volume(depth, mask, K, method=method, ring_px=ring_px, cell_mm=cell_mm)
    normal, offset = np.asarray(whole.plane_normal), float(whole.plane_d)
    vols, keep = [], np.zeros(n, dtype=np.int32)
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < min_area_px:
            continue
        try:
            vols.append(float(estimate_volume(depth, labels == i, K, method=method, ring_px=ring_px,
                                              cell_mm=cell_mm, plane=(normal, offset)).volume_ml))
        except ValueError:  # no valid depth inside this region
            vols.append(float("nan"))
        keep[i] = len(vols)
    return keep[labels], vols, normal, offset


def food_mask(prob: np.ndarray, min_area_px: int = 0, threshold: float = FOOD_THRESHOLD) -> np.ndarray:
    """The food mask of a food-probability map (the mask head's): probability above `threshold`,
    8-connected regions smaller than `min_area_px` dropped, as the cut from the depth drops them."""
    m = np.asarray(prob) > float(threshold)
    if min_area_px > 1 and m.any():
        n, labels, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
        keep = np.zeros(n, bool)
        keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= int(min_area_px)
        m = keep[labels]
    return m


def measure(depth: np.ndarray, K: np.ndarray, mask: np.ndarray | None = None,
            volume: VolumeConfig | None = None, masks: MasksConfig | None = None,
            K_source: str = "given", food_prob: np.ndarray | None = None) -> Prediction:
    """Mask and per-region volumes of one depth map. The mask: the given one; else the model's
    food-mask head's (`food_prob`, H x W probabilities: `mask_source` `mask_head`); else cut from
    this depth by geometry (`geometry`, the fallback for a model without a head). The evaluation's
    end-to-end settings call this too, so they score what `predict` does."""
    from pipeline.geometry import height_above_plane
    from pipeline.masks.from_depth import geometry_mask

    masks = masks or MasksConfig()
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != depth.shape:
            raise ValueError(f"mask is {mask.shape[1]}x{mask.shape[0]}, image is "
                             f"{depth.shape[1]}x{depth.shape[0]}")
        mask_source = "given"
    elif food_prob is not None:
        if np.shape(food_prob) != depth.shape:
            raise ValueError(f"food probability is {np.shape(food_prob)}, depth is {depth.shape}")
        mask = food_mask(food_prob, masks.min_area_px)
        mask_source = MASK_HEAD
    else:
        mask = geometry_mask(depth, K, masks.min_height_mm, masks.min_area_px)
        mask_source = "geometry"
    pred = Prediction(depth=depth, K=K, mask=mask, labels=np.zeros(depth.shape, np.int32),
                      height_mm=np.full(depth.shape, np.nan, np.float32), K_source=K_source,
                      mask_source=mask_source)
    if mask.any():
        min_area = 1 if mask_source == "given" else masks.min_area_px   # a given mask is kept whole
        labels, vols, n, d = region_volumes(depth, mask, K, volume, min_area_px=min_area)
        pred.labels, pred.volumes_ml, pred.total_ml = labels, vols, float(np.nansum(vols))
        pred.height_mm = (1000.0 * height_above_plane(depth, K, n, d)).astype(np.float32)
        pred.plane_normal = np.asarray(n)
    return pred
