"""metrics/report.md: every model (fine-tuned and stage 0, given masks and end to end), the
baselines, the oracle, the ring-rescaled diagnostics, and paired comparisons with uncertainty, on the
whole test split and per scene-family group (rig families pooled, table), with the height error per
family and true food height.

Built only from metrics/eval/*.json and metrics/compare.json (no recomputation), so the report
always agrees with what `dvc metrics show/diff` prints.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from pipeline.evaluate.compare import METRICS, verdict
from pipeline.evaluate.names import (
    BASELINE_NAMES,
    DIAG_KIND,
    DIAG_SUFFIX,
    DIRECT_KIND,
    DIRECT_SUFFIX,
    END_TO_END,
    END_TO_END_HEAD,
    FAMILY_GROUPS,
    GIVEN,
    HEAD_SUFFIX,
    MASS_BASELINE_MEAN,
    ORACLE_NAME,
    RIG,
    SETTINGS,
    STAGE0_SUFFIX,
    TABLE,
    distilled_kind,
    is_diagnostic,
    stage0_kind,
    zero_shot_kind,
)
from pipeline.io import read_json, write_text

SETTING_LABEL = {GIVEN: "given masks", END_TO_END: "end to end", END_TO_END_HEAD: "end to end, mask head"}

# (json key, column header, format) - fractions shown as percent
MAIN_COLUMNS: list[tuple[str, str, str]] = [
    ("n_dishes", "n", "int"), ("n_failed", "failed", "int"),
    ("volume_mae_ml", "MAE mL", "f1"), ("volume_mape", "MAPE", "pct"),
    ("volume_median_ape", "median APE", "pct"), ("volume_rmse_ml", "RMSE mL", "f1"),
    ("volume_bias_pct", "bias", "spct"), ("within_10pct", "≤10 %", "pct"), ("within_20pct", "≤20 %", "pct"),
    ("depth_abs_rel", "AbsRel mask", "f3"), ("depth_delta1", "δ1 mask", "f3"),
    ("depth_ring_abs_rel", "AbsRel ring", "f3"), ("ring_scale_ratio_median", "ring scale", "f3"),
    ("height_mae_mm", "height err mm", "f1"),
    ("focal_rel_err", "focal err", "pct"),   # models that predict their K (the volume uses the true K)
]
PLOT_FILES = ("scatter.png", "error_hist.png", "error_by_bin.png", "worst_dishes.png")
METRIC_LABEL = {"volume_mape": "MAPE", "volume_median_ape": "median APE", "within_20pct": "≤20 %"}
# One family group's columns (eval JSON `by_family.<group>` / `height_bins.<group>.<bin>`)
FAMILY_COLUMNS: list[tuple[str, str, str]] = [
    ("n", "n", "int"), ("n_failed", "failed", "int"), ("volume_mape", "MAPE", "pct"),
    ("volume_median_ape", "median APE", "pct"), ("volume_bias_pct", "bias", "spct"), ("within_20pct", "≤20 %", "pct"),
    ("depth_ring_abs_rel", "AbsRel ring", "f3"), ("ring_scale_ratio_median", "ring scale", "f3"),
    ("height_mae_mm", "height err mm", "f1"),
]
SUPPORT_COLUMNS = [c for c in FAMILY_COLUMNS if c[0] in ("n", "volume_mape", "volume_median_ape", "volume_bias_pct",
                                                        "height_mae_mm")]
FAMILY_LABEL = {RIG: "rig families (every scene family but `table`, pooled: the copy of the real experiment)",
                TABLE: "table family", "all": "whole test split"}
# How the synthetic generator draws the table family's camera (pipeline/data/views.py, table_camera): per dish.
TABLE_CAMERA = "camera distance 0.20–0.50 m and focal length 480–700 px (at 640 px width)"
# Published mass MAE as % of the mean test mass on Nutrition5k: references, not measured here.
PUBLISHED: list[tuple[str, float, str]] = [
    ("always predict the train mean", 0.585, "Nutrition5k paper, Table 3"),
    ("2D direct prediction, RGB", 0.188, "Nutrition5k paper, Table 3"),
    ("2D direct, depth as a 4th channel", 0.189, "Nutrition5k paper, Table 3"),
    ("volume from the measured depth + CNN", 0.137, "Nutrition5k paper, Table 3"),
    ("DPF-Nutrition, RGB only (predicted depth fused with RGB)", 0.106, "DPF-Nutrition paper"),
    ("DPF reproduced with Depth-Anything-V2 as the depth", 0.154, "a public reproduction"),
]


def split_note(split: dict | None) -> str:
    """One line naming the split the report scored on (metrics/split.json of the split stage): its
    kind, sizes and, on Nutrition5k, the test dishes with a train dish captured minutes before or
    after (near-duplicates a test score can rest on)."""
    if not split:
        return "Split: not recorded (metrics/split.json missing: re-run the split stage)."
    n = split.get("n_dishes", {})
    sizes = f"{n.get('train', '?')} train, {n.get('val', '?')} val, {n.get('test', '?')} test dishes"
    mode = split.get("split", "?")
    if split.get("data_source") != "nutrition5k":
        return f"Split: `{mode}` (shuffled by dish with data.seed): {sizes}; {split.get('note', '')}."
    how = {"release": "the release's own test ids",
           "session": f"whole capture sessions (a gap over {split.get('sessions', {}).get('gap_min', '?')} min "
                      "starts one) at the release's test share"}.get(mode, mode)
    near = split.get("test_with_train_within_min") or {}
    within = ", ".join(f"{v} within {w} min" for w, v in near.items())
    return (f"Split: Nutrition5k `split.nutrition5k: {mode}` ({how}): {sizes}. Test dishes with a train dish "
            f"captured nearby (often the same food): {within or 'not counted'}.")


def evaluated_names(models: Sequence[str], model_cfg: dict | None = None,
                    zero_shot: Sequence[str] = (), students: Mapping[str, str] | None = None
                    ) -> list[tuple[str, str]]:
    """(name, kind) for every row of the report, models first, each in both settings followed by its
    ring-rescaled diagnostic (given masks; never a model row), then the distilled students and the same
    students fine-tuned directly (`students`: student -> teacher), then the zero-shot models
    (eval.zero_shot: "pretrained, not fine-tuned")."""
    rows = []
    for m in models:
        s0 = stage0_kind((model_cfg or {}).get(m))
        for suffix in (*SETTINGS.values(), HEAD_SUFFIX):
            rows.append((m + suffix, "fine-tuned (stage 2)"))
        rows.append((m + DIAG_SUFFIX, DIAG_KIND))
        for suffix in SETTINGS.values():
            rows.append((m + STAGE0_SUFFIX + suffix, s0))
        rows.append((m + STAGE0_SUFFIX + DIAG_SUFFIX, DIAG_KIND))
    for st, teacher in (students or {}).items():
        rows += [(st + suffix, distilled_kind(teacher)) for suffix in SETTINGS.values()]
        rows += [(st + DIRECT_SUFFIX + suffix, DIRECT_KIND) for suffix in SETTINGS.values()]
    for z in zero_shot:
        rows += [(z + suffix, zero_shot_kind((model_cfg or {}).get(z))) for suffix in SETTINGS.values()]
    rows += [(b, "non-learned baseline") for b in BASELINE_NAMES]
    rows += [(ORACLE_NAME + suffix, "oracle: measured depth (ceiling)") for suffix in SETTINGS.values()]
    return rows


def load_results(eval_dir: Path, names: Sequence[str]) -> dict[str, dict]:
    """Every metrics/eval/<name>.json; ValueError naming the first missing one."""
    out = {}
    for name in names:
        path = Path(eval_dir) / f"{name}.json"
        if not path.is_file():
            raise ValueError(f"{path}: metrics missing (run `dvc repro` for evaluate/baselines first)")
        out[name] = read_json(path)
    return out


def _fmt(v: object, how: str) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    v = float(v)  # type: ignore[arg-type]
    return {"int": f"{int(v)}", "f1": f"{v:.1f}", "f3": f"{v:.3f}", "pct": f"{100 * v:.1f} %",
            "spct": f"{100 * v:+.1f} %"}[how]


def _fmt_p(p: float | None) -> str:
    """A p-value as read, not as rounded: 3 significant digits, '< 1e-4' below that."""
    if p is None:
        return "–"
    return "< 1e-4" if p < 1e-4 else f"{p:.3g}"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def summary_frame(results: dict[str, dict]) -> pd.DataFrame:
    """Top-level metrics, one row per name (for the comparison plot and tests)."""
    return pd.DataFrame({n: {k: r.get(k) for k, _, _ in MAIN_COLUMNS} for n, r in results.items()}).T


def _ci(c: dict, short: str) -> str:
    """'−12.3 [−20.1, −4.0]' in percentage points."""
    d, lo, hi = (c.get(f"{short}_{x}" if short else x) for x in ("diff", "ci_low", "ci_high"))
    if d is None:
        return "–"
    return f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def comparison_rows(compare: dict, family: str | None = None) -> list[dict]:
    """Flatten metrics/compare.json: one dict per (model, setting, opponent) with verdicts, on the whole
    split or (`family`) within one family group (`by_family.<family>`)."""
    out = []
    for model, by_setting in (compare.get("models") or {}).items():
        for setting, by_key in by_setting.items():
            by_vs = by_key if family is None else (by_key.get("by_family") or {}).get(family) or {}
            for vs, c in by_vs.items():
                if not vs.startswith("vs_"):
                    continue
                verdicts = {k: verdict(k, c.get(f"{short}_ci_low", float("nan")),
                                       c.get(f"{short}_ci_high", float("nan")))
                            for k, short in METRICS.items()}
                out.append({"model": model, "setting": setting, "vs": vs, "c": c, "verdicts": verdicts,
                            "family": family})
    return out


def _verdict_text(verdicts: dict[str, str]) -> str:
    """'better on MAPE; no clear difference on median APE, ≤20 %' (interval-based verdicts)."""
    parts = []
    for word in ("better", "worse", "no clear difference"):
        keys = [METRIC_LABEL[k] for k, v in verdicts.items() if v == word]
        if keys:
            parts.append(f"**{word}** on {', '.join(keys)}" if word != "no clear difference"
                         else f"{word} on {', '.join(keys)}")
    return "; ".join(parts)


def render_report(results: dict[str, dict], kinds: dict[str, str], report_path: Path, plots_dir: Path,
                  comparison_png: Path | None = None, params_note: str = "", compare: dict | None = None,
                  paired_png: Path | None = None, mass: dict[str, dict] | None = None,
                  real_dishes: dict[str, dict] | None = None, speed: dict[str, dict] | None = None) -> str:
    """Markdown text of the report; plot links relative to the report's folder. `real_dishes`: per model,
    the food-mask head on real photos vs hand annotations (`real_dish_note`), an illustration; `speed`:
    per distilled student, its metrics/eval/<student>_speed.json (section *Distillation*)."""
    here = Path(report_path).parent

    def link(p: Path) -> str:
        return Path(os.path.relpath(Path(p), here)).as_posix()

    names = list(results)
    out = ["# Food volume: evaluation report", ""]
    out.append("Held-out **test** split. The models see only the RGB image and the true K; the measured "
               "depth is read only to score. Two settings, named by `mask_source`: **given masks** "
               "(`gt_mask`: the synthetic ground-truth masks; on Nutrition5k masks read from the RGB image "
               "alone: `rgb_rule`, a colour rule, or `sam2_rgb`, SAM 2 prompted by that rule's boxes; the "
               "masks stage's own masks are cut from the measured depth and are never used for predictions) and "
               "**end to end** (`predicted_depth`: "
               "the mask is cut from the model's own predicted depth by the code `python -m pipeline.predict` "
               "runs; `mask_head`, rows `*_e2e_head`: the mask is the fine-tuned model's own food-mask head's, "
               "which `predict` uses when the weights carry one). Every model's depth goes through the same "
               "geometry with the same true K (a model "
               "that predicts its own camera is scored with the true K too; its focal error is the *focal err* "
               "column). Rows *pretrained, not fine-tuned* are models only evaluated, never trained "
               "(`eval.zero_shot`). Reference "
               "volume: `volume_ml_true` (analytic truth) for synthetic dishes, else the label `volume_ml` "
               "(measured depth through the same geometry). Dishes where the geometry fails on the predicted "
               "depth (or end to end, no food is found) are counted in *failed* and scored as 0 mL (APE 100 %).")
    if params_note:
        out += ["", params_note]
    out += ["", "## All models and baselines", ""]
    header = ["model", "kind", "masks"] + [h for _, h, _ in MAIN_COLUMNS]
    sources = {n: str(results[n].get("mask_source", "?")) for n in names}
    rows = [[f"`{n}`", results[n].get("kind") or kinds.get(n, ""), f"`{sources[n].split(':')[0]}`"]
            + [_fmt(results[n].get(k), f) for k, _, f in MAIN_COLUMNS] for n in names]
    out.append(_md_table(header, rows))
    for reason in dict.fromkeys(v.split(":", 1)[1].strip() for v in sources.values() if v.startswith("unavailable:")):
        out += ["", f"`unavailable`: {reason}."]
    out += ["", "MAPE / median APE: mean / median of |pred − ref| / ref. Bias: mean of (pred − ref) / ref. "
            "AbsRel, δ1: depth inside the label's mask and on the support ring around it (scoring only). "
            "Ring scale: median over dishes of each dish's median ratio predicted / measured depth on that ring "
            "(1 = the model knows the distance; a volume scales as its cube). "
            "Height err: mean |food height above its own fitted support plane − measured height| in that mask. "
            f"`{ORACLE_NAME}` feeds the measured depth itself through the same masks and geometry: the "
            f"error these masks and this geometry leave even with perfect depth. `*{DIAG_SUFFIX}` rows are "
            "**diagnostics that read the measured depth**, never model rows and never in a verdict: the "
            "model's predicted depth divided by its per-dish ring scale, then the same given masks and geometry "
            "(see *Per scene family*).", ""]

    crow = comparison_rows(compare or {})
    if crow:
        c0 = compare or {}
        out += ["## Paired comparisons (same dishes)", "",
                f"Difference model − other in percentage points, with a paired bootstrap 95 % interval "
                f"({c0.get('n_bootstrap', '?')} resamples of the dishes, seed {c0.get('seed', '?')}) and a "
                "two-sided Wilcoxon signed-rank p on the per-dish APE. Negative MAPE / median APE and "
                "positive ≤20 % favour the model. A verdict says *better* or *worse* only where the "
                "interval excludes zero. Baselines always use the given masks (`baseline_mean` none).", ""]
        header = ["model", "masks", "vs", "n", "Δ MAPE", "Δ median APE", "Δ ≤20 %", "Wilcoxon p"]
        rows = [[f"`{r['model']}`", SETTING_LABEL.get(r["setting"], r["setting"]),
                 f"`{r['vs'].removeprefix('vs_')}`", str(r["c"].get("n_dishes", "")),
                 *[_ci(r["c"], short) for short in METRICS.values()],
                 _fmt_p(r["c"].get("wilcoxon_p"))]
                for r in crow]
        out.append(_md_table(header, rows))
        out += ["", "## Verdict", ""]
        for r in crow:
            out.append(f"- `{r['model']}` ({SETTING_LABEL.get(r['setting'], r['setting'])}) vs "
                       f"{_other_label(r, kinds)}: {_verdict_text(r['verdicts'])}.")
        out.append("")

    if speed:
        out += distill_section(speed, compare or {})

    out += mask_section(results, real_dishes)
    out += family_section(results, kinds, compare or {})

    if mass:
        out += mass_section(mass, compare)

    bin_names = []
    for r in results.values():
        for b in (r.get("bins") or {}):
            if b not in bin_names:
                bin_names.append(b)
    if bin_names:
        out += ["## MAPE per reference-volume bin (mL), dish count in brackets", ""]
        rows = []
        for n in names:
            bins = results[n].get("bins") or {}
            rows.append([f"`{n}`"] + [f"{_fmt(bins.get(b, {}).get('volume_mape'), 'pct')} "
                                      f"({bins.get(b, {}).get('n', 0)})" for b in bin_names])
        out.append(_md_table(["model"] + bin_names, rows))
        out.append("")

    out += ["## Plots", ""]
    if comparison_png is not None:
        out += [f"![MAPE per model]({link(comparison_png)})", ""]
    if paired_png is not None and crow:
        out += [f"![paired differences]({link(paired_png)})", ""]
    for n in names:
        if not results[n].get("n_dishes"):
            continue
        links = [f"[{f.removesuffix('.png').replace('_', ' ')}]({link(Path(plots_dir) / n / f)})"
                 for f in PLOT_FILES
                 if not ((n in BASELINE_NAMES or is_diagnostic(n)) and f == "worst_dishes.png")]
        out.append(f"- `{n}`: " + " · ".join(links))
    out.append("")
    return "\n".join(out)


def distill_section(speed: dict[str, dict], compare: dict) -> list[str]:
    """Markdown lines of the distillation part, per student (`speed`: student -> its
    metrics/eval/<student>_speed.json): the distilled student against its teacher and against the same
    student fine-tuned directly (paired, with intervals; a reference it does not beat is said so), and each
    one's inference ms per image and peak memory, measured in one run."""
    out = ["## Distillation: students against their teacher and the same student fine-tuned directly", "",
           "Each student (`distill.students`) trains twice from the same start, seed and schedule: with the "
           f"labels only (`<student>{DIRECT_SUFFIX}`) and with its fine-tuned teacher's depth added "
           "(`<student>`, which also sees `distill.n_unlabelled` unlabelled dishes, so more steps). Speed and "
           "memory were measured in one process on the same test images: compare them within a table, not "
           "across machines.", ""]
    for student, sp in speed.items():
        teacher = sp.get("teacher", "?")
        out += [f"### `{student}` (teacher `{teacher}`)", ""]
        for setting in SETTINGS:
            by_vs = ((compare.get("models") or {}).get(student) or {}).get(setting) or {}
            refs = ((teacher, "its teacher"), (student + DIRECT_SUFFIX, "the same student fine-tuned directly"))
            for ref, what in refs:
                ref += SETTINGS[setting]
                c = by_vs.get(f"vs_{ref}")
                if not c:
                    continue
                verdicts = {k: verdict(k, c.get(f"{sh}_ci_low", float("nan")), c.get(f"{sh}_ci_high", float("nan")))
                            for k, sh in METRICS.items()}
                beats = verdicts["volume_mape"] == "better"
                out.append(f"- {SETTING_LABEL[setting]}: `{student}` vs {what} (`{ref}`), {c.get('n_dishes')} dishes: "
                           f"Δ MAPE {_ci(c, 'mape')} pp, Δ median APE {_ci(c, 'median_ape')} pp; "
                           f"{_verdict_text(verdicts)}" + ("." if beats else f" — **does not beat** `{ref}` on MAPE."))
        rows = [[f"`{n}`", "×".join(str(v) for v in r.get("size", [])), _fmt(r.get("params_m"), "f3"),
                 _fmt(r.get("weights_mb"), "f1"), _fmt(r.get("infer_ms_median"), "f1"),
                 _fmt(r.get("peak_mem_mb"), "f1")] for n, r in (sp.get("models") or {}).items()]
        out += ["", f"Inference per image ({sp.get('n_images')} test images, {sp.get('device', '?')}): "
                "the forward pass on one image at the row's input size, median ms; peak memory torch allocates in "
                "a pass, above the loaded weights.", "",
                _md_table(["row", "input H×W", "params M", "weights MB", "ms / image", "peak MB"], rows), ""]
    return out


