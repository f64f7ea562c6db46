"""DVC stage `report`: metrics/report.md, one table over every model, zero-shot start and
baseline (read from metrics/eval/*.json), plus plots/report/comparison.png."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline import io  # noqa: E402
from pipeline.plots import plot_model_comparison  # noqa: E402
from pipeline.report import evaluated_names, load_results, render_report, summary_frame, write_report  # noqa: E402


def main() -> None:
    p = io.load_params()
    kinds = dict(evaluated_names(p["models"]))
    results = load_results(io.REPO_ROOT / "metrics/eval", list(kinds))
    comparison = io.REPO_ROOT / "plots/report/comparison.png"
    plot_model_comparison(summary_frame(results), comparison)
    note = (f"Settings: data.source={p['data']['source']}, masks.method={p['masks']['method']}, "
            f"volume.method={p['volume']['method']}, loss={p.get('loss')}.")
    report = io.REPO_ROOT / "metrics/report.md"
    write_report(report, render_report(results, kinds, report, io.REPO_ROOT / "plots/eval", comparison, note))
    print(report.read_text())


if __name__ == "__main__":
    main()
