"""The report table lists every model, its zero-shot start and both baselines."""
import pandas as pd
import pytest

from pipeline.baselines import BASELINE_NAMES
from pipeline.evaluate import finish_table, write_results
from pipeline.plots import plot_model_comparison
from pipeline.report import evaluated_names, load_results, render_report, summary_frame, write_report


def _table(scale: float) -> pd.DataFrame:
    gt = [50.0, 150.0, 400.0, 800.0]
    return finish_table(pd.DataFrame({"dish_id": ["a", "b", "c", "d"], "volume_ml_gt": gt,
                                      "volume_ml_pred": [v * scale for v in gt],
                                      "failed": [False] * 4, "error": [""] * 4}))


def test_report_has_every_model_and_baseline(tmp_path):
    models = ["depth_anything_v2", "unidepth_v2"]
    named = evaluated_names(models)
    names = [n for n, _ in named]
    assert names == ["depth_anything_v2", "depth_anything_v2_zeroshot", "unidepth_v2",
                     "unidepth_v2_zeroshot", *BASELINE_NAMES, "oracle_gt_depth"]
    eval_dir = tmp_path / "metrics" / "eval"
    for i, n in enumerate(names):
        write_results(n, _table(1.0 + 0.1 * (i + 1)), eval_dir)
    results = load_results(eval_dir, names)
    png = tmp_path / "plots" / "report" / "comparison.png"
    plot_model_comparison(summary_frame(results), png)
    assert png.stat().st_size > 1000
    report = tmp_path / "metrics" / "report.md"
    text = render_report(results, dict(named), report, tmp_path / "plots" / "eval", png)
    write_report(report, text)
    assert report.read_text() == text
    table = text.split("## All models and baselines")[1].split("\n\n")[1]
    rows = [r for r in table.splitlines() if r.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == names
    # depth_anything_v2 is 10 % off on every dish -> MAPE 10.0 %, within 10 % all (<=)
    assert "| `depth_anything_v2` | fine-tuned (stage 2) | 4 | 0 |" in rows[0]
    assert "10.0 %" in rows[0]
    # every dish off by 10 % (model) vs 50 % (best baseline) vs 70 % (oracle, scale 1.7 here)
    assert "`depth_anything_v2`: MAPE 10.0 % beats the best non-learned baseline `baseline_mean` (50.0 %)" in text
    assert "GT-depth ceiling 70.0 %" in text
    assert "../../plots/eval/depth_anything_v2/scatter.png" not in text  # links relative to metrics/
    assert "(../plots/eval/depth_anything_v2/scatter.png)" in text
    assert "volume_ml_true" in text  # says which reference volume is used
    for b in ("lt100", "100_300", "300_600", "ge600"):
        assert b in text


def test_report_missing_metrics_names_the_file(tmp_path):
    with pytest.raises(ValueError, match="baseline_mean.json"):
        load_results(tmp_path, ["baseline_mean"])


def test_dvc_yaml_declares_every_report_input():
    """Every json the report reads is a metrics output of evaluate@<model> or baselines, so
    `dvc repro` builds it and `dvc metrics diff` shows it per model."""
    import yaml
    from pipeline.io import REPO_ROOT
    dvc = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    st = dvc["stages"]
    declared = set()
    for name in ("evaluate", "baselines"):
        for m in st[name]["do"]["metrics"] if "do" in st[name] else st[name]["metrics"]:
            declared |= set(m)
    eval_metrics = {p.replace("${item}", model) for p in declared for model in params["models"]}
    for n, _ in evaluated_names(params["models"]):
        assert f"metrics/eval/{n}.json" in eval_metrics
    assert "metrics/eval" in st["report"]["deps"]
    assert any("metrics/report.md" in o for o in st["report"]["outs"])
