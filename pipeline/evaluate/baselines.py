"""Non-learned volume baselines, fitted on the train split only.

They answer "did depth help?": a model worth its compute must beat both.

- `baseline_mean`: every dish gets the training-set mean volume.
- `baseline_area_height`: food area from the given (depth-free) mask alone
  times the mean training food height. Measured depth is hidden at test time, so the mask's
  pixel count is turned into m²
  with the true K and one training-set constant distance:
      area_m2 = n_mask_px * Z_ref² / (fx * fy),   volume = area_m2 * h_mean
  Z_ref = mean over training dishes of the median GT depth inside the food mask (the
  distance at which the food's pixels are seen); h_mean = mean over training dishes of
  volume / area_m2, the latter with that dish's own median food depth (the mean height of
  an equivalent flat-topped column). The fit uses measured depth of training dishes only.
  Training volumes are the labels `volume_ml` (what the models train on). Fit and test use
  the same given masks as the models' given setting (`pipeline.evaluate.given_masks`: ground
  truth on synthetic, RGB-only on Nutrition5k), never masks cut from the measured depth; without
  them this baseline is not evaluated.

Its food height is a flat `h_mean` over the mask, so its height error (mm, scoring side: the measured
depth of the test dish read only to score it, as for the models) says how far one height is from each
dish's; `baseline_mean` predicts no height.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.evaluate.scoring import (
    MeasureConfig,
    dish_record,
    given_mask_source,
    given_masks,
    load_reference,
    score_depth,
)
from pipeline.io import K_from_row, read_dish_depth, read_mask, resolve


def _train_volumes(train: pd.DataFrame) -> np.ndarray:
    if "volume_ml" not in train.columns:
        raise ValueError("index: missing label column `volume_ml` (run the labels stage)")
    v = train["volume_ml"].to_numpy(float)
    ok = np.isfinite(v) & (v > 0)
    if not ok.any():
        raise ValueError("index: no training dish with a positive `volume_ml` label")
    return v


def mask_pixels(df: pd.DataFrame, allowed_roots: Sequence[Path] = (), desc: str = "mask area") -> np.ndarray:
    """Food pixel count of every row's given mask."""
    out = np.empty(len(df), dtype=np.float64)
    for i, p in enumerate(tqdm(given_masks(df)[0].tolist(), desc=desc, unit="dish", leave=False)):
        out[i] = float(read_mask(resolve(p, list(allowed_roots))).sum())
    return out


@dataclass
class MeanVolumeBaseline:
    mean_ml: float

    @classmethod
    def fit(cls, train: pd.DataFrame) -> MeanVolumeBaseline:
        v = _train_volumes(train)
        return cls(mean_ml=float(np.mean(v[np.isfinite(v) & (v > 0)])))

    def predict(self, df: pd.DataFrame, allowed_roots: Sequence[Path] = ()) -> np.ndarray:
        return np.full(len(df), self.mean_ml, dtype=np.float64)

    def describe(self) -> dict:
        return {"fit_mean_ml": round(self.mean_ml, 3), "mask_source": "none"}

    def height_m(self) -> float | None:
        """No food height: a volume without a shape."""
        return None


