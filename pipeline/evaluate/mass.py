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
- `mass_<model>_oracle_measured`: the label volume (measured depth) through that learned head;
- `mass_oracle_measured_global`: the label volume x the global density;
- `mass_baseline_mean`: the train split's mean mass for every dish
(the last two written by the `baselines` stage). The row names live in `pipeline.evaluate.names`,
their paired comparisons in `pipeline.evaluate.compare`.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.evaluate.names import MASS_BASELINE_MEAN, MASS_ORACLE_GLOBAL
from pipeline.io import write_csv, write_json
from pipeline.mass import global_density, train_densities
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
