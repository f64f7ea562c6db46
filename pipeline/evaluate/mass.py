"""Mass rows of the evaluation: scored as Nutrition5k's papers score them.

Metric: mass MAE in g and MAE as a share of the mean true mass of the scored dishes
(`mass_mae_pct_of_mean`, a fraction; the papers' "MAE %"). Every row is scored twice: on the
dishes the volume rows keep (suspect dishes left out while `suspect.exclude`) and on ALL test
dishes with a mass (`*_all`, with `n_dropped`), because the papers scored all of them and a row
that drops the hard dishes must not look better than it is. A dish whose volume failed is scored
as 0 g (APE 100 %), as for volume.

Rows (metrics/eval/<row>.{json,csv}):
- `mass_<model>_global[_e2e]`: train-split global density x the model's predicted volume;
- `mass_<model>_learned[_e2e]`: the model's learned density head x its predicted volume;
- `mass_<model>_oracle_measured`: the label volume (measured depth) through that learned head
  (these three: `write_model_mass_rows`, stage `mass@<model>`);
- `mass_oracle_measured_global`: the label volume x the global density;
- `mass_baseline_mean`: the train split's mean mass for every dish
(the last two written by the `baselines` stage). The row names live in `pipeline.evaluate.names`,
their paired comparisons in `pipeline.evaluate.compare`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline.config import Params
from pipeline.evaluate.names import END_TO_END, GIVEN, MASS_BASELINE_MEAN, MASS_ORACLE_GLOBAL, SETTINGS, model_rows
from pipeline.evaluate.scoring import (
    NO_GIVEN_MASKS,
    MeasureConfig,
    given_mask_source,
    given_masks,
    inference_size,
    load_given_mask,
    load_inputs,
    model_predictor,
    predict_dish,
    unpack_prediction,
)
from pipeline.io import read_mask, resolve, write_csv, write_json
from pipeline.masks.from_depth import geometry_mask
from pipeline.mass import HEAD_DIR, HEAD_WEIGHTS, DensityHead, global_density, image_features, train_densities
from pipeline.suspect import drop_suspect

MASS_COLUMNS = ["dish_id", "dropped", "suspect", "mass_g", "mass_g_pred", "volume_ml_pred",
                "density_g_ml", "err_g", "abs_err_g", "ape", "failed", "error"]


def scored_dishes(index: pd.DataFrame, split: str, exclude_suspect: bool) -> pd.DataFrame:
    """Every `split` dish with a positive mass; `dropped` marks those the volume rows leave out."""
    if "mass_g" not in index.columns:
        return index.iloc[:0].assign(dropped=pd.Series(dtype=bool))
    sub = index[(index["split"] == split) & (index["mass_g"].astype(float) > 0)].copy()
    kept = set(drop_suspect(sub, exclude_suspect)["dish_id"])
    sub["dropped"] = ~sub["dish_id"].isin(kept)
    return sub.reset_index(drop=True)


def mass_table(dishes: pd.DataFrame, mass_pred: np.ndarray, volume_pred: np.ndarray | float = np.nan,
               density: np.ndarray | float = np.nan, failed: np.ndarray | None = None,
               error: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-dish table (MASS_COLUMNS); failed dishes are scored as 0 g."""
    n = len(dishes)
    failed = np.zeros(n, bool) if failed is None else np.asarray(failed, bool)
    t = pd.DataFrame({"dish_id": dishes["dish_id"].to_numpy(), "dropped": dishes["dropped"].to_numpy(bool),
                      "suspect": dishes.get("suspect", pd.Series("", index=dishes.index)).fillna("").to_numpy(),
                      "mass_g": dishes["mass_g"].to_numpy(float),
                      "mass_g_pred": np.where(failed, 0.0, np.broadcast_to(mass_pred, (n,))),
                      "volume_ml_pred": np.broadcast_to(volume_pred, (n,)),
                      "density_g_ml": np.broadcast_to(density, (n,)), "failed": failed,
                      "error": list(error) if error is not None else [""] * n})
    bad = ~np.isfinite(t["mass_g_pred"].to_numpy(float))
    t.loc[bad, "mass_g_pred"], t.loc[bad, "failed"] = 0.0, True
    t["err_g"] = t["mass_g_pred"] - t["mass_g"]
    t["abs_err_g"] = t["err_g"].abs()
    t["ape"] = t["abs_err_g"] / t["mass_g"]
    return t[MASS_COLUMNS]


def _r(x: float) -> float | None:
    return round(float(x), 6) if np.isfinite(x) else None