def _other_label(r: dict, kinds: dict[str, str]) -> str:
    """The opponent of a comparison row as the verdict names it."""
    other = r["vs"].removeprefix("vs_")
    return (f"its own stage 0 ({kinds.get(r['model'] + STAGE0_SUFFIX, 'stage 0')})" if other == "stage0"
            else f"`{other}`")


def _range(g: dict, key: str, fmt: str) -> str | None:
    """'lo–hi' of a group's `<key>_min` / `<key>_max`, None where unknown."""
    lo, hi = g.get(f"{key}_min"), g.get(f"{key}_max")
    return None if lo is None or hi is None else f"{fmt.format(lo)}–{fmt.format(hi)}"


def family_section(results: dict[str, dict], kinds: dict[str, str], compare: dict) -> list[str]:
    """Markdown lines of the per-family part: the metrics of every row per family group (rig families
    pooled, table), the ring-rescaled diagnostics next to their model rows, the paired comparisons and
    verdicts per group (diagnostics never among them), and the height error per true food-height bin."""
    out = ["## Per scene family: rig families and table", ""]
    fam_rows = {g: [n for n in results if g in (results[n].get("by_family") or {})] for g in FAMILY_GROUPS}
    if not any(fam_rows.values()):
        out += ["No scene families here: the per-dish tables carry no `scene` (Nutrition5k, or metrics written "
                "before scenes were recorded), so everything is one group, the whole test split above.", ""]
    else:
        table = next((results[n]["by_family"][TABLE] for n in fam_rows[TABLE]), {})
        seen = [x for x in (_range(table, "fx_px", "{:.0f}") and f"fx {_range(table, 'fx_px', '{:.0f}')} px",
                            _range(table, "camera_distance_m", "{:.2f}")
                            and f"camera distance {_range(table, 'camera_distance_m', '{:.2f}')} m") if x]
        out += [f"`{RIG}`: every synthetic scene family except `{TABLE}` (platform, rails, deep_bowl, metal), "
                "pooled: one overhead camera at one distance and focal length, as on Nutrition5k, the copy of the "
                f"real experiment. `{TABLE}`: the synthetic generator draws the {TABLE_CAMERA} **per dish**"
                + (f" (these test dishes: {', '.join(seen)})" if seen else "") + ". A model without K "
                "(Depth-Anything takes the image alone) cannot know the metric scale of such a photo from the image: "
                "the same picture fits a nearer camera with a shorter focal length. The ring-rescaled diagnostic "
                "quantifies that: it divides the predicted depth by its median ratio to the measured depth on the "
                "support ring, so the scale is read from the measured depth (a **diagnostic, never a model row**, "
                "in no verdict). The rescaled row much better than the model row: the model does not know the "
                "distance. Still bad: it does not see the food.", ""]
        for g in FAMILY_GROUPS:
            if not fam_rows[g]:
                continue
            rows = [[f"`{n}`", results[n].get("kind") or kinds.get(n, "")]
                    + [_fmt(results[n]["by_family"][g].get(k), f) for k, _, f in FAMILY_COLUMNS] for n in fam_rows[g]]
            header = ["row", "kind"] + [h for _, h, _ in FAMILY_COLUMNS]
            out += [f"### {FAMILY_LABEL[g]}", "", _md_table(header, rows), ""]
        lines = []
        for n in results:
            diag = n + DIAG_SUFFIX
            for g in FAMILY_GROUPS:
                a, d = ((results.get(x, {}).get("by_family") or {}).get(g) for x in (n, diag))
                if a and d:
                    lines.append(f"- `{n}`, {g}: MAPE {_fmt(a.get('volume_mape'), 'pct')} → "
                                 f"{_fmt(d.get('volume_mape'), 'pct')} rescaled to the measured ring depth, median "
                                 f"APE {_fmt(a.get('volume_median_ape'), 'pct')} → "
                                 f"{_fmt(d.get('volume_median_ape'), 'pct')} (ring scale "
                                 f"{_fmt(a.get('ring_scale_ratio_median'), 'f3')}).")
        if lines:
            out += ["What the distance costs (model row → its diagnostic, same dishes):", "", *lines, ""]
        crow = [r for g in FAMILY_GROUPS for r in comparison_rows(compare, g)]
        if crow:
            out += ["### Paired comparisons per family", "",
                    "As in *Paired comparisons*, within each family group (same dishes, same bootstrap).", ""]
            header = ["model", "masks", "family", "vs", "n", "Δ MAPE", "Δ median APE", "Δ ≤20 %", "Wilcoxon p"]
            rows = [[f"`{r['model']}`", SETTING_LABEL.get(r["setting"], r["setting"]), r["family"],
                     f"`{r['vs'].removeprefix('vs_')}`", str(r["c"].get("n_dishes", "")),
                     *[_ci(r["c"], short) for short in METRICS.values()], _fmt_p(r["c"].get("wilcoxon_p"))]
                    for r in crow]
            out += [_md_table(header, rows), ""]
            out += [f"- `{r['model']}` ({SETTING_LABEL.get(r['setting'], r['setting'])}, {r['family']}) vs "
                    f"{_other_label(r, kinds)}: {_verdict_text(r['verdicts'])}." for r in crow]
            out.append("")
    out += height_bins_section(results)
    out += support_section(results)
    return out


