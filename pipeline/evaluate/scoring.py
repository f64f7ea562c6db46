"""Held-out evaluation of a depth model as a food-volume estimator.

The prediction side never reads the measured depth: the model sees only the RGB image and
the true K of each test dish, and the food mask comes from one of two sources, each named in
the metrics (`mask_source`):

- `given`: masks that exist without the depth sensor, from the masks stage's `given_mask_path`
  and named by its `given_mask_source`: the synthetic ground-truth masks (`gt_mask`), and on
  Nutrition5k masks read from the RGB image alone (`rgb_rule`, or `sam2_rgb` with a local SAM 2
  checkpoint; pipeline.masks.rgb). An index without that column falls back to `gt_mask_path`.
  Volume = `geometry.estimate_volume` on the predicted depth over that mask, as the labels do.
- `end_to_end`: the mask is cut from the model's OWN predicted depth by `pipeline.measure.measure`,
  the code `python -m pipeline.predict` runs on a new photo, and its total volume is scored.
- `end_to_end_mask_head` (a fine-tuned model with a food-mask head): the mask is the head's
  (`mask_source: mask_head`), through the same `measure`, as `predict` does with such a model.
  Both end-to-end rows also score their mask against the given mask (`mask_iou`), read only to score.

The measured depth is read afterwards, only to score: depth errors inside the scoring mask
(`mask_path`, the mask of the label) and on its support ring (with the median ratio predicted /
measured there: the global scale), the food-height error and the true mean food height.
The same true K is given to every model.

A DIAGNOSTIC (given masks, `diagnostic=True`): the predicted depth divided by that ring ratio, then the
same geometry (`<name>_diag_ring_rescaled`). It reads the measured depth, so it is never a model row:
it separates "does not know the distance" (the rescaled row is much better) from "does not see the
food" (still bad). Each dish's scene family (`scene`, synthetic) is carried into the tables, and the
summaries give the metrics per family group (`rig`: every family but `table`) and per food-height bin.

Reference volume: `volume_ml_true` (analytic, synthetic dishes) where present, else the
label `volume_ml` (measured depth through the same geometry).

A dish whose predicted depth makes the geometry fail (ValueError, non-finite volume, no food
found end to end) is kept in the table with `failed=True`, scored as 0 mL (APE 100 %) so a
model cannot improve its score by failing, and counted in `n_failed`.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline import geometry
from pipeline.config import EvalConfig, MasksConfig, Params, VolumeConfig, as_params, or_default
from pipeline.evaluate.metrics import (
    DEFAULT_BIN_EDGES,
    FOOD_HEIGHT_BIN_EDGES_MM,
    assign_bins,
    assign_height_bins,
    bin_labels,
    depth_errors,
    focal_rel_err,
    height_error_mm,
    nanmean,
    nanmedian,
    per_bin_metrics,
    volume_metrics,
)
from pipeline.evaluate.names import (
    DIAG_KIND,
    DIAG_SUFFIX,
    END_TO_END,
    END_TO_END_HEAD,
    FAMILY_GROUPS,
    GIVEN,
    MODEL_SETTINGS,
    family_labels,
)
from pipeline.io import K_from_row, read_dish_depth, read_mask, read_rgb, resolve, write_csv, write_json
from pipeline.masks.cleanup import iou
from pipeline.suspect import drop_suspect

# (rgb HxWx3 uint8, K 3x3) -> metric z-depth HxW (m) at the same resolution, or (depth, the model's
# own K) from a model that predicts its camera (its focal error is reported; volumes use the true K),
# or a dict {"depth", "K" (None: the true K), "food_prob" (HxW, the food-mask head's)}
DepthPredictor = Callable[[np.ndarray, np.ndarray], "np.ndarray | tuple[np.ndarray, np.ndarray] | dict"]

CSV_COLUMNS = ["dish_id", "volume_ml_gt", "volume_ml_pred", "abs_err_ml", "ape",
               "err_ml", "rel_err", "volume_bin", "failed", "error", "mask_px",
               "depth_abs_rel", "depth_rmse_m", "depth_delta1",
               "depth_ring_abs_rel", "depth_ring_rmse_m", "depth_ring_delta1", "ring_scale_ratio",
               "height_mae_mm", "height_bias_mm", "food_height_mm", "focal_rel_err",
               "scene", "support", "fx_px", "camera_distance_m", "mask_iou"]
# each dish's inference seconds: kept in the in-memory table, never in the tracked CSV (a log, logs/eval)
TIMING_COLUMN = "infer_s"
DEPTH_COLUMNS = ["depth_abs_rel", "depth_rmse_m", "depth_delta1", "depth_ring_abs_rel",
                 "depth_ring_rmse_m", "depth_ring_delta1", "ring_scale_ratio", "height_mae_mm",
                 "height_bias_mm", "food_height_mm"]
# What a dish is, copied from the index into every per-dish table: its scene family (synthetic; '' on
# Nutrition5k), what its label's food stands on (the masks stage's support: plane, plate_floor,
# bowl_surface, platform) and its camera (the table family draws it per dish: what a model without K
# cannot know).
DISH_COLUMNS = {"scene": "scene", "support": "support", "fx_px": "fx",
                "camera_distance_m": "distance_m"}   # table <- index
TEXT_COLUMNS = ("scene", "support")
GIVEN_MASK_COLUMN = "given_mask_path"      # masks stage: the depth-free mask of the given setting
GIVEN_SOURCE_COLUMN = "given_mask_source"  # ... and where it came from (gt_mask, rgb_rule, sam2_rgb)
GT_MASK_COLUMN = "gt_mask_path"            # synthetic ground truth (ingest): the fallback
NO_GIVEN_MASKS = "no depth-free masks for these dishes (run the masks stage: given_mask_path)"
BIN_KEYS = ("n", "volume_mae_ml", "volume_mape", "volume_median_ape", "volume_bias_pct", "within_20pct")
GROUP_VOLUME_KEYS = ("volume_mape", "volume_median_ape", "volume_bias_pct", "within_20pct")
DIAG_SCALE_SOURCE = "measured depth on the support ring (median ratio per dish)"


@dataclass
class MeasureConfig:
    """How a depth map becomes a volume: params `volume:` (the labels' settings) and, for the
    end-to-end mask cut from the predicted depth as `predict` cuts it, params `masks:`."""
    volume: VolumeConfig = field(default_factory=VolumeConfig)
    masks: MasksConfig = field(default_factory=MasksConfig)

    @classmethod
    def from_params(cls, params: Params | Mapping) -> MeasureConfig:
        p = as_params(params)
        return cls(p.volume, p.masks)


def reference_volume(df: pd.DataFrame) -> pd.Series:
    """`volume_ml_true` where present (synthetic truth), else the label `volume_ml`."""
    if "volume_ml" not in df.columns and "volume_ml_true" not in df.columns:
        raise ValueError("index: needs a `volume_ml` or `volume_ml_true` column (run the labels stage)")
    label = df["volume_ml"] if "volume_ml" in df.columns else pd.Series(np.nan, index=df.index)
    if "volume_ml_true" in df.columns:
        ref = df["volume_ml_true"].where(df["volume_ml_true"].notna(), label)
    else:
        ref = label
    return ref.astype(float)


def select_split(df: pd.DataFrame, split: str | None = None,
                 exclude_suspect: bool | None = None) -> pd.DataFrame:
    """Rows of one split (params `eval.split`) with a usable reference volume (suspect dishes
    left out while `exclude_suspect`, params `suspect.exclude`); None: their defaults.
    ValueError when none."""
    split = or_default(EvalConfig, split=split)
    if "split" not in df.columns:
        raise ValueError("index: missing column `split`")
    df = drop_suspect(df, exclude_suspect)
    sub = df[df["split"] == split].copy()
    sub["volume_ml_gt"] = reference_volume(sub)
    bad = sub["volume_ml_gt"].isna() | ~(sub["volume_ml_gt"] > 0)
    if bad.any():
        raise ValueError(f"index: {int(bad.sum())} {split} dishes have no positive reference volume "
                         f"(e.g. {sub.loc[bad, 'dish_id'].head(3).tolist()})")
    if sub.empty:
        raise ValueError(f"index: no dishes in split {split!r}")
    return sub.reset_index(drop=True)


def given_masks(dishes: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(path, source) of every row's depth-free mask for the `given` setting ('' where none):
    the masks stage's `given_mask_path`/`given_mask_source`, else the ground truth `gt_mask_path`."""
    empty = pd.Series("", index=dishes.index, dtype=object)
    if GIVEN_MASK_COLUMN in dishes.columns:
        paths = dishes[GIVEN_MASK_COLUMN].fillna("").astype(str)
        sources = (dishes[GIVEN_SOURCE_COLUMN].fillna("").astype(str)
                   if GIVEN_SOURCE_COLUMN in dishes.columns else empty)
        return paths, sources.where(paths.str.len() > 0, "")
    if GT_MASK_COLUMN in dishes.columns:
        paths = dishes[GT_MASK_COLUMN].fillna("").astype(str)
        return paths, pd.Series(np.where(paths.str.len() > 0, "gt_mask", ""), index=dishes.index)
    return empty, empty


def given_mask_source(dishes: pd.DataFrame) -> str | None:
    """Name of the depth-free masks every dish has for the `given` setting ('+'-joined when
    they differ between dishes), or None when a dish has none. The masks stage's geometry and
    SAM 2 masks (`mask_path`) are cut or prompted from the measured depth: never used here."""
    paths, sources = given_masks(dishes)
    if not len(dishes) or (paths.str.len() == 0).any():
        return None
    return "+".join(sorted(set(sources.replace("", "unnamed")))) or None


def load_inputs(row: pd.Series, allowed_roots: Sequence[Path] = ()) -> tuple[np.ndarray, np.ndarray]:
    """What a model may see of a dish: the RGB image and the true K."""
    return read_rgb(resolve(row["rgb_path"], list(allowed_roots))), K_from_row(row)


def load_given_mask(row: pd.Series, shape: tuple[int, int], allowed_roots: Sequence[Path] = ()) -> np.ndarray:
    """The dish's depth-free mask (`given_masks`); ValueError naming the dish if it has none."""
    path = given_masks(row.to_frame().T)[0].iloc[0]
    if not path:
        raise ValueError(f"{row['dish_id']}: no depth-free mask ({GIVEN_MASK_COLUMN}) for the given-mask setting")
    return read_mask(resolve(path, list(allowed_roots)), shape=shape)


def load_reference(row: pd.Series, shape: tuple[int, int],
                   allowed_roots: Sequence[Path] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Scoring side only: measured depth (m) and the label's mask (`mask_path`)."""
    depth = read_dish_depth(row, list(allowed_roots), shape=shape)
    mask = read_mask(resolve(row["mask_path"], list(allowed_roots)), shape=shape)
    return depth, mask


def load_dish(row: pd.Series, allowed_roots: Sequence[Path] = ()
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(rgb, measured depth m, label mask, K) of one index row, shapes checked against each other."""
    rgb, K = load_inputs(row, allowed_roots)
    depth, mask = load_reference(row, rgb.shape[:2], allowed_roots)
    return rgb, depth, mask, K


@dataclass
class DishPrediction:
    """Everything the prediction side produced for one dish."""
    depth: np.ndarray
    mask: np.ndarray
    volume_ml: float
    height_m: np.ndarray | None   # food height above the predicted support plane (None: failed)
    failed: bool = False
    error: str = ""
    infer_s: float = 0.0          # the depth model's time alone
    focal_rel_err: float = float("nan")   # mean |f_pred - f| / f of fx, fy (models predicting K)


def unpack_prediction(out) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(depth, the model's own K or None, food probability or None) of a `DepthPredictor`'s output."""
    if isinstance(out, dict):
        return out["depth"], out.get("K"), out.get("food_prob")
    depth, K_pred = out if isinstance(out, tuple) else (out, None)
    return depth, K_pred, None


def predict_dish(predict: DepthPredictor, rgb: np.ndarray, K: np.ndarray, setting: str,
                 given_mask: np.ndarray | None, cfg: MeasureConfig) -> DishPrediction:
    """Volume from the RGB image, K and (given setting) a depth-free mask. Takes no measured
    depth by construction, which is what the noise-depth test checks end to end."""
    t0 = time.perf_counter()
    out = predict(rgb, K.copy())
    infer_s = time.perf_counter() - t0
    depth, K_pred, food_prob = unpack_prediction(out)
    depth = np.asarray(depth, dtype=np.float32)
    focal = focal_rel_err(K_pred, K) if K_pred is not None else float("nan")
    if depth.shape != rgb.shape[:2]:
        raise ValueError(f"predicted depth is {depth.shape}, image is {rgb.shape[:2]}")
    if setting == END_TO_END_HEAD and food_prob is None:   # a setup error, not a failed dish
        raise ValueError("the mask-head setting needs a model with a food-mask head (food_prob)")
    mask = given_mask if given_mask is not None else np.zeros(depth.shape, bool)
    try:
        if setting == GIVEN:
            if given_mask is None:
                raise ValueError("the given-mask setting needs a mask")
            res = geometry.estimate_volume(depth, given_mask, K, method=cfg.volume.method,
                                           ring_px=cfg.volume.ring_px, cell_mm=cfg.volume.cell_mm)
            vol = float(res.volume_ml)
            height = geometry.height_above_plane(depth, K, np.asarray(res.plane_normal), float(res.plane_d))
        elif setting in (END_TO_END, END_TO_END_HEAD):
            from pipeline.measure import measure
            m = measure(depth, K, None, cfg.volume, cfg.masks,
                        food_prob=np.asarray(food_prob, np.float32) if setting == END_TO_END_HEAD else None)
            mask = m.mask
            if not m.volumes_ml:
                raise ValueError("no food region found " + ("by the mask head" if setting == END_TO_END_HEAD
                                                           else "in the predicted depth"))
            vol, height = float(m.total_ml), m.height_mm.astype(np.float64) / 1000.0
        else:
            raise ValueError(f"setting: expected one of {list(MODEL_SETTINGS)}, got {setting!r}")
        if not np.isfinite(vol):
            raise ValueError(f"non-finite volume {vol}")
    except ValueError as e:
        return DishPrediction(depth, mask, 0.0, None, failed=True, error=str(e)[:200], infer_s=infer_s,
                              focal_rel_err=focal)
    return DishPrediction(depth, mask, vol, height, infer_s=infer_s, focal_rel_err=focal)


def ring_rescaled(depth: np.ndarray, ring_scale_ratio: float, rgb: np.ndarray, K: np.ndarray,
                  given_mask: np.ndarray, cfg: MeasureConfig) -> DishPrediction:
    """DIAGNOSTIC, reads the measured depth (through the ratio): the predicted depth divided by its
    median ratio to the measured depth on the support ring, through the same geometry as the model row
    (`predict_dish`, given masks). A dish without a ratio (no valid ring pixel) fails like a model dish."""
    if not (np.isfinite(ring_scale_ratio) and ring_scale_ratio > 0):
        return DishPrediction(depth, given_mask, 0.0, None, failed=True,
                              error="diagnostic: no valid predicted and measured depth on the support ring")
    return predict_dish(lambda _rgb, _K: depth / np.float32(ring_scale_ratio), rgb, K, GIVEN, given_mask, cfg)


def _nan_depth_record() -> dict:
    return {c: float("nan") for c in DEPTH_COLUMNS}


def score_depth(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, K: np.ndarray,
                pred_height_m: np.ndarray | None, cfg: MeasureConfig) -> dict:
    """Depth errors in the scoring mask and on its support ring (the ring's median ratio predicted /
    measured is `ring_scale_ratio`: the global scale), the food-height error, each height measured above
    its own support plane (GT plane fitted on measured depth), and the true mean food height."""
    rec = _nan_depth_record()
    m = depth_errors(pred, gt, mask)
    rec.update(depth_abs_rel=m["abs_rel"], depth_rmse_m=m["rmse_m"], depth_delta1=m["delta1"])
    valid_gt = np.isfinite(gt) & (gt > 0)
    ring = geometry.support_mask(mask, valid_gt, cfg.volume.ring_px)
    r = depth_errors(pred, gt, ring)
    rec.update(depth_ring_abs_rel=r["abs_rel"], depth_ring_rmse_m=r["rmse_m"], depth_ring_delta1=r["delta1"],
               ring_scale_ratio=r["median_ratio"])
    try:
        n_gt, d_gt = geometry.fit_support_plane(gt, mask, K, ring_px=cfg.volume.ring_px)
    except ValueError:
        return rec  # GT plane unknown: heights undefined for this dish (NaN, not 0)
    h_gt = geometry.height_above_plane(gt, K, n_gt, d_gt)
    rec["food_height_mm"] = nanmean(h_gt[mask & np.isfinite(h_gt)] * 1000.0)
    if pred_height_m is not None:
        h = height_error_mm(pred_height_m, h_gt, mask)
        rec.update(height_mae_mm=h["mae_mm"], height_bias_mm=h["bias_mm"])
    return rec


def dish_record(row: pd.Series) -> dict:
    """The index's description of a dish every per-dish table keeps (DISH_COLUMNS; '' / NaN where the
    index lacks the column: Nutrition5k has no scene)."""
    rec: dict = {"dish_id": row["dish_id"], "volume_ml_gt": float(row["volume_ml_gt"])}
    for col, src in DISH_COLUMNS.items():
        v = row.get(src)
        if col in TEXT_COLUMNS:
            rec[col] = "" if v is None or (isinstance(v, float) and v != v) else str(v)
        else:
            rec[col] = float(v) if v is not None and v == v else float("nan")
    return rec


def evaluate_predictor(predict: DepthPredictor | None, dishes: pd.DataFrame, cfg: MeasureConfig,
                       desc: str = "evaluate", allowed_roots: Sequence[Path] = (),
                       bin_edges: Sequence[float] = DEFAULT_BIN_EDGES, setting: str = GIVEN) -> pd.DataFrame:
    """Per-dish table (CSV_COLUMNS) for a depth predictor over `dishes` (from `select_split`) in one
    setting (GIVEN, END_TO_END or END_TO_END_HEAD). `predict=None` is the oracle: the measured depth itself as the
    prediction, i.e. the ceiling that the masks and the geometry leave for any depth model."""
    return evaluate_tables(predict, dishes, cfg, desc, allowed_roots, bin_edges, setting)[0]


def evaluate_tables(predict: DepthPredictor | None, dishes: pd.DataFrame, cfg: MeasureConfig,
                    desc: str = "evaluate", allowed_roots: Sequence[Path] = (),
                    bin_edges: Sequence[float] = DEFAULT_BIN_EDGES, setting: str = GIVEN,
                    diagnostic: bool = False) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(`evaluate_predictor`'s table, and with `diagnostic` (given masks only) the ring-rescaled
    diagnostic's table from the same predictions, or None): one inference pass serves both."""
    if diagnostic and setting != GIVEN:
        raise ValueError("the ring-rescaled diagnostic uses the given masks (setting 'given')")
    rows, diag_rows = [], []
    for _, row in tqdm(dishes.iterrows(), total=len(dishes), desc=desc, unit="dish"):
        rgb, K = load_inputs(row, allowed_roots)
        shape = rgb.shape[:2]
        given = load_given_mask(row, shape, allowed_roots) if setting == GIVEN else None
        ref = None
        if predict is None:  # oracle: the prediction IS the measured depth
            ref = load_reference(row, shape, allowed_roots)
            predictor: DepthPredictor = lambda _rgb, _K, d=ref[0]: d.copy()  # noqa: E731
        else:
            predictor = predict
        try:
            p = predict_dish(predictor, rgb, K, setting, given, cfg)
        except ValueError as e:
            raise ValueError(f"{row['dish_id']}: {e}") from None
        # --- scoring side: the measured depth is read only from here on
        gt, score_mask = ref if ref is not None else load_reference(row, shape, allowed_roots)
        rec = {**dish_record(row), "volume_ml_pred": p.volume_ml, "failed": p.failed, "error": p.error,
               "mask_px": int(p.mask.sum()), "infer_s": p.infer_s, "focal_rel_err": p.focal_rel_err}
        rec.update(score_depth(p.depth, gt, score_mask, K, p.height_m, cfg))
        if setting != GIVEN and given_masks(row.to_frame().T)[0].iloc[0]:   # end to end: its mask vs the given
            rec["mask_iou"] = iou(p.mask, load_given_mask(row, shape, allowed_roots))
        rows.append(rec)
        if diagnostic:   # reads the measured depth through the ring ratio: a diagnostic, never a model row
            q = ring_rescaled(p.depth, rec["ring_scale_ratio"], rgb, K, given, cfg)
            diag_rows.append({**dish_record(row), "volume_ml_pred": q.volume_ml, "failed": q.failed,
                              "error": q.error, "mask_px": int(q.mask.sum()),
                              **score_depth(q.depth, gt, score_mask, K, q.height_m, cfg)})
    diag = finish_table(pd.DataFrame(diag_rows), bin_edges) if diagnostic else None
    return finish_table(pd.DataFrame(rows), bin_edges), diag


def finish_table(df: pd.DataFrame, bin_edges: Sequence[float] = DEFAULT_BIN_EDGES) -> pd.DataFrame:
    """Add the error columns and put the columns in CSV order (missing ones as NaN/empty)."""
    df = df.copy()
    df["err_ml"] = df["volume_ml_pred"] - df["volume_ml_gt"]
    df["abs_err_ml"] = df["err_ml"].abs()
    df["rel_err"] = df["err_ml"] / df["volume_ml_gt"]
    df["ape"] = df["rel_err"].abs()
    df["volume_bin"] = assign_bins(df["volume_ml_gt"].to_numpy(), bin_edges) if len(df) else []
    if "failed" not in df.columns:
        df["failed"] = False
    if "error" not in df.columns:
        df["error"] = ""
    for c in TEXT_COLUMNS:
        if c not in df.columns:
            df[c] = ""
    for c in CSV_COLUMNS:
        if c not in df.columns:
            df[c] = np.nan
    return df[CSV_COLUMNS + [c for c in (TIMING_COLUMN,) if c in df.columns]]


def _clean(x: float) -> float | None:
    """JSON-safe: NaN -> null (no depth for baselines), rounded for readable `dvc metrics diff`."""
    if x is None or not np.isfinite(x):
        return None
    return round(float(x), 6)


def summarise(table: pd.DataFrame, bin_edges: Sequence[float] = DEFAULT_BIN_EDGES,
              extra: dict | None = None) -> dict:
    """The metrics JSON: the keys of docs/contracts.md at top level, per-bin metrics one level
    down (`bins.<bin>.<key>`) so `dvc metrics diff` prints one readable row per model and key."""
    gt = table["volume_ml_gt"].to_numpy(float)
    pred = table["volume_ml_pred"].to_numpy(float)
    vm = volume_metrics(gt, pred)
    out: dict = {"n_dishes": int(len(table)), "n_failed": int(table["failed"].astype(bool).sum())}
    for k in ("volume_mae_ml", "volume_mape", "volume_median_ape", "volume_rmse_ml", "volume_bias_pct",
              "volume_bias_ml", "within_10pct", "within_20pct"):
        out[k] = _clean(vm[k])
    for c in DEPTH_COLUMNS:
        out[c] = _clean(nanmean(table[c].to_numpy(float)))
    if "focal_rel_err" in table and table["focal_rel_err"].notna().any():  # the model predicted K
        out["focal_rel_err"] = _clean(nanmean(table["focal_rel_err"].to_numpy(float)))
    out["ring_scale_ratio_median"] = _clean(nanmedian(table["ring_scale_ratio"].to_numpy(float)))
    if "mask_iou" in table and table["mask_iou"].notna().any():   # end to end: the mask vs the given masks
        out["mask_iou_mean"] = _clean(nanmean(table["mask_iou"].to_numpy(float)))
        out["mask_iou_median"] = _clean(nanmedian(table["mask_iou"].to_numpy(float)))
    out["bins"] = {lab: {k: (int(v[k]) if k == "n" else _clean(v[k])) for k in BIN_KEYS}
                   for lab, v in per_bin_metrics(gt, pred, bin_edges).items()}
    out.update(group_summaries(table))
    if extra:
        out.update(extra)
    return out


def group_metrics(table: pd.DataFrame) -> dict:
    """Metrics of one group of dishes (a family, a food-height bin): n, volume errors, the ring's
    AbsRel and median scale ratio, the height error (mm) and the mean true food height."""
    vm = volume_metrics(table["volume_ml_gt"].to_numpy(float), table["volume_ml_pred"].to_numpy(float))
    out: dict = {"n": int(len(table)), "n_failed": int(table["failed"].astype(bool).sum())}
    out.update({k: _clean(vm[k]) for k in GROUP_VOLUME_KEYS})
    out["depth_ring_abs_rel"] = _clean(nanmean(table["depth_ring_abs_rel"].to_numpy(float)))
    out["ring_scale_ratio_median"] = _clean(nanmedian(table["ring_scale_ratio"].to_numpy(float)))
    for k in ("height_mae_mm", "height_bias_mm", "food_height_mm"):
        out[k] = _clean(nanmean(table[k].to_numpy(float)))
    for k in ("fx_px", "camera_distance_m"):   # the cameras the group's dishes were seen with
        v = table[k].to_numpy(float)
        out[f"{k}_min"], out[f"{k}_max"] = ((_clean(np.nanmin(v)), _clean(np.nanmax(v))) if np.isfinite(v).any()
                                            else (None, None))
    return out


def group_summaries(table: pd.DataFrame,
                    height_edges: Sequence[float] = FOOD_HEIGHT_BIN_EDGES_MM) -> dict:
    """`by_family.<rig|table>` (only when the dishes have a scene: on Nutrition5k everything is one
    group and the key is absent), `by_support.<kind>` (what the label's food stands on, where the index
    says: the volume geometry measures the food above a plane fitted round the mask, which a bowl's
    wall is not) and `height_bins.<all|rig|table>.<lt15|15_30|ge30>` by the true mean food height (only
    where it is known: rows that read no measured depth have none)."""
    out: dict = {}
    sup = table["support"].fillna("").astype(str).to_numpy() if "support" in table.columns else np.array([])
    if (sup != "").any():
        out["by_support"] = {k: group_metrics(table[sup == k]) for k in sorted(set(sup) - {""})}
    fam = family_labels(table["scene"].tolist()) if len(table) and "scene" in table.columns else None
    groups: dict[str, np.ndarray] = {"all": np.ones(len(table), bool)}
    if fam is not None:
        fam_arr = np.asarray(fam, dtype=object)
        present = [g for g in FAMILY_GROUPS if (fam_arr == g).any()]
        out["by_family"] = {g: group_metrics(table[fam_arr == g]) for g in present}
        groups.update({g: fam_arr == g for g in present})
    if len(table) and np.isfinite(table["food_height_mm"].to_numpy(float)).any():
        hb = assign_height_bins(table["food_height_mm"].to_numpy(float), height_edges)
        out["height_bins"] = {g: {lab: group_metrics(table[sel & (hb == lab)]) for lab in bin_labels(height_edges)}
                              for g, sel in groups.items()}
    return out


def write_results(name: str, table: pd.DataFrame, metrics_dir: Path,
                  bin_edges: Sequence[float] = DEFAULT_BIN_EDGES, extra: dict | None = None) -> dict:
    """Write metrics/eval/<name>.json and .csv atomically; returns the summary."""
    summary = summarise(table, bin_edges, extra)
    write_csv(Path(metrics_dir) / f"{name}.csv", table.drop(columns=TIMING_COLUMN, errors="ignore"))
    write_json(Path(metrics_dir) / f"{name}.json", summary)
    return summary


def worst_dishes(table: pd.DataFrame, n: int) -> pd.DataFrame:
    """The n dishes with the largest APE (failed dishes first: APE 1 and an error message)."""
    return table.sort_values("ape", ascending=False, kind="stable").head(max(int(n), 0))


def model_predictor(model, size: tuple[int, int], food_prob: bool = False) -> DepthPredictor:
    """Wrap a DepthModel: RGB + true K in, depth at the original resolution out. A model that
    predicts its K (UniDepth, Depth Pro with camera: predict) also returns that K, only to report
    its focal error: volumes always use the true K. `food_prob` (a model with a food-mask head):
    a dict with the head's food probability too (`unpack_prediction`)."""
    from pipeline.models.inference import predict_arrays

    if food_prob and not getattr(model, "has_mask_head", False):
        raise ValueError(f"{getattr(model, 'name', 'model')}: has no food-mask head")

    def predict(rgb: np.ndarray, K: np.ndarray):
        res = predict_arrays(model, rgb, K, size)
        K_model = res["K"] if getattr(model, "predicts_K", False) else None
        if food_prob:
            return {"depth": res["depth"], "K": K_model, "food_prob": res["food_prob"]}
        return (res["depth"], K_model) if K_model is not None else res["depth"]
    return predict


def worst_panels(predict: DepthPredictor | None, table: pd.DataFrame, dishes: pd.DataFrame, n: int,
                 cfg: MeasureConfig, setting: str = GIVEN, allowed_roots: Sequence[Path] = ()):
    """Re-predict the n worst dishes (cheaper than keeping every depth map in memory); the mask
    shown is the one the volume was integrated over."""
    from pipeline.evaluate.plots import DishPanel
    by_id = dishes.set_index("dish_id")
    panels = []
    for _, w in worst_dishes(table, n).iterrows():
        row = by_id.loc[w["dish_id"]]
        rgb, gt, _, K = load_dish(row, allowed_roots)
        given = load_given_mask(row, gt.shape, allowed_roots) if setting == GIVEN else None
        predictor = (lambda _rgb, _K: gt.copy()) if predict is None else predict
        p = predict_dish(predictor, rgb, K, setting, given, cfg)
        panels.append(DishPanel(str(w["dish_id"]), rgb, gt, p.depth, p.mask,
                                float(w["volume_ml_gt"]), float(w["volume_ml_pred"])))
    return panels


def result_name(name: str, setting: str) -> str:
    """metrics/eval/<result_name>.json: `<name>` for given masks, `<name>_e2e` end to end, `<name>_e2e_head`
    end to end with the food-mask head's mask."""
    return name + MODEL_SETTINGS[setting]


def write_unavailable(name: str, reason: str, metrics_dir: Path, plots_dir: Path,
                      extra: dict | None = None) -> dict:
    """A setting that cannot be evaluated on this data still writes its outputs (DVC needs
    them): n_dishes 0, null metrics, the reason in `mask_source`."""
    from pipeline.io import atomic_dir, write_text
    summary = write_results(name, finish_table(pd.DataFrame({"dish_id": [], "volume_ml_gt": [],
                                                             "volume_ml_pred": []})),
                            metrics_dir, extra={**(extra or {}), "mask_source": f"unavailable: {reason}"})
    with atomic_dir(Path(plots_dir) / name) as tmp:
        write_text(tmp / "README.txt", f"{name}: not evaluated ({reason})\n")
    return summary


def diagnostic_extra(name: str, mask_source: str) -> dict:
    """What a ring-rescaled diagnostic row is, in its metrics JSON (never a model row)."""
    return {"mask_source": mask_source, "kind": DIAG_KIND, "diagnostic_of": name, "scale_source": DIAG_SCALE_SOURCE}


def evaluate_model(name: str, predict: DepthPredictor | None, dishes: pd.DataFrame, vcfg: MeasureConfig,
                   ecfg: EvalConfig, metrics_dir: Path, plots_dir: Path,
                   allowed_roots: Sequence[Path] = (), setting: str = GIVEN,
                   extra: dict | None = None, diagnostic: bool = False,
                   timing_dir: Path | None = None) -> dict:
    """Evaluate one predictor in one setting: metrics/eval/<name>[_e2e].{json,csv} and
    plots/eval/<name>[_e2e]/; with `diagnostic` (given masks) also the ring-rescaled DIAGNOSTIC
    <name>_diag_ring_rescaled.{json,csv} and its plots from the same predictions. Returns the model
    row's summary (with `mask_source`). `timing_dir`: each dish's inference seconds go to
    <timing_dir>/<row>_infer_s.csv, kept out of the per-dish table so that the tracked results are
    byte-identical run to run."""
    from pipeline.evaluate.plots import plot_evaluation
    from pipeline.io import atomic_dir
    out_name = result_name(name, setting)
    diagnostic = diagnostic and setting == GIVEN
    if setting == GIVEN:
        source = given_mask_source(dishes)
        if source is None:
            if diagnostic:
                write_unavailable(name + DIAG_SUFFIX, NO_GIVEN_MASKS, metrics_dir, plots_dir,
                                  diagnostic_extra(name, ""))   # mask_source: unavailable
            return write_unavailable(out_name, NO_GIVEN_MASKS, metrics_dir, plots_dir, extra)
    else:
        from pipeline.measure import MASK_HEAD
        source = "predicted_depth" if setting == END_TO_END else MASK_HEAD
    table, diag = evaluate_tables(predict, dishes, vcfg, desc=f"evaluate {out_name}", allowed_roots=allowed_roots,
                                  bin_edges=ecfg.volume_bins, setting=setting, diagnostic=diagnostic)
    if timing_dir is not None:   # a log beside the results, not a DVC output: wall times differ run to run
        write_csv(Path(timing_dir) / f"{out_name}_infer_s.csv", table[["dish_id", TIMING_COLUMN]])
    summary = write_results(out_name, table, metrics_dir, ecfg.volume_bins,
                            extra={"mask_source": source, **(extra or {})})
    panels = worst_panels(predict, table, dishes, ecfg.n_worst, vcfg, setting, allowed_roots)
    with atomic_dir(Path(plots_dir) / out_name) as tmp:
        plot_evaluation(out_name, table, tmp, ecfg.volume_bins, panels)
    if diag is not None:
        diag_name = name + DIAG_SUFFIX
        write_results(diag_name, diag, metrics_dir, ecfg.volume_bins, extra=diagnostic_extra(name, source))
        with atomic_dir(Path(plots_dir) / diag_name) as tmp:
            plot_evaluation(diag_name, diag, tmp, ecfg.volume_bins)
    return summary


def inference_size(params: Params | Mapping, name: str) -> tuple[int, int]:
    """(H, W) fed to the model: `eval.size` if set, else the model's own inference size from
    `model_cfg.<name>` (the size it was trained at)."""
    from pipeline.models import config_for  # torch only where a model is used
    p = as_params(params)
    return p.eval.size if p.eval.size is not None else config_for(p, name).size


def stage0_seed(params: Params | Mapping) -> int:
    """The seed training builds its stage-0 model with, so the stage-0 row is that model."""
    return as_params(params).train.seed
