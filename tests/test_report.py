"""The report lists every model (both mask settings), its stage-0 start, the baselines and the
oracle, with `mask_source` and paired comparisons whose verdicts follow the intervals."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipeline.evaluate.compare import compare, comparison_plan, paired, verdict, vs_key
from pipeline.evaluate.names import BASELINE_NAMES, SETTINGS, STAGE0_SUFFIX, is_diagnostic
from pipeline.evaluate.plots import plot_model_comparison, plot_paired_differences
from pipeline.evaluate.report import (
    comparison_rows,
    evaluated_names,
    load_results,
    render_report,
    summary_frame,
    write_report,
)
from pipeline.evaluate.scoring import finish_table, write_results


def _table(scale: float | np.ndarray, gt: list[float] | None = None) -> pd.DataFrame:
    gt = gt or [50.0, 150.0, 400.0, 800.0]
    ids = [f"d{i}" for i in range(len(gt))]
    return finish_table(pd.DataFrame({"dish_id": ids, "volume_ml_gt": gt,
                                      "volume_ml_pred": np.asarray(gt) * scale,
                                      "failed": [False] * len(gt), "error": [""] * len(gt)}))


def test_compare_intervals_and_wilcoxon():
    rng = np.random.default_rng(0)
    gt = list(rng.uniform(50, 600, 60))
    good = _table(1 + rng.normal(0, 0.1, 60), gt)     # ~8 % APE
    bad = _table(1 + rng.normal(0, 0.6, 60), gt)      # ~48 % APE
    c = compare(good, bad, n_bootstrap=500, seed=0)
    assert c["n_dishes"] == 60
    assert c["mape_diff"] == pytest.approx(good["ape"].mean() - bad["ape"].mean(), abs=1e-6)
    assert c["mape_ci_low"] < c["mape_diff"] < c["mape_ci_high"] < 0
    assert verdict("volume_mape", c["mape_ci_low"], c["mape_ci_high"]) == "better"
    assert verdict("within_20pct", c["within_20pct_ci_low"], c["within_20pct_ci_high"]) == "better"
    assert c["wilcoxon_p"] == pytest.approx(stats.wilcoxon(good["ape"], bad["ape"]).pvalue, abs=1e-6)
    assert c["wilcoxon_p"] < 1e-4
    assert compare(good, bad, n_bootstrap=500, seed=0) == c          # seeded
    same = compare(good, good, n_bootstrap=200)
    assert same["mape_diff"] == 0 and same["wilcoxon_p"] == 1.0
    assert verdict("volume_mape", same["mape_ci_low"], same["mape_ci_high"]) == "no clear difference"
    # row order does not matter, dish sets must match
    assert compare(good.iloc[::-1], bad, n_bootstrap=500, seed=0)["mape_diff"] == c["mape_diff"]
    with pytest.raises(ValueError, match="not the same dishes"):
        paired(good.iloc[1:], bad, "good", "bad")


def test_comparison_plan_pairs_each_model_setting():
    avail = {"m", "m_e2e", "m_stage0", "m_stage0_e2e", "baseline_mean", "baseline_area_height"}
    plan = comparison_plan(["m"], avail, BASELINE_NAMES, SETTINGS, STAGE0_SUFFIX)
    assert ("m", "given", "m", "m_stage0") in plan and ("m", "end_to_end", "m_e2e", "m_stage0_e2e") in plan
    assert ("m", "end_to_end", "m_e2e", "baseline_area_height") in plan and len(plan) == 6
    assert vs_key("m_stage0_e2e", "m", STAGE0_SUFFIX) == "vs_stage0"
    # end to end with the food-mask head: vs the baselines and vs the model's own cut from its depth
    from pipeline.evaluate.names import END_TO_END, END_TO_END_HEAD, MODEL_SETTINGS
    head = comparison_plan(["m"], avail | {"m_e2e_head"}, BASELINE_NAMES, MODEL_SETTINGS, STAGE0_SUFFIX,
                           alternatives={END_TO_END_HEAD: END_TO_END})
    assert ("m", END_TO_END_HEAD, "m_e2e_head", "m_e2e") in head and len(head) == 9
    assert vs_key("m_e2e", "m", STAGE0_SUFFIX) == "vs_m_e2e"
    assert len(comparison_plan(["m"], avail - {"baseline_area_height"}, BASELINE_NAMES, SETTINGS,
                               STAGE0_SUFFIX)) == 4


@pytest.mark.slow
def test_report_has_every_model_and_baseline(tmp_path):
    models = ["depth_anything_v2", "unidepth_v2"]
    named = evaluated_names(models, {"unidepth_v2": {"pretrained": "lpiccinelli/unidepth-v2-vits14"}})
    names = [n for n, _ in named]
    assert names == ["depth_anything_v2", "depth_anything_v2_e2e", "depth_anything_v2_e2e_head",
                     "depth_anything_v2_diag_ring_rescaled",
                     "depth_anything_v2_stage0", "depth_anything_v2_stage0_e2e",
                     "depth_anything_v2_stage0_diag_ring_rescaled", "unidepth_v2", "unidepth_v2_e2e",
                     "unidepth_v2_e2e_head", "unidepth_v2_diag_ring_rescaled", "unidepth_v2_stage0",
                     "unidepth_v2_stage0_e2e",
                     "unidepth_v2_stage0_diag_ring_rescaled", *BASELINE_NAMES, "oracle_gt_depth",
                     "oracle_gt_depth_e2e"]
    kinds = dict(named)
    assert kinds["depth_anything_v2_stage0"] == "random init"
    assert kinds["unidepth_v2_stage0_e2e"] == "pretrained, not fine-tuned"
    eval_dir = tmp_path / "metrics" / "eval"
    tables = {}
    aside = [n for n in names if is_diagnostic(n) or n.endswith("_e2e_head")]
    models_first = [n for n in names if n not in aside]
    for n in names:   # the i-th other row is 10 i % off; a diagnostic or mask-head row 2 %
        tables[n] = _table(1.02 if n in aside else 1.0 + 0.1 * (models_first.index(n) + 1))
        write_results(n, tables[n], eval_dir, extra={"mask_source": "predicted_depth" if n.endswith("_e2e")
                                                     else "gt_mask"})
    results = load_results(eval_dir, names)
    cmp = {"n_bootstrap": 200, "seed": 0, "models": {}}
    for m, setting, row, other in comparison_plan(models, set(names), BASELINE_NAMES, SETTINGS, STAGE0_SUFFIX):
        cmp["models"].setdefault(m, {}).setdefault(setting, {})[vs_key(other, m, STAGE0_SUFFIX)] = \
            compare(tables[row], tables[other], 200, 0)
    png = tmp_path / "plots" / "report" / "comparison.png"
    plot_model_comparison(summary_frame(results), png)
    paired_png = tmp_path / "plots" / "report" / "paired.png"
    plot_paired_differences(comparison_rows(cmp), paired_png)
    assert png.stat().st_size > 1000 and paired_png.stat().st_size > 1000
    report = tmp_path / "metrics" / "report.md"
    text = render_report(results, kinds, report, tmp_path / "plots" / "eval", png, compare=cmp,
                         paired_png=paired_png)
    write_report(report, text)
    assert report.read_text() == text
    table = text.split("## All models and baselines")[1].split("\n\n")[1]
    rows = [r for r in table.splitlines() if r.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == names
    # depth_anything_v2 is 10 % off on every dish -> MAPE 10.0 %, within 10 % all (<=)
    assert rows[0].startswith("| `depth_anything_v2` | fine-tuned (stage 2) | `gt_mask` | 4 | 0 |")
    assert "| `depth_anything_v2_e2e` | fine-tuned (stage 2) | `predicted_depth` |" in rows[1]
    assert "| `depth_anything_v2_e2e_head` | fine-tuned (stage 2) | `gt_mask` |" in rows[2]
    assert "| `depth_anything_v2_stage0` | random init |" in rows[4]
    assert "| `depth_anything_v2_diag_ring_rescaled` | diagnostic: rescaled to measured ring depth" in rows[3]
    # the plan never holds a diagnostic row; the tables carry no scene: one group, said so
    assert "vs `depth_anything_v2_diag" not in text and "_diag_ring_rescaled` (" not in text
    assert "everything is one group" in text
    assert "10.0 %" in rows[0]
    assert "## Paired comparisons" in text and "Wilcoxon" in text
    # every dish 10 % off vs 90 % off (baseline_mean): a constant difference, an interval of one point
    assert "| `depth_anything_v2` | given masks | `baseline_mean` | 4 | -80.0 [-80.0, -80.0] |" in text
    assert "`depth_anything_v2` (given masks) vs `baseline_mean`: **better** on MAPE, median APE, ≤20 %." in text
    assert "vs its own stage 0 (random init): **better** on MAPE" in text
    # unidepth_v2 and its stage 0 are both outside 20 % on every dish: no difference there
    assert ("`unidepth_v2` (end to end) vs its own stage 0 (pretrained, not fine-tuned): **better** on MAPE, "
            "median APE; no clear difference on ≤20 %.") in text
    assert "(../plots/eval/depth_anything_v2/scatter.png)" in text
    assert "volume_ml_true" in text and "mask_source" in text
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
    assert "metrics/eval" in st["report"]["deps"] and "metrics/compare.json" in st["report"]["deps"]
    assert any("metrics/compare.json" in m for m in st["compare"]["metrics"])
    assert any("metrics/report.md" in o for o in st["report"]["outs"])


def test_per_family_comparisons_and_report_section(tmp_path):
    """Tables carrying `scene`: compare.json gets `by_family.<rig|table>.vs_<other>` with the whole split's
    field names and each group's dish count (rig = every family but table, pooled); the eval JSONs get
    `by_family`; the report shows the rows per family, the diagnostic next to its model, the table family's
    varying camera, and per-family verdicts that never name a diagnostic."""
    from pipeline.evaluate.compare import compare_models
    from pipeline.evaluate.names import DIAG_KIND, DIAG_SUFFIX
    scenes = ["platform", "rails", "deep_bowl", "metal", "table", "table"]
    gt = [60.0, 120.0, 200.0, 300.0, 400.0, 500.0]
    # the model is 5 % off on the rig dishes and 60 % off on the table; stage 0 is 40 % off everywhere;
    # the diagnostic (depth rescaled to the measured ring) is 5 % off everywhere
    spec = {"m": [1.05] * 4 + [1.6] * 2, "m_stage0": [1.4] * 6, f"m{DIAG_SUFFIX}": [1.05] * 6,
            f"m_stage0{DIAG_SUFFIX}": [1.1] * 6, "baseline_area_height": [1.3] * 6, "baseline_mean": [2.0] * 6}
    tables = {n: _table(np.asarray(f), gt).assign(scene=scenes) for n, f in spec.items()}
    tables["m"]["ring_scale_ratio"] = [1.01] * 4 + [1.17] * 2
    for n in ("m", "baseline_area_height"):   # rows that predict a food height
        tables[n]["food_height_mm"] = [10.0, 20.0, 35.0, 20.0, 10.0, 40.0]
        tables[n]["height_mae_mm"] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    eval_dir = tmp_path / "eval"
    kinds = {"m": "fine-tuned (stage 2)", f"m{DIAG_SUFFIX}": DIAG_KIND, "m_stage0": "random init",
             f"m_stage0{DIAG_SUFFIX}": DIAG_KIND, "baseline_area_height": "b", "baseline_mean": "b"}  # report order
    for n, t in tables.items():
        write_results(n, t, eval_dir, extra={"mask_source": "gt_mask", "kind": kinds[n]})
    results = load_results(eval_dir, list(kinds))
    assert {g: v["n"] for g, v in results["m"]["by_family"].items()} == {"rig": 4, "table": 2}
    assert results["m"]["by_family"]["table"]["ring_scale_ratio_median"] == pytest.approx(1.17)
    assert results["m"]["by_family"]["rig"]["volume_mape"] == pytest.approx(0.05)
    plan = comparison_plan(["m"], set(tables), BASELINE_NAMES, SETTINGS, STAGE0_SUFFIX)
    models, families = compare_models(plan, lambda n: tables[n], n_bootstrap=200, seed=0)
    assert families == {"rig": 4, "table": 2}
    given = models["m"]["given"]
    assert set(given) == {"vs_baseline_mean", "vs_baseline_area_height", "vs_stage0", "by_family"}
    assert list(given)[-1] == "by_family"
    for g, n in families.items():
        assert set(given["by_family"][g]) == {"vs_baseline_mean", "vs_baseline_area_height", "vs_stage0"}
        for c in given["by_family"][g].values():
            assert c["n_dishes"] == n and set(c) == set(given["vs_stage0"])
    assert given["by_family"]["rig"]["vs_stage0"]["mape_diff"] == pytest.approx(0.05 - 0.4)
    assert given["by_family"]["table"]["vs_stage0"]["mape_diff"] == pytest.approx(0.6 - 0.4)
    assert given["vs_stage0"]["n_dishes"] == 6   # the whole split keeps its keys
    cmp = {"n_bootstrap": 200, "seed": 0, "models": models, "families": families}
    assert [r["vs"] for r in comparison_rows(cmp)] == ["vs_baseline_mean", "vs_baseline_area_height", "vs_stage0"]
    text = render_report(results, kinds, tmp_path / "report.md", tmp_path / "plots", compare=cmp)
    fam = text.split("## Per scene family")[1]
    assert "### rig families" in fam and "### table family" in fam
    assert "0.20–0.50 m" in fam and "480–700 px" in fam and "without K" in fam
    rig, table = fam.split("### rig families")[1].split("### table family")
    rig_rows = [r.split("`")[1] for r in rig.split("\n\n")[1].splitlines() if r.startswith("| `")]
    assert rig_rows[:2] == ["m", f"m{DIAG_SUFFIX}"]   # the diagnostic next to its model row
    assert "| `m` | fine-tuned (stage 2) | 4 | 0 | 5.0 % |" in rig
    assert "| `m` | fine-tuned (stage 2) | 2 | 0 | 60.0 % |" in table
    assert "- `m`, table: MAPE 60.0 % → 5.0 % rescaled to the measured ring depth" in fam
    assert "- `m` (given masks, rig) vs its own stage 0 (random init): **better** on MAPE" in fam
    assert "- `m` (given masks, table) vs its own stage 0 (random init): **worse** on MAPE" in fam
    assert "vs `m_diag" not in text and f"`m{DIAG_SUFFIX}` (" not in text and "one group" not in text
    heights = text.split("### Height error per true food height")[1].split("\n## ")[0]
    assert "| row | dishes | < 15 mm | 15–30 mm | ≥ 30 mm |" in heights
    assert "| `m` | whole test split | 3.0 (2) | 3.0 (2) | 4.5 (2) |" in heights
    assert "| `m` | table family | 5.0 (1) | – (0) | 6.0 (1) |" in heights
    assert "| `baseline_area_height` | rig families | 1.0 (1) | 3.0 (2) | 3.0 (1) |" in heights
    assert "`m_stage0`" not in heights   # no height predicted: no row


def test_mask_section_and_real_dish_illustration():
    from pipeline.evaluate.report import mask_section
    results = {"m_e2e": {"mask_source": "predicted_depth", "n_dishes": 4, "n_failed": 0, "mask_iou_mean": 0.61,
                         "mask_iou_median": 0.64, "volume_mape": 0.5},
               "m_e2e_head": {"mask_source": "mask_head", "n_dishes": 4, "n_failed": 0, "mask_iou_mean": 0.83,
                              "mask_iou_median": 0.85, "volume_mape": 0.4, "weights_sha256": "abc"},
               "m": {"mask_source": "gt_mask", "n_dishes": 4}}
    real = {"weights_sha256": "abc", "dishes": [{"dish_id": "dish_1", "scene": "plate", "iou_mask_head": 0.7,
                                                 "iou_predicted_depth": 0.5, "iou_rgb_rule": 0.86}]}
    text = "\n".join(mask_section(results, {"m": real}))
    assert "| `m_e2e` | `predicted_depth` | 4 | 0 | 0.610 | 0.640 |" in text
    assert "| `m_e2e_head` | `mask_head` | 4 | 0 | 0.830 | 0.850 |" in text and "`m` |" not in text
    assert "Illustration only: the model never saw a real photo" in text
    assert "| `dish_1` | plate | 0.700 | 0.500 | 0.860 |" in text and "the weights this report scores" in text
    stale = "\n".join(mask_section(results, {"m": {**real, "weights_sha256": "other"}}))
    assert "**other weights** than this report's" in stale
