"""DVC stage `report`: metrics/report.md, one table over every model (both mask settings),
stage-0 start, distilled student (and the same student fine-tuned directly, with inference ms and peak
memory), baseline, oracle and ring-rescaled diagnostic (read from metrics/eval/*.json), the paired
comparisons (metrics/compare.json), all also per scene family, plus plots/report/comparison.png and paired.png."""
from dataclasses import asdict

from pipeline import io
from pipeline.cli import run_stage
from pipeline.config import load_params
from pipeline.evaluate.names import SPEED_SUFFIX, is_diagnostic, mass_names
from pipeline.evaluate.plots import plot_model_comparison, plot_paired_differences
from pipeline.evaluate.report import (
    REAL_DISHES_SUFFIX,
    comparison_rows,
    evaluated_names,
    load_results,
    render_report,
    split_note,
    summary_frame,
    write_report,
)
from pipeline.paths import (
    COMPARE_JSON,
    EVAL_METRICS_DIR,
    EVAL_PLOTS_DIR,
    REPORT_MD,
    REPORT_PLOTS_DIR,
    SPLIT_JSON,
    repo_path,
)


def main() -> None:
    p = load_params()
    students = {n: st.teacher for n, st in p.distill.students.items()}
    kinds = dict(evaluated_names(p.models, p.model_cfg, p.eval.zero_shot, students))
    eval_dir = repo_path(EVAL_METRICS_DIR)
    speed = {n: io.read_json(eval_dir / f"{n}{SPEED_SUFFIX}.json") for n in students}
    results = load_results(eval_dir, list(kinds))
    compare = io.read_json(repo_path(COMPARE_JSON))
    mass = {n: io.read_json(f) for n in mass_names(p.models) if (f := eval_dir / f"{n}.json").is_file()}
    real = {m: io.read_json(f) for m in p.models if (f := eval_dir / f"{m}{REAL_DISHES_SUFFIX}.json").is_file()}
    comparison = repo_path(REPORT_PLOTS_DIR / "comparison.png")
    paired = repo_path(REPORT_PLOTS_DIR / "paired.png")
    plot_model_comparison(summary_frame({n: r for n, r in results.items()  # diagnostics are not models
                                         if r.get("n_dishes") and not is_diagnostic(n)}), comparison)
    plot_paired_differences(comparison_rows(compare), paired)
    split = io.read_json(f) if (f := repo_path(SPLIT_JSON)).is_file() else None
    note = (split_note(split) + "\n\n"
            f"Settings: data.source={p.data.source}, masks.method={p.masks.method} (labels only), "
            f"volume.method={p.volume.method}, loss={asdict(p.loss)}.")
    report = repo_path(REPORT_MD)
    write_report(report, render_report(results, kinds, report, repo_path(EVAL_PLOTS_DIR), comparison, note,
                                       compare, paired, mass, real, speed))
    print(report.read_text())


if __name__ == "__main__":
    run_stage(main)
