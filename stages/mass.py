"""DVC stage `mass@<model>`: the model's predicted volumes (metrics/eval/<model>[_e2e].csv; the
test dishes those rows left out are predicted here) turned into masses by the train-split global
density and by the model's learned density head, plus the label volume through that head ->
metrics/eval/mass_<model>_{global,learned}[_e2e].{json,csv} and mass_<model>_oracle_measured.*
(pipeline.evaluate.mass.write_model_mass_rows)."""
from pipeline.cli import run_stage
from pipeline.evaluate.mass import SUMMARY_KEYS, write_model_mass_rows
from pipeline.mass import stage_inputs
from pipeline.paths import EVAL_METRICS_DIR, MODELS_DIR, repo_path


def main(argv: list[str] | None = None) -> None:
    name, p, index, train = stage_inputs(argv, __doc__)
    rows = write_model_mass_rows(name, p, index, train, repo_path(MODELS_DIR / name), repo_path(EVAL_METRICS_DIR))
    for row, s in rows.items():
        print(row, {k: s.get(k) for k in SUMMARY_KEYS})


if __name__ == "__main__":
    run_stage(main)