def given_mask_rows(results: dict[str, dict]) -> dict[str, dict]:
    """The rows scored on given masks: every row but the end-to-end ones (`_e2e`, `_e2e_head`)."""
    return {n: r for n, r in results.items() if not n.endswith((SETTINGS[END_TO_END], HEAD_SUFFIX))}


def support_section(results: dict[str, dict]) -> list[str]:
    """Given-mask rows per what the label's food stands on (eval JSON `by_support`): the volume
    geometry measures the food above a plane fitted on a ring round the mask, so the oracle row says
    how far that geometry itself reaches on each kind (a bowl's wall is not a plane)."""
    rows = []
    for n, r in given_mask_rows(results).items():
        for kind, g in (r.get("by_support") or {}).items():
            rows.append([f"`{n}`", f"`{kind}`"] + [_fmt(g.get(k), f) for k, _, f in SUPPORT_COLUMNS])
    if not rows:
        return []
    return ["### Per support (given masks)", "",
            "What the label's food stands on (the masks stage's `support`). Every row measures the food above "
            "the plane fitted on a ring round its mask (as `predict` does); the label of food in a bowl is "
            "measured above the bowl's fitted inner surface, which that ring (the bowl's wall) does not "
            "give, so the oracle row is the geometry's own reach on each kind.", "",
            _md_table(["row", "support"] + [h for _, h, _ in SUPPORT_COLUMNS], rows), ""]


