"""Evaluation figures (matplotlib PNG, written atomically).

People look at these rather than read numbers: where the model over/under-estimates,
how the error depends on the dish size, and what the depth looks like on the worst dishes.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline.evaluate.metrics import bin_labels  # noqa: E402
from pipeline.io import atomic_write  # noqa: E402


def save_figure(fig: plt.Figure, path: str | Path) -> None:
    with atomic_write(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_scatter(table: pd.DataFrame, path: str | Path, title: str) -> None:
    """Predicted vs reference volume with the identity line and a +-20 % band."""
    fig, ax = plt.subplots(figsize=(5, 5))
    gt = table["volume_ml_gt"].to_numpy(float)
    pred = table["volume_ml_pred"].to_numpy(float)
    failed = table["failed"].astype(bool).to_numpy()
    hi = float(max(np.nanmax(gt, initial=1.0), np.nanmax(pred, initial=1.0))) * 1.05
    xs = np.array([0.0, hi])
    ax.fill_between(xs, 0.8 * xs, 1.2 * xs, color="tab:green", alpha=0.15, label="±20 %")
    ax.plot(xs, xs, "k--", lw=1, label="y = x")
    ax.scatter(gt[~failed], pred[~failed], s=14, alpha=0.8, label="dishes")
    if failed.any():
        ax.scatter(gt[failed], pred[failed], s=20, marker="x", color="tab:red",
                   label=f"failed ({int(failed.sum())}, scored 0 mL)")
    ax.set(xlim=(0, hi), ylim=(0, hi), xlabel="reference volume (mL)", ylabel="predicted volume (mL)",
           title=title)
    ax.legend(loc="upper left", fontsize=8)
    save_figure(fig, path)


def plot_error_hist(table: pd.DataFrame, path: str | Path, title: str) -> None:
    """Histogram of the signed relative volume error (%), bias marked."""
    fig, ax = plt.subplots(figsize=(6, 4))
    rel = 100.0 * table["rel_err"].to_numpy(float)
    rel = rel[np.isfinite(rel)]
    # rounded: errors equal but for float noise (one scale on every dish) would leave no room for 30 bins
    ax.hist(np.round(np.clip(rel, -200, 200), 6), bins=30, color="tab:blue", alpha=0.8)
    ax.axvline(0, color="k", lw=1)
    if rel.size:
        ax.axvline(float(np.mean(rel)), color="tab:red", ls="--", lw=1.5,
                   label=f"bias {np.mean(rel):+.1f} %")
        ax.legend(fontsize=8)
    ax.set(xlabel="(pred − ref) / ref  (%, clipped to ±200)", ylabel="dishes", title=title)
    save_figure(fig, path)


def plot_error_by_bin(table: pd.DataFrame, path: str | Path, title: str,
                      bin_edges: Sequence[float]) -> None:
    """Box plot of the APE per reference-volume bin, with the dish count per bin."""
    labels = bin_labels(bin_edges)
    data = [100.0 * table.loc[table["volume_bin"] == lab, "ape"].to_numpy(float) for lab in labels]
    fig, ax = plt.subplots(figsize=(6, 4))
    pos = np.arange(1, len(labels) + 1)
    nonempty = [i for i, d in enumerate(data) if d.size]
    if nonempty:
        ax.boxplot([data[i] for i in nonempty], positions=pos[nonempty], widths=0.6, showmeans=True)
    ax.set_xticks(pos, [f"{lab}\n(n={d.size})" for lab, d in zip(labels, data)])
    ax.set(xlabel="reference volume bin (mL)", ylabel="absolute % error", title=title)
    save_figure(fig, path)


@dataclass
class DishPanel:
    """What one row of the worst-dishes figure shows."""
    dish_id: str
    rgb: np.ndarray
    gt_depth: np.ndarray
    pred_depth: np.ndarray
    mask: np.ndarray
    volume_ml_gt: float
    volume_ml_pred: float


def plot_worst_dishes(panels: list[DishPanel], path: str | Path, title: str) -> None:
    """One row per dish: RGB, GT depth, predicted depth (same colour scale), error map (mm), mask."""
    n = max(len(panels), 1)
    fig, axes = plt.subplots(n, 5, figsize=(16, 3.0 * n), squeeze=False, layout="constrained")
    for r, p in enumerate(panels):
        gt = np.where(p.gt_depth > 0, p.gt_depth, np.nan)
        pred = np.where(np.isfinite(p.pred_depth) & (p.pred_depth > 0), p.pred_depth, np.nan)
        both = np.concatenate([gt[np.isfinite(gt)], pred[np.isfinite(pred)]])
        vmin, vmax = (np.percentile(both, [2, 98]) if both.size else (0.0, 1.0))
        err_mm = (pred - gt) * 1000.0
        lim = float(np.nanpercentile(np.abs(err_mm), 98)) if np.isfinite(err_mm).any() else 1.0
        ape = abs(p.volume_ml_pred - p.volume_ml_gt) / p.volume_ml_gt * 100.0
        axes[r, 0].imshow(p.rgb)
        axes[r, 0].set_title(f"{p.dish_id}: ref {p.volume_ml_gt:.0f} mL, pred {p.volume_ml_pred:.0f} mL "
                             f"({ape:.0f} %)", fontsize=8, loc="left")
        im = axes[r, 1].imshow(gt, cmap="viridis", vmin=vmin, vmax=vmax)
        axes[r, 1].set_title("GT depth (m)", fontsize=8)
        fig.colorbar(im, ax=axes[r, 1], fraction=0.046)
        im = axes[r, 2].imshow(pred, cmap="viridis", vmin=vmin, vmax=vmax)
        axes[r, 2].set_title("predicted depth (m)", fontsize=8)
        fig.colorbar(im, ax=axes[r, 2], fraction=0.046)
        im = axes[r, 3].imshow(err_mm, cmap="RdBu_r", vmin=-max(lim, 1e-3), vmax=max(lim, 1e-3))
        axes[r, 3].set_title("pred − GT (mm)", fontsize=8)
        fig.colorbar(im, ax=axes[r, 3], fraction=0.046)
        axes[r, 4].imshow(p.mask, cmap="gray")
        axes[r, 4].set_title("food mask", fontsize=8)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(title)
    save_figure(fig, path)


def plot_model_comparison(summary: pd.DataFrame, path: str | Path) -> None:
    """Bar chart of MAPE and within-20 % per model/baseline (rows indexed by name)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.5 * len(summary) + 2), sharey=True, layout="constrained")
    names = list(summary.index)
    y = np.arange(len(names))
    for ax, col, label in ((axes[0], "volume_mape", "MAPE (%)"), (axes[1], "within_20pct", "within 20 % (%)")):
        vals = 100.0 * pd.to_numeric(summary[col], errors="coerce").to_numpy(float)
        ax.barh(y, np.nan_to_num(vals), color="tab:blue")
        for yi, v in zip(y, vals):
            if np.isfinite(v):
                ax.text(v, yi, f" {v:.1f}", va="center", fontsize=8)
        ax.set_xlabel(label)
    axes[0].set_yticks(y, names)
    axes[0].invert_yaxis()
    fig.suptitle("volume error on the test split")
    save_figure(fig, path)


