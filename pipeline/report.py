"""metrics/report.md: one table over every model, its zero-shot start and the baselines.

Built only from the metrics/eval/*.json files (no recomputation), so the report always
agrees with what `dvc metrics show/diff` prints.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import pandas as pd

from pipeline.baselines import BASELINE_NAMES, ORACLE_NAME
from pipeline.io import read_json, write_text

ZEROSHOT_SUFFIX = "_zeroshot"

# (json key, column header, format) - fractions shown as percent
MAIN_COLUMNS: list[tuple[str, str, str]] = [
    ("n_dishes", "n", "int"), ("n_failed", "failed", "int"),
    ("volume_mae_ml", "MAE mL", "f1"), ("volume_mape", "MAPE", "pct"),
    ("volume_median_ape", "median APE", "pct"), ("volume_rmse_ml", "RMSE mL", "f1"),
    ("volume_bias_pct", "bias", "spct"), ("within_10pct", "≤10 %", "pct"), ("within_20pct", "≤20 %", "pct"),
    ("depth_abs_rel", "AbsRel mask", "f3"), ("depth_delta1", "δ1 mask", "f3"),
    ("depth_ring_abs_rel", "AbsRel ring", "f3"), ("height_mae_mm", "height err mm", "f1"),
]
PLOT_FILES = ("scatter.png", "error_hist.png", "error_by_bin.png", "worst_dishes.png")


def evaluated_names(models: Sequence[str]) -> list[tuple[str, str]]:
    """(name, kind) for every row of the report, models first."""
    rows = []
    for m in models:
        rows.append((m, "fine-tuned (stage 2)"))
        rows.append((m + ZEROSHOT_SUFFIX, "zero-shot (stage 0)"))
    rows += [(b, "non-learned baseline") for b in BASELINE_NAMES]
    rows.append((ORACLE_NAME, "oracle: GT depth (ceiling)"))
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


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def summary_frame(results: dict[str, dict]) -> pd.DataFrame:
    """Top-level metrics, one row per name (for the comparison plot and tests)."""
    return pd.DataFrame({n: {k: r.get(k) for k, _, _ in MAIN_COLUMNS} for n, r in results.items()}).T


def render_report(results: dict[str, dict], kinds: dict[str, str], report_path: Path, plots_dir: Path,
                  comparison_png: Path | None = None, params_note: str = "") -> str:
    """Markdown text of the report; plot links relative to the report's folder."""
    here = Path(report_path).parent

    def link(p: Path) -> str:
        return Path(os.path.relpath(Path(p), here)).as_posix()

    names = list(results)
    out = ["# Food volume: evaluation report", ""]
    out.append("Held-out **test** split. Models see only the RGB image and the true K; every model's "
               "depth goes through the same `pipeline.geometry.estimate_volume` with the same true K. "
               "Reference volume: `volume_ml_true` (analytic truth) for synthetic dishes, else the label "
               "`volume_ml` (GT depth through the same geometry). Dishes where the geometry fails on the "
               "predicted depth are counted in *failed* and scored as 0 mL (APE 100 %).")
    if params_note:
        out += ["", params_note]
    out += ["", "## All models and baselines", ""]
    header = ["model", "kind"] + [h for _, h, _ in MAIN_COLUMNS]
    rows = [[f"`{n}`", kinds.get(n, "")] + [_fmt(results[n].get(k), f) for k, _, f in MAIN_COLUMNS]
            for n in names]
    out.append(_md_table(header, rows))
    out += ["", "MAPE / median APE: mean / median of |pred − ref| / ref. Bias: mean of (pred − ref) / ref. "
            "AbsRel, δ1: depth inside the food mask and on the support ring around it. "
            "Height err: mean |food height above its own fitted support plane − GT height| in the mask. "
            f"`{ORACLE_NAME}` feeds the GT depth itself through the same masks and geometry: the "
            "error these masks and this geometry leave even with perfect depth.", ""]

    baselines = [n for n in names if n in BASELINE_NAMES]
    learned = [n for n in names if n not in BASELINE_NAMES and n != ORACLE_NAME
               and not n.endswith(ZEROSHOT_SUFFIX)]
    if baselines and learned:
        best_base = min(baselines, key=lambda b: results[b].get("volume_mape") or float("inf"))
        bm = results[best_base].get("volume_mape")
        out += ["## Did depth help?", ""]
        for m in learned:
            mm, zm = results[m].get("volume_mape"), results.get(m + ZEROSHOT_SUFFIX, {}).get("volume_mape")
            verdict = "beats" if (mm is not None and bm is not None and mm < bm) else "does NOT beat"
            om = results.get(ORACLE_NAME, {}).get("volume_mape")
            out.append(f"- `{m}`: MAPE {_fmt(mm, 'pct')} {verdict} the best non-learned baseline "
                       f"`{best_base}` ({_fmt(bm, 'pct')}); zero-shot start {_fmt(zm, 'pct')}; "
                       f"GT-depth ceiling {_fmt(om, 'pct')}.")
        out.append("")

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
    for n in names:
        links = [f"[{f.removesuffix('.png').replace('_', ' ')}]({link(Path(plots_dir) / n / f)})"
                 for f in PLOT_FILES if not (n in BASELINE_NAMES and f == "worst_dishes.png")]
        out.append(f"- `{n}`: " + " · ".join(links))
    out.append("")
    return "\n".join(out)


def write_report(report_path: Path, text: str) -> None:
    write_text(report_path, text)