def mass_metrics(table: pd.DataFrame) -> dict:
    """Mass metrics on the kept dishes and, with `_all`, on every test dish with a mass."""
    def block(t: pd.DataFrame, sfx: str) -> dict:
        if t.empty:
            return {f"mass_mae_g{sfx}": None, f"mass_mae_pct_of_mean{sfx}": None, f"mean_mass_g{sfx}": None}
        mae, mean = float(t["abs_err_g"].mean()), float(t["mass_g"].mean())
        return {f"mass_mae_g{sfx}": _r(mae), f"mass_mae_pct_of_mean{sfx}": _r(mae / mean),
                f"mean_mass_g{sfx}": _r(mean)}

    kept = table[~table["dropped"].astype(bool)]
    out = {"n_dishes": int(len(kept)), "n_failed": int(kept["failed"].astype(bool).sum()), **block(kept, "")}
    out.update(mass_mape=_r(kept["ape"].mean()) if len(kept) else None,
               mass_median_ape=_r(kept["ape"].median()) if len(kept) else None,
               mass_bias_pct=_r((kept["err_g"] / kept["mass_g"]).mean()) if len(kept) else None)
    out.update({"n_all": int(len(table)), "n_dropped": int(table["dropped"].astype(bool).sum()),
                "n_failed_all": int(table["failed"].astype(bool).sum()), **block(table, "_all")})
    return out


def write_mass_row(name: str, table: pd.DataFrame, metrics_dir: Path, extra: dict) -> dict:
    """metrics/eval/<name>.csv and .json (atomic); returns the summary."""
    summary = {**mass_metrics(table), **extra}
    write_csv(Path(metrics_dir) / f"{name}.csv", table)
    write_json(Path(metrics_dir) / f"{name}.json", summary)
    return summary


def write_mass_unavailable(name: str, reason: str, metrics_dir: Path, extra: dict) -> dict:
    """A row that cannot be scored on this data still writes its files (DVC needs them)."""
    empty = mass_table(pd.DataFrame({"dish_id": [], "dropped": [], "mass_g": []}), np.zeros(0))
    return write_mass_row(name, empty, metrics_dir, {**extra, "mask_source": f"unavailable: {reason}"})


def write_mass_baselines(index: pd.DataFrame, split: str, exclude_suspect: bool, metrics_dir: Path) -> dict[str, dict]:
    """The model-free mass rows, fitted on the train split: `mass_baseline_mean` (the train mean
    mass for every dish) and `mass_oracle_measured_global` (label volume x global density)."""
    dishes = scored_dishes(index, split, exclude_suspect)
    train = drop_suspect(index[index["split"] == "train"], exclude_suspect)
    dens = train_densities(train) if "mass_g" in train.columns else pd.Series(dtype=float)
    if dishes.empty or dens.empty:
        return {n: write_mass_unavailable(n, "no dish masses in this data source", metrics_dir, {})
                for n in (MASS_BASELINE_MEAN, MASS_ORACLE_GLOBAL)}
    mean_g, rho = float(train.loc[dens.index, "mass_g"].mean()), global_density(train)
    vol = dishes["volume_ml"].to_numpy(float)
    mean_row = write_mass_row(MASS_BASELINE_MEAN, mass_table(dishes, np.full(len(dishes), mean_g)), metrics_dir,
                              {"kind": "non-learned baseline (train mean mass)", "density_source": "none",
                               "fit_mean_mass_g": round(mean_g, 3), "volume_source": "none", "mask_source": "none"})
    oracle_row = write_mass_row(MASS_ORACLE_GLOBAL, mass_table(dishes, rho * vol, vol, rho), metrics_dir,
                                {"kind": "oracle: label volume (measured depth) x global density",
                                 "density_source": "global", "global_density_g_ml": round(rho, 4),
                                 "volume_source": "label (measured depth)", "mask_source": "label"})
    return {MASS_BASELINE_MEAN: mean_row, MASS_ORACLE_GLOBAL: oracle_row}


# --- one model's rows (stage mass@<model>) ----------------------------------------------------

SUMMARY_KEYS = ("n_dishes", "mass_mae_pct_of_mean", "mass_mae_pct_of_mean_all")


