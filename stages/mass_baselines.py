"""DVC stage `mass_baselines`: model-free mass rows on the test split, fitted on the train split:
the train-mean mass for every dish (`mass_baseline_mean`) and the label volume (measured depth)
x the train-split global density (`mass_oracle_measured_global`) -> metrics/eval/<row>.{json,csv}."""
import numpy as np

from pipeline import io
from pipeline.config import load_params
from pipeline.evaluate.mass import BASELINE_MEAN, ORACLE_GLOBAL, mass_table, scored_dishes, write_mass_row, write_mass_unavailable
from pipeline.mass import global_density, train_densities
from pipeline.suspect import drop_suspect


def main() -> None:
    p = load_params()
    index = io.read_index(io.REPO_ROOT / "data/dishes/index.csv")
    metrics_dir = io.REPO_ROOT / "metrics/eval"
    dishes = scored_dishes(index, p.eval.split, p.suspect.exclude)
    train = drop_suspect(index[index["split"] == "train"], p.suspect.exclude)
    if dishes.empty or train_densities(train).empty:
        for name in (BASELINE_MEAN, ORACLE_GLOBAL):
            write_mass_unavailable(name, "no dish masses in this data source", metrics_dir, {})
        print("mass baselines: no dish masses")
        return
    mean_g = float(train.loc[train_densities(train).index, "mass_g"].mean())
    rho = global_density(train)
    vol = dishes["volume_ml"].to_numpy(float)
    rows = {BASELINE_MEAN: (mass_table(dishes, np.full(len(dishes), mean_g)),
                            {"kind": "non-learned baseline (train mean mass)", "fit_mean_mass_g": round(mean_g, 3),
                             "density_source": "none", "volume_source": "none", "mask_source": "none"}),
            ORACLE_GLOBAL: (mass_table(dishes, rho * vol, vol, rho),
                            {"kind": "oracle: label volume (measured depth) x global density",
                             "density_source": "global", "global_density_g_ml": round(rho, 4),
                             "volume_source": "label (measured depth)", "mask_source": "label"})}
    for name, (table, extra) in rows.items():
        s = write_mass_row(name, table, metrics_dir, extra)
        print(name, {k: s[k] for k in ("n_dishes", "mass_mae_g", "mass_mae_pct_of_mean", "n_all",
                                       "mass_mae_pct_of_mean_all")})


if __name__ == "__main__":
    main()
