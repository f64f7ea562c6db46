"""DVC stage `baselines`: training-set mean volume and given-mask area x mean training height,
fitted on the train split, scored on the test split like the models (area x height also on its flat food
height: height error per family and food-height bin), plus the measured-depth
oracle (the ceiling the masks and geometry leave) with given masks and end to end ->
metrics/eval/{baseline_*,oracle_gt_depth,oracle_gt_depth_e2e}.{json,csv} and plots/eval/<name>/;
and the model-free mass rows (train-mean mass, label volume x global density) ->
metrics/eval/{mass_baseline_mean,mass_oracle_measured_global}.{json,csv}."""

from pipeline import io
from pipeline.cli import run_stage
from pipeline.config import load_params
from pipeline.evaluate.baselines import baseline_table, fit_baselines
from pipeline.evaluate.mass import write_mass_baselines
from pipeline.evaluate.names import BASELINE_NAMES, ORACLE_NAME, SETTINGS
from pipeline.evaluate.plots import plot_evaluation
from pipeline.evaluate.scoring import (
    NO_GIVEN_MASKS,
    MeasureConfig,
    evaluate_model,
    finish_table,
    given_mask_source,
    select_split,
    write_results,
    write_unavailable,
)
from pipeline.paths import EVAL_METRICS_DIR, EVAL_PLOTS_DIR, INDEX_CSV, repo_path

KINDS = {"baseline_mean": "non-learned baseline (train mean volume)",
         "baseline_area_height": "non-learned baseline (mask area × train height)"}


def main() -> None:
    p = load_params()
    ecfg = p.eval
    index = io.read_index(repo_path(INDEX_CSV))
    roots = p.data_roots()
    metrics_dir, plots_dir = repo_path(EVAL_METRICS_DIR), repo_path(EVAL_PLOTS_DIR)
    dishes = select_split(index, ecfg.split, p.suspect.exclude)
    vcfg = MeasureConfig.from_params(p)
    train = index[index["split"] == "train"]
    with_masks = given_mask_source(dishes) is not None and given_mask_source(train) is not None
    fitted = fit_baselines(train, roots, with_masks=with_masks)
    for name in BASELINE_NAMES:
        if name not in fitted:
            write_unavailable(name, NO_GIVEN_MASKS, metrics_dir, plots_dir,
                              {"kind": KINDS[name]})
            print(name, "not evaluated: no depth-free masks")
            continue
        model = fitted[name]
        table = finish_table(baseline_table(model, dishes, roots, vcfg), ecfg.volume_bins)
        summary = write_results(name, table, metrics_dir, ecfg.volume_bins,
                                extra={**model.describe(), "kind": KINDS[name]})
        with io.atomic_dir(plots_dir / name) as tmp:
            plot_evaluation(name, table, tmp, ecfg.volume_bins)
        print(name, model.describe(), {k: summary[k] for k in ("volume_mape", "volume_median_ape", "within_20pct")})
    for name, summary in write_mass_baselines(index, ecfg.split, p.suspect.exclude, metrics_dir).items():
        print(name, {k: summary[k] for k in ("n_dishes", "mass_mae_pct_of_mean", "n_all", "mass_mae_pct_of_mean_all")})
    for setting in SETTINGS:
        summary = evaluate_model(ORACLE_NAME, None, dishes, vcfg, ecfg, metrics_dir,
                                 plots_dir, roots, setting, extra={"kind": "oracle: measured depth (ceiling)"})
        print(ORACLE_NAME, setting, {k: summary[k] for k in ("mask_source", "n_failed", "volume_mape", "within_20pct")})


if __name__ == "__main__":
    run_stage(main)