@dataclass
class AreaHeightBaseline:
    z_ref_m: float
    mean_height_m: float
    mask_source: str = "gt_mask"

    @staticmethod
    def area_m2(n_px: np.ndarray, fx: np.ndarray, fy: np.ndarray, z_m: np.ndarray | float) -> np.ndarray:
        """Metric area of n_px pixels seen fronto-parallel at distance z (pinhole)."""
        return np.asarray(n_px, float) * np.asarray(z_m, float) ** 2 / (np.asarray(fx, float) * np.asarray(fy, float))

    @classmethod
    def fit(cls, train: pd.DataFrame, allowed_roots: Sequence[Path] = ()) -> AreaHeightBaseline:
        vols = _train_volumes(train)
        z_med, n_px = [], []
        paths = given_masks(train)[0]
        for (_, row), path in tqdm(zip(train.iterrows(), paths), total=len(train), desc="fit area x height",
                                   unit="dish"):
            mask = read_mask(resolve(path, list(allowed_roots)))
            depth = read_dish_depth(row, list(allowed_roots), shape=mask.shape)
            d = depth[mask & (depth > 0)]
            z_med.append(float(np.median(d)) if d.size else np.nan)
            n_px.append(float(mask.sum()))
        z = np.asarray(z_med)
        area = cls.area_m2(np.asarray(n_px), train["fx"].to_numpy(float), train["fy"].to_numpy(float), z)
        ok = np.isfinite(z) & (area > 0) & np.isfinite(vols) & (vols > 0)
        if not ok.any():
            raise ValueError("index: no training dish with a non-empty mask, valid depth and a label")
        heights = vols[ok] * 1e-6 / area[ok]
        return cls(z_ref_m=float(np.mean(z[ok])), mean_height_m=float(np.mean(heights)),
                   mask_source=given_mask_source(train) or "none")

    def predict(self, df: pd.DataFrame, allowed_roots: Sequence[Path] = ()) -> np.ndarray:
        n_px = mask_pixels(df, allowed_roots)
        area = self.area_m2(n_px, df["fx"].to_numpy(float), df["fy"].to_numpy(float), self.z_ref_m)
        return area * self.mean_height_m * 1e6

    def describe(self) -> dict:
        return {"fit_z_ref_m": round(self.z_ref_m, 5), "fit_mean_height_mm": round(self.mean_height_m * 1e3, 3),
                "mask_source": self.mask_source}

    def height_m(self) -> float | None:
        """The food height it predicts everywhere in the mask: the train mean."""
        return self.mean_height_m


def fit_baselines(train: pd.DataFrame, allowed_roots: Sequence[Path] = (),
                  with_masks: bool = True) -> dict[str, object]:
    """The baselines fitted on `train` (rows of the train split only); area x height only
    `with_masks` (the dishes have depth-free masks)."""
    if "split" in train.columns and (train["split"] != "train").any():
        raise ValueError("fit_baselines: rows outside the train split were passed (test leakage)")
    out: dict[str, object] = {"baseline_mean": MeanVolumeBaseline.fit(train)}
    if with_masks:
        out["baseline_area_height"] = AreaHeightBaseline.fit(train, allowed_roots)
    return out


def baseline_table(baseline: object, dishes: pd.DataFrame, allowed_roots: Sequence[Path] = (),
                   cfg: MeasureConfig | None = None) -> pd.DataFrame:
    """Per-dish predictions (dish_id, volume_ml_gt, volume_ml_pred, the dish's scene and camera) for
    `dishes` from `select_split`. With `cfg`, a baseline that predicts a food height (`height_m`) is also
    scored on it like the models (`score_depth`: height error, true food height; it has no depth)."""
    pred = baseline.predict(dishes, allowed_roots)  # type: ignore[attr-defined]
    rows = [{**dish_record(row), "volume_ml_pred": float(v), "failed": False, "error": ""}
            for (_, row), v in zip(dishes.iterrows(), pred)]
    h = baseline.height_m() if cfg is not None else None  # type: ignore[attr-defined]
    if h is not None:
        for rec, (_, row) in zip(rows, dishes.iterrows()):   # scoring side: measured depth read only here
            gt, mask = load_reference(row, (int(row["height"]), int(row["width"])), allowed_roots)
            no_depth = np.full(gt.shape, np.nan, np.float32)
            rec.update(score_depth(no_depth, gt, mask, K_from_row(row), np.full(gt.shape, h), cfg))
    return pd.DataFrame(rows)


__all__ = ["MeanVolumeBaseline", "AreaHeightBaseline", "fit_baselines",
           "baseline_table", "mask_pixels"]
