"""Volume error over dishes (pure numpy): the one definition that the evaluation
(pipeline.evaluate.metrics) scores models with and the labels stage scores labels with, kept
below both so that labels do not depend on the evaluation package."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

VOLUME_KEYS = ("volume_mae_ml", "volume_mape", "volume_median_ape", "volume_rmse_ml",
               "volume_bias_pct", "volume_bias_ml", "within_10pct", "within_20pct")


def as_1d(name: str, x: Iterable[float]) -> np.ndarray:
    a = np.asarray(list(x) if not isinstance(x, np.ndarray) else x, dtype=np.float64).ravel()
    return a


def volume_metrics(gt_ml: Sequence[float], pred_ml: Sequence[float]) -> dict[str, float]:
    """MAE, MAPE, median APE, RMSE, bias and within-10/20 % over dishes.

    `volume_bias_pct` is the mean signed relative error (pred - gt) / gt as a fraction
    (negative = the model underestimates). Empty input gives NaN metrics and n = 0 so a
    volume bin without dishes still has a row.
    """
    gt = as_1d("gt_ml", gt_ml)
    pred = as_1d("pred_ml", pred_ml)
    if gt.shape != pred.shape:
        raise ValueError(f"gt_ml and pred_ml differ in length: {gt.size} vs {pred.size}")
    if gt.size and (not np.all(np.isfinite(gt)) or np.any(gt <= 0)):
        raise ValueError("gt_ml: reference volumes must be finite and > 0")
    if gt.size and not np.all(np.isfinite(pred)):
        raise ValueError("pred_ml: predicted volumes must be finite (score failures explicitly)")
    out: dict[str, float] = {"n": int(gt.size)}
    if gt.size == 0:
        out.update({k: float("nan") for k in VOLUME_KEYS})
        return out
    err = pred - gt
    ape = np.abs(err) / gt
    out.update({
        "volume_mae_ml": float(np.mean(np.abs(err))),
        "volume_mape": float(np.mean(ape)),
        "volume_median_ape": float(np.median(ape)),
        "volume_rmse_ml": float(np.sqrt(np.mean(err ** 2))),
        "volume_bias_pct": float(np.mean(err / gt)),
        "volume_bias_ml": float(np.mean(err)),
        "within_10pct": float(np.mean(ape <= 0.10)),
        "within_20pct": float(np.mean(ape <= 0.20)),
    })
    return out
