"""DVC stage `baselines`: training-set mean volume and mask area x mean training height,
fitted on the train split, scored on the test split like the models, plus the GT-depth
oracle (the ceiling the masks and geometry leave) ->
metrics/eval/{baseline_*,oracle_gt_depth}.{json,csv} and plots/eval/<name>/."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline import io  # noqa: E402
from pipeline.baselines import ORACLE_NAME, baseline_table, fit_baselines  # noqa: E402
from pipeline.evaluate import (EvalConfig, VolumeConfig, evaluate_model, finish_table,  # noqa: E402
                               select_split, write_results)
from pipeline.plots import plot_evaluation  # noqa: E402


def main() -> None:
    p = io.load_params()
    ecfg = EvalConfig.from_params(p)
    index = io.read_index(io.REPO_ROOT / "data/dishes/index.csv")
    roots = io.data_roots(p)
    fitted = fit_baselines(index[index["split"] == "train"], roots)
    dishes = select_split(index, ecfg.split)
    for name, model in fitted.items():
        table = finish_table(baseline_table(model, dishes, roots), ecfg.bin_edges)
        summary = write_results(name, table, io.REPO_ROOT / "metrics/eval", ecfg.bin_edges,
                                extra=model.describe())
        with io.atomic_dir(io.REPO_ROOT / "plots/eval" / name) as tmp:
            plot_evaluation(name, table, tmp, ecfg.bin_edges)
        print(name, model.describe(), {k: summary[k] for k in ("volume_mape", "within_20pct")})
    summary = evaluate_model(ORACLE_NAME, None, dishes, VolumeConfig.from_params(p), ecfg,
                             io.REPO_ROOT / "metrics/eval", io.REPO_ROOT / "plots/eval", roots)
    print(ORACLE_NAME, {k: summary[k] for k in ("n_failed", "volume_mape", "within_20pct")})


if __name__ == "__main__":
    main()
