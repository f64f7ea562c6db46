"""Volume and depth error metrics for evaluation (pure numpy, no I/O).

Fractions are 0-1 (docs/contracts.md), volumes in mL, depths in metres, heights in mm.
Per-dish depth errors are computed inside a region (food mask or support ring) and
averaged over dishes, because whole-image AbsRel says little about a 2 cm mound seen
from 0.36 m: the food and the plane it sits on are what the volume depends on.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from pipeline.volume_error import VOLUME_KEYS, as_1d, volume_metrics  # noqa: F401  (re-exported)

DEFAULT_BIN_EDGES: tuple[float, ...] = (100.0, 300.0, 600.0)
# mm edges of the true mean food height (measured depth above its fitted support, in the label's mask):
# where the height error sits, <15, 15-30, >=30 mm. A module constant until params grows an eval key for it.
FOOD_HEIGHT_BIN_EDGES_MM: tuple[float, ...] = (15.0, 30.0)


def bin_labels(edges: Sequence[float] = DEFAULT_BIN_EDGES) -> list[str]:
    """Readable, DVC-key-safe names: lt100, 100_300, 300_600, ge600."""
    e = [float(x) for x in edges]
    if not e or any(b <= a for a, b in zip(e, e[1:])) or e[0] <= 0:
        raise ValueError(f"volume bin edges must be positive and increasing, got {list(edges)}")
    fmt = lambda v: f"{v:g}".replace(".", "p")  # noqa: E731
    labels = [f"lt{fmt(e[0])}"]
    labels += [f"{fmt(a)}_{fmt(b)}" for a, b in zip(e, e[1:])]
    labels.append(f"ge{fmt(e[-1])}")
    return labels


def assign_bins(gt_ml: Sequence[float], edges: Sequence[float] = DEFAULT_BIN_EDGES) -> np.ndarray:
    """Bin label per dish by its reference volume (left-closed: 100 mL falls in 100_300)."""
    labels = np.array(bin_labels(edges), dtype=object)
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), as_1d("gt_ml", gt_ml), side="right")
    return labels[idx]


def per_bin_metrics(gt_ml: Sequence[float], pred_ml: Sequence[float],
                    edges: Sequence[float] = DEFAULT_BIN_EDGES) -> dict[str, dict[str, float]]:
    """`volume_metrics` restricted to each volume bin (keys from `bin_labels`)."""
    gt = as_1d("gt_ml", gt_ml)
    pred = as_1d("pred_ml", pred_ml)
    bins = assign_bins(gt, edges)
    return {lab: volume_metrics(gt[bins == lab], pred[bins == lab]) for lab in bin_labels(edges)}


def depth_errors(pred: np.ndarray, gt: np.ndarray, region: np.ndarray) -> dict[str, float]:
    """AbsRel, RMSE (m), delta1 (max(p/g, g/p) < 1.25) and the median ratio p/g (on the support ring:
    the global scale the model got wrong) over `region` pixels where both depths are valid (> 0,
    finite). NaN metrics when no pixel qualifies."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    region = np.asarray(region, dtype=bool)
    if not (pred.shape == gt.shape == region.shape):
        raise ValueError(f"depth_errors: shapes differ pred {pred.shape}, gt {gt.shape}, "
                         f"region {region.shape}")
    ok = region & np.isfinite(pred) & np.isfinite(gt) & (pred > 0) & (gt > 0)
    n = int(ok.sum())
    if n == 0:
        return {"abs_rel": float("nan"), "rmse_m": float("nan"), "delta1": float("nan"),
                "median_ratio": float("nan"), "n_px": 0}
    p, g = pred[ok], gt[ok]
    ratio = np.maximum(p / g, g / p)
    return {"abs_rel": float(np.mean(np.abs(p - g) / g)),
            "rmse_m": float(np.sqrt(np.mean((p - g) ** 2))),
            "delta1": float(np.mean(ratio < 1.25)),
            "median_ratio": float(np.median(p / g)),
            "n_px": n}


def height_error_mm(h_pred: np.ndarray, h_gt: np.ndarray, region: np.ndarray) -> dict[str, float]:
    """Mean absolute and signed food-height error (mm) over `region` where both heights
    are finite. Heights are each measured above their own fitted support plane, which is
    what the volume integrates."""
    h_pred = np.asarray(h_pred, dtype=np.float64)
    h_gt = np.asarray(h_gt, dtype=np.float64)
    region = np.asarray(region, dtype=bool)
    if not (h_pred.shape == h_gt.shape == region.shape):
        raise ValueError(f"height_error_mm: shapes differ h_pred {h_pred.shape}, "
                         f"h_gt {h_gt.shape}, region {region.shape}")
    ok = region & np.isfinite(h_pred) & np.isfinite(h_gt)
    if not ok.any():
        return {"mae_mm": float("nan"), "bias_mm": float("nan")}
    d = (h_pred[ok] - h_gt[ok]) * 1000.0
    return {"mae_mm": float(np.mean(np.abs(d))), "bias_mm": float(np.mean(d))}


def assign_height_bins(height_mm: Sequence[float], edges: Sequence[float] = FOOD_HEIGHT_BIN_EDGES_MM
                       ) -> np.ndarray:
    """Bin label per dish by its true mean food height (mm), named like the volume bins (lt15, 15_30,
    ge30); '' where the height is unknown (NaN)."""
    h = as_1d("height_mm", height_mm)
    labels = np.array(bin_labels(edges), dtype=object)
    out = labels[np.searchsorted(np.asarray(edges, dtype=np.float64), np.nan_to_num(h), side="right")]
    out[~np.isfinite(h)] = ""
    return out


def nanmedian(values: Iterable[float]) -> float:
    """Median ignoring NaN; NaN (not a warning) when nothing is left."""
    a = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    return float(np.median(a)) if a.size else float("nan")


def nanmean(values: Iterable[float]) -> float:
    """Mean ignoring NaN; NaN (not a warning) when nothing is left."""
    a = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    return float(a.mean()) if a.size else float("nan")


def focal_rel_err(K_pred: np.ndarray, K_true: np.ndarray) -> float:
    """Mean of |fx' - fx| / fx and |fy' - fy| / fy: the focal error of a model that predicts its
    camera (a volume scales as 1 / (fx * fy), so this is the error a predicted K would add)."""
    fp, ft = np.diag(np.asarray(K_pred, float))[:2], np.diag(np.asarray(K_true, float))[:2]
    return float(np.mean(np.abs(fp - ft) / ft))