REAL_DISHES_SUFFIX = "_mask_head_real"   # metrics/eval/<model>_mask_head_real.json (bench/bench_mask_head_real.py)


def mask_section(results: dict[str, dict], real_dishes: dict[str, dict] | None = None) -> list[str]:
    """Markdown lines on the end-to-end food masks: each end-to-end row's mask against the given masks
    on the test split (IoU), and the food-mask head on the real sample dishes (an illustration)."""
    rows = [[f"`{n}`", f"`{str(r.get('mask_source', '?')).split(':')[0]}`", _fmt(r.get("n_dishes"), "int"),
             _fmt(r.get("n_failed"), "int"), _fmt(r.get("mask_iou_mean"), "f3"), _fmt(r.get("mask_iou_median"), "f3"),
             _fmt(r.get("volume_mape"), "pct"), _fmt(r.get("volume_median_ape"), "pct")]
            for n, r in results.items() if r.get("mask_iou_mean") is not None]
    out: list[str] = []
    if rows:
        out += ["## Food masks end to end", "",
                "Each end-to-end row's food mask against the given masks of the same test dishes (IoU, read only to "
                "score): `predicted_depth` is the cut from the model's own predicted depth, `mask_head` the fine-tuned "
                "model's food-mask head (trained on the masks stage's masks of the train split, cut from the measured "
                "depth), `oracle_gt_depth_e2e` the same cut on the measured depth. A dish with no food found counts "
                "IoU 0.", "",
                _md_table(["row", "masks", "n", "failed", "IoU mean", "IoU median", "MAPE", "median APE"], rows), ""]
    for model, real in (real_dishes or {}).items():
        out += real_dish_lines(model, real, results.get(model + HEAD_SUFFIX) or {})
    return out