def predicted_volumes(name: str, dishes: pd.DataFrame, predict: Callable, cfg: MeasureConfig, roots: Sequence[Path],
                      eval_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
    """setting -> (volume mL, failed, error) per dish: read from the evaluate stage's tables
    (eval_dir/<model>[_e2e].csv), and for the dishes they left out (suspect) predicted here the
    same way (`predict_dish`), so the `_all` scores cover every test dish with a mass."""
    out = {}
    for setting, sfx in SETTINGS.items():
        t = pd.read_csv(Path(eval_dir) / f"{name}{sfx}.csv", dtype={"dish_id": str}).set_index("dish_id")
        vols, failed, errors = [], [], []
        for _, row in dishes.iterrows():
            if row["dish_id"] in t.index:
                r = t.loc[row["dish_id"]]
                vols.append(float(r["volume_ml_pred"]))
                failed.append(bool(r["failed"]))
                errors.append("" if pd.isna(r["error"]) else str(r["error"]))
                continue
            rgb, K = load_inputs(row, roots)
            try:
                given = load_given_mask(row, rgb.shape[:2], roots) if setting == GIVEN else None
                d = predict_dish(predict, rgb, K, setting, given, cfg)
                vols.append(d.volume_ml)
                failed.append(d.failed)
                errors.append(d.error)
            except ValueError as e:
                vols.append(0.0)
                failed.append(True)
                errors.append(str(e)[:200])
        out[setting] = (np.array(vols), np.array(failed), errors)
    return out


def learned_densities(head: DensityHead, model, dishes: pd.DataFrame, predict: Callable, cfg: MeasureConfig,
                      size: tuple[int, int], roots: Sequence[Path]) -> dict[str, np.ndarray]:
    """Density per dish from the head, the features pooled over each setting's mask: the given
    (depth-free) mask, the mask cut from the model's own depth (end to end), the label's mask."""
    out = {k: np.full(len(dishes), np.nan) for k in (GIVEN, END_TO_END, "label")}
    has_given = given_masks(dishes)[0].str.len() > 0
    for i, (_, row) in enumerate(tqdm(dishes.iterrows(), total=len(dishes), desc="mass features", unit="dish")):
        rgb, K = load_inputs(row, roots)
        masks = {"label": read_mask(resolve(row["mask_path"], roots), shape=rgb.shape[:2])}
        depth = unpack_prediction(predict(rgb, K))[0]   # a model predicting its K returns (depth, K)
        masks[END_TO_END] = geometry_mask(depth, K, cfg.masks.min_height_mm, cfg.masks.min_area_px)
        if has_given.iloc[i]:
            masks[GIVEN] = load_given_mask(row, rgb.shape[:2], roots)
        feats = image_features(model, rgb, list(masks.values()), size)
        for k, f in zip(masks, feats):
            if masks[k].any():
                out[k][i] = float(head.predict(f)[0])
    return out


def write_model_mass_rows(name: str, params: Params, index: pd.DataFrame, train: pd.DataFrame, model_dir: Path,
                          eval_dir: Path) -> dict[str, dict]:
    """The mass rows of one model (`model_rows(name)` in eval_dir): its predicted volumes (given
    masks, end to end) x the train split's global density and x its learned density head
    (model_dir/mass_head, on the fine-tuned model model_dir/stage2), and the label volume x that
    head. A row that cannot be scored (no masses, no depth-free masks, no head) is written as
    unavailable with its reason. Returns row -> summary."""
    from pipeline.models.inference import load_model

    dishes = scored_dishes(index, params.eval.split, params.suspect.exclude)
    if dishes.empty:
        return {r: write_mass_unavailable(r, "no dish masses in this data source", eval_dir, {})
                for r in model_rows(name)}
    rho = global_density(train)
    model = load_model(Path(model_dir) / "stage2")
    size, roots, cfg = inference_size(params, name), params.data_roots(), MeasureConfig.from_params(params)
    predict = model_predictor(model, size)
    vols = predicted_volumes(name, dishes, predict, cfg, roots, eval_dir)
    head_dir = Path(model_dir) / HEAD_DIR
    head = DensityHead.load(head_dir) if (head_dir / HEAD_WEIGHTS).is_file() else None
    dens = learned_densities(head, model, dishes, predict, cfg, size, roots) if head else {}
    sources = {GIVEN: given_mask_source(dishes[~dishes["dropped"]]) or f"unavailable: {NO_GIVEN_MASKS}",
               END_TO_END: "predicted_depth"}
    out: dict[str, dict] = {}
    for setting, sfx in SETTINGS.items():
        v, failed, err = vols[setting]
        common = {"volume_source": f"{name}{sfx}", "mask_source": sources[setting]}
        if sources[setting].startswith("unavailable"):   # no depth-free masks: as the volume row
            for d in ("global", "learned"):
                out[f"mass_{name}_{d}{sfx}"] = write_mass_unavailable(f"mass_{name}_{d}{sfx}", NO_GIVEN_MASKS,
                                                                      eval_dir, common)
            continue
        out[f"mass_{name}_global{sfx}"] = write_mass_row(
            f"mass_{name}_global{sfx}", mass_table(dishes, rho * v, v, rho, failed, err), eval_dir,
            {**common, "kind": "global density x predicted volume", "density_source": "global",
             "global_density_g_ml": round(rho, 4)})
        row = f"mass_{name}_learned{sfx}"
        if head is None:
            out[row] = write_mass_unavailable(row, f"{name} has no learned mass head", eval_dir, common)
            continue
        d = dens[setting]
        no_mask = ~np.isfinite(d)
        out[row] = write_mass_row(row, mass_table(dishes, d * v, v, d, failed | no_mask,
                                                  [e or ("no mask" if nm else "") for e, nm in zip(err, no_mask)]),
                                  eval_dir, {**common, "kind": "learned density x predicted volume",
                                             "density_source": f"learned ({HEAD_DIR}, alpha {head.alpha:g})"})
    row = f"mass_{name}_oracle_measured"
    if head is None:
        out[row] = write_mass_unavailable(row, f"{name} has no learned mass head", eval_dir, {})
        return out
    lv = dishes["volume_ml"].to_numpy(float)
    out[row] = write_mass_row(row, mass_table(dishes, dens["label"] * lv, lv, dens["label"]), eval_dir,
                              {"kind": "oracle: label volume (measured depth) x learned density",
                               "density_source": f"learned ({HEAD_DIR})", "volume_source": "label (measured depth)",
                               "mask_source": "label"})
    return out