def plot_evaluation(name: str, table: pd.DataFrame, out_dir: str | Path, bin_edges: Sequence[float],
                    panels: list[DishPanel] | None = None) -> list[Path]:
    """All per-model figures under out_dir (plots/eval/<name>/); returns the paths written."""
    out_dir = Path(out_dir)
    paths = [out_dir / "scatter.png", out_dir / "error_hist.png", out_dir / "error_by_bin.png"]
    plot_scatter(table, paths[0], f"{name}: predicted vs reference volume")
    plot_error_hist(table, paths[1], f"{name}: signed volume error")
    plot_error_by_bin(table, paths[2], f"{name}: error by volume bin", bin_edges)
    if panels is not None:
        paths.append(out_dir / "worst_dishes.png")
        plot_worst_dishes(panels, paths[-1], f"{name}: worst dishes by volume error")
    return paths


def plot_paired_differences(rows: list[dict], path: str | Path) -> None:
    """Forest plot: each comparison's difference (model − other) with its 95 % interval, one
    panel per metric; green = model better, red = worse, grey = the interval includes zero."""
    from pipeline.evaluate.compare import METRICS
    colours = {"better": "tab:green", "worse": "tab:red"}
    titles = {"mape": "Δ MAPE (pp, < 0 favours model)", "median_ape": "Δ median APE (pp, < 0 favours model)",
              "within_20pct": "Δ within 20 % (pp, > 0 favours model)"}
    n = max(len(rows), 1)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(15, 0.45 * n + 1.8), sharey=True, layout="constrained")
    y = np.arange(len(rows))
    labels = [f"{r['model']} ({'e2e' if r['setting'] == 'end_to_end' else 'given'}) {r['vs']}" for r in rows]
    for ax, (key, short) in zip(axes, METRICS.items()):
        for yi, r in zip(y, rows):
            c = r["c"]
            if c.get(f"{short}_diff") is None:
                continue
            d, lo, hi = (100.0 * c[f"{short}_{x}"] for x in ("diff", "ci_low", "ci_high"))
            colour = colours.get(r["verdicts"][key], "tab:gray")
            ax.plot([lo, hi], [yi, yi], color=colour, lw=2)
            ax.plot([d], [yi], "o", color=colour)
        ax.axvline(0, color="k", lw=1)
        ax.set_title(titles[short], fontsize=9)
    axes[0].set_yticks(y, labels, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle("paired differences on the test dishes, bootstrap 95 % intervals "
                 "(green: model better, red: worse, grey: includes 0)")
    save_figure(fig, path)