def real_dish_lines(model: str, real: dict, head_row: dict) -> list[str]:
    """The food-mask head on the real sample dishes vs hand annotations (bench/bench_mask_head_real.py):
    an illustration, never a score (two photos, and the model never saw a real one)."""
    dishes = real.get("dishes") or []
    if not dishes:
        return []
    same = real.get("weights_sha256") and real.get("weights_sha256") == head_row.get("weights_sha256")
    where = ("the weights this report scores" if same else
             f"**other weights** than this report's (`{str(real.get('weights_sha256'))[:12]}`; re-run "
             "`python bench/bench_mask_head_real.py` after training)")
    rows = [[f"`{d.get('dish_id')}`", str(d.get("scene", "")),
             *[_fmt(d.get(k), "f3") for k in ("iou_mask_head", "iou_predicted_depth", "iou_rgb_rule")]] for d in dishes]
    return [f"### Real dishes, `{model}`: an illustration", "",
            f"**Illustration only: the model never saw a real photo** (trained on synthetic dishes). The food-mask "
            f"head's mask on the {len(dishes)} real Nutrition5k sample dishes against hand annotations "
            "(`tests/data/n5k_annotations/`), beside the cut from the predicted depth and the RGB colour rule (the "
            f"given masks on Nutrition5k); computed by `bench/bench_mask_head_real.py` on {where}.", "",
            _md_table(["dish", "scene", "IoU mask head", "IoU depth cut", "IoU colour rule"], rows), ""]


