"""DVC stage `report`: metrics/report.md, one table over every model (both mask settings),
stage-0 start, baseline, oracle and ring-rescaled diagnostic (read from metrics/eval/*.json), the paired
comparisons (metrics/compare.json), all also per scene family, plus plots/report/comparison.png and paired.png."""
from dataclasses import asdict

from pipeline import io
from pipeline.config import load_params
from pipeline.evaluate.names import is_diagnostic, mass_names
from pipeline.evaluate.plots import plot_model_comparison, plot_paired_differences
from pipeline.evaluate.report import (
    comparison_rows,
    evaluated_names,
    load_results,
    render_report,
    summary_frame,
    write_report,
)


def main() -> None:
    p = load_params()
    kinds = dict(evaluated_names(p.models, p.model_cfg, p.eval.zero_shot))
    results = load_results(io.REPO_ROOT / "metrics/eval", list(kinds))
    compare = io.read_json(io.REPO_ROOT / "metrics/compare.json")
    mass = {n: io.read_json(f) for n in mass_names(p.models)
            if (f := io.REPO_ROOT / "metrics/eval" / f"{n}.json").is_file()}
    comparison = io.REPO_ROOT / "plots/report/comparison.png"
    paired = io.REPO_ROOT / "plots/report/paired.png"
    plot_model_comparison(summary_frame({n: r for n, r in results.items()  # diagnostics are not models
                                         if r.get("n_dishes") and not is_diagnostic(n)}), comparison)
    plot_paired_differences(comparison_rows(compare), paired)
    note = (f"Settings: data.source={p.data.source}, masks.method={p.masks.method} (labels only), "
            f"volume.method={p.volume.method}, loss={asdict(p.loss)}.")
    report = io.REPO_ROOT / "metrics/report.md"
    write_report(report, render_report(results, kinds, report, io.REPO_ROOT / "plots/eval", comparison, note,
                                       compare, paired, mass))
    print(report.read_text())


if __name__ == "__main__":
    main()