def height_bins_section(results: dict[str, dict]) -> list[str]:
    """Height error (mm) per true mean food height bin and family group, for the given-mask rows that
    predict a food height (models, their diagnostics, area × height, the oracle)."""
    rows, bins = [], []
    for n, r in given_mask_rows(results).items():
        for g, by_bin in (r.get("height_bins") or {}).items():
            if not any((v or {}).get("height_mae_mm") is not None for v in by_bin.values()):
                continue
            bins += [b for b in by_bin if b not in bins]
            rows.append((n, g, by_bin))
    if not rows:
        return []
    out = ["### Height error per true food height (mm), given masks", "",
           "Mean |predicted − measured food height| in the label's mask (mm), by the dish's true mean food height "
           "(measured depth above its fitted support), dish count in brackets; `baseline_area_height` predicts "
           "its one train-mean height everywhere.", ""]
    table = [[f"`{n}`", FAMILY_LABEL.get(g, g).split(" (")[0]]
             + [f"{_fmt((by_bin.get(b) or {}).get('height_mae_mm'), 'f1')} ({(by_bin.get(b) or {}).get('n', 0)})"
                for b in bins] for n, g, by_bin in rows]
    out += [_md_table(["row", "dishes"] + [b.replace("lt", "< ").replace("ge", "≥ ").replace("_", "–") + " mm"
                                           for b in bins], table), ""]
    return out


def mass_section(mass: dict[str, dict], compare: dict | None = None) -> list[str]:
    """Markdown lines of the mass table (rows of pipeline.evaluate.mass), its paired comparisons
    and the published Nutrition5k figures (external references, not measured here)."""
    out = ["## Mass (g)", "",
           "Mass = density × volume, both density models fitted on the train split. MAE % of mean = mass MAE "
           "/ mean true mass of the scored dishes, as the Nutrition5k papers report it. *kept*: the dishes the "
           "volume rows score (suspect dishes left out); *all*: every test dish with a mass, suspect ones "
           "included, as the papers scored them (dropped = suspect dishes the kept columns leave out). "
           "Failed volumes count as 0 g.", ""]
    header = ["row", "kind", "density", "masks", "n kept", "failed", "MAE g", "MAE % of mean", "MAPE",
              "n all (dropped)", "MAE % of mean, all", "compare with (published)"]
    rows = [[f"`{n}`", str(r.get("kind", "")), str(r.get("density_source", "")),
             f"`{str(r.get('mask_source', '?')).split(':')[0]}`", _fmt(r.get("n_dishes"), "int"),
             _fmt(r.get("n_failed"), "int"), _fmt(r.get("mass_mae_g"), "f1"),
             _fmt(r.get("mass_mae_pct_of_mean"), "pct"),
             _fmt(r.get("mass_mape"), "pct"), f"{_fmt(r.get('n_all'), 'int')} ({_fmt(r.get('n_dropped'), 'int')})",
             _fmt(r.get("mass_mae_pct_of_mean_all"), "pct"), published_row(n)] for n, r in mass.items()]
    out += [_md_table(header, rows), ""]
    pairs = [(m, st, key, c) for m, by_s in ((compare or {}).get("mass") or {}).items()
             for st, by_key in by_s.items() for key, c in by_key.items()]
    if pairs:
        out += ["Paired differences of MAE % of mean (percentage points; bootstrap 95 % interval, Wilcoxon p on "
                "per-dish |error|); negative favours the first row.", ""]
        rows = [[f"`{m}`", SETTING_LABEL.get(st, st), key.replace("_vs_", " vs "), str(c.get("n_dishes", "")),
                 _ci({k.removeprefix("mae_pct_of_mean_"): v for k, v in c.items()}, ""), _fmt_p(c.get("wilcoxon_p")),
                 str(c.get("n_dishes_all", "")),
                 _ci({k.removeprefix("mae_pct_of_mean_").removesuffix("_all"): v for k, v in c.items()
                      if k.endswith("_all")}, ""), _fmt_p(c.get("wilcoxon_p_all"))]
                for m, st, key, c in pairs]
        out += [_md_table(["model", "volume", "rows", "n kept", "Δ MAE % kept", "p", "n all", "Δ MAE % all", "p all"],
                          rows), ""]
    out += ["Published mass MAE as % of the mean test mass on Nutrition5k: **external references, not "
            "measured here** (other data pipelines, other splits of the same release).", ""]
    out += [_md_table(["method (published)", "MAE % of mean", "source"],
                      [[name, f"{100 * v:.1f} %", src] for name, v, src in PUBLISHED]), ""]
    return out


def published_row(name: str) -> str:
    """Which published figure a measured row should be compared with."""
    if name == MASS_BASELINE_MEAN:
        return "train mean 58.5 %"
    if "oracle_measured" in name:
        return "measured depth + CNN 13.7 % (depth 4th channel 18.9 %)"
    if name.endswith("_e2e"):
        return "RGB only: DPF 10.6 %, DPF w/ DAv2 15.4 %, 2D RGB 18.8 %"
    return "RGB only (+ given masks): 2D RGB 18.8 %, DPF 10.6 %"


def write_report(report_path: Path, text: str) -> None:
    write_text(report_path, text)
