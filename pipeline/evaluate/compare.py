"""Paired comparisons on the same test dishes, with uncertainty.

A difference in MAPE between two rows of the report says little on its own: ~60 test dishes
leave wide intervals. Each comparison pairs the two per-dish tables by `dish_id` and gives,
for MAPE, median APE and within-20 % (one definition: `pipeline.evaluate.metrics.volume_metrics`),
the difference `a − b`, a paired bootstrap 95 % interval (dishes resampled with replacement,
seeded) and a Wilcoxon signed-rank p on the per-dish APE. A verdict says "better" only where
the interval excludes zero on the favourable side.

The same comparison is repeated within each scene-family group (`by_family`: `rig`, every synthetic
family but `table`, pooled, the copy of the real experiment; and `table`), from the `scene` the per-dish
tables carry; tables without one (Nutrition5k) are one group and get no `by_family`. The ring-rescaled
diagnostic rows read the measured depth and are never planned here (no verdict).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from pipeline.evaluate.metrics import volume_metrics
from pipeline.evaluate.names import (
    DIRECT_SUFFIX,
    FAMILY_GROUPS,
    MASS_BASELINE_MEAN,
    SETTINGS,
    STAGE0_SUFFIX,
    family_labels,
    is_diagnostic,
)

# metric key -> short name in compare.json; lower APE is better, higher within-20 % is better
METRICS: dict[str, str] = {"volume_mape": "mape", "volume_median_ape": "median_ape", "within_20pct": "within_20pct"}
HIGHER_IS_BETTER = {"within_20pct"}


def paired(a: pd.DataFrame, b: pd.DataFrame, name_a: str = "a", name_b: str = "b") -> pd.DataFrame:
    """The two per-dish tables joined on `dish_id`; ValueError unless they hold the same dishes
    with the same reference volumes."""
    cols = ["dish_id", "volume_ml_gt", "volume_ml_pred"]
    for n, t in ((name_a, a), (name_b, b)):
        if missing := [c for c in cols if c not in t.columns]:
            raise ValueError(f"{n}: per-dish table lacks {missing}")
    m = a[cols].merge(b[cols], on="dish_id", how="outer", suffixes=("_a", "_b"), indicator=True)
    if (m["_merge"] != "both").any() or m["dish_id"].duplicated().any():
        odd = m.loc[m["_merge"] != "both", "dish_id"].head(3).tolist()
        raise ValueError(f"{name_a} vs {name_b}: not the same dishes (e.g. {odd})")
    if not np.allclose(m["volume_ml_gt_a"], m["volume_ml_gt_b"], rtol=1e-6):
        raise ValueError(f"{name_a} vs {name_b}: reference volumes differ for the same dishes")
    return m.drop(columns="_merge").reset_index(drop=True)


def verdict(key: str, lo: float, hi: float) -> str:
    """'better' / 'worse' only when the interval of a − b excludes zero, else 'no clear difference'."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "no clear difference"
    good_side = (lo > 0) if key in HIGHER_IS_BETTER else (hi < 0)
    bad_side = (hi < 0) if key in HIGHER_IS_BETTER else (lo > 0)
    return "better" if good_side else ("worse" if bad_side else "no clear difference")


def wilcoxon_p(ape_a: np.ndarray, ape_b: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p on per-dish APE; 1.0 when every pair is tied."""
    d = np.asarray(ape_a, float) - np.asarray(ape_b, float)
    if not np.any(d != 0):
        return 1.0
    return float(stats.wilcoxon(ape_a, ape_b).pvalue)


def compare(a: pd.DataFrame, b: pd.DataFrame, n_bootstrap: int = 2000, seed: int = 0,
            name_a: str = "a", name_b: str = "b") -> dict:
    """Differences a − b with paired bootstrap 95 % intervals and the Wilcoxon p (JSON-ready:
    numbers only, so `dvc metrics diff` shows every key)."""
    if n_bootstrap < 100:
        raise ValueError(f"eval.n_bootstrap: at least 100 resamples, got {n_bootstrap}")
    m = paired(a, b, name_a, name_b)
    gt = m["volume_ml_gt_a"].to_numpy(float)
    pa, pb = m["volume_ml_pred_a"].to_numpy(float), m["volume_ml_pred_b"].to_numpy(float)
    n = len(m)
    out: dict = {"n_dishes": int(n)}
    if n == 0:
        return out
    va, vb = volume_metrics(gt, pa), volume_metrics(gt, pb)
    idx = np.random.default_rng(seed).integers(0, n, size=(int(n_bootstrap), n))
    boot = {k: np.empty(len(idx)) for k in METRICS}
    for i, rows in enumerate(idx):
        ra, rb = volume_metrics(gt[rows], pa[rows]), volume_metrics(gt[rows], pb[rows])
        for k in METRICS:
            boot[k][i] = ra[k] - rb[k]
    for k, short in METRICS.items():
        lo, hi = np.percentile(boot[k], [2.5, 97.5])
        out[f"{short}_diff"] = round(float(va[k] - vb[k]), 6)
        out[f"{short}_ci_low"] = round(float(lo), 6)
        out[f"{short}_ci_high"] = round(float(hi), 6)
    # significant digits, not decimals
    out["wilcoxon_p"] = float(f"{wilcoxon_p(np.abs(pa - gt) / gt, np.abs(pb - gt) / gt):.4g}")
    return out


def dish_families(*tables: pd.DataFrame) -> dict[str, str] | None:
    """dish_id -> family group (`rig` / `table`) from the first table with a `scene` column holding one;
    None when none does (Nutrition5k: everything is one group)."""
    for t in tables:
        if "scene" in t.columns and (fam := family_labels(t["scene"].tolist())) is not None:
            return dict(zip(t["dish_id"].astype(str), fam))
    return None


def compare_by_family(a: pd.DataFrame, b: pd.DataFrame, n_bootstrap: int = 2000, seed: int = 0,
                      name_a: str = "a", name_b: str = "b") -> dict[str, dict]:
    """`compare` within each family group that holds dishes ({group: result}); {} without scenes."""
    fam = dish_families(a, b)
    if fam is None:
        return {}
    out = {}
    for g in FAMILY_GROUPS:
        ids = {d for d, f in fam.items() if f == g}
        if ids:
            out[g] = compare(a[a["dish_id"].astype(str).isin(ids)], b[b["dish_id"].astype(str).isin(ids)],
                             n_bootstrap, seed, f"{name_a} ({g})", f"{name_b} ({g})")
    return out


def read_table(path: Path) -> pd.DataFrame:
    """A per-dish metrics/eval CSV with `dish_id` and `scene` as text (ids stay ids; no scene -> NaN)."""
    return pd.read_csv(path, dtype={"dish_id": str, "scene": str, "support": str})


def compare_models(plan: Sequence[tuple[str, str, str, str]], read: Callable[[str], pd.DataFrame],
                   n_bootstrap: int = 2000, seed: int = 0, log: Callable[[str], None] | None = None
                   ) -> tuple[dict, dict[str, int]]:
    """compare.json's `models` section for a `comparison_plan` (`read(row)` gives a row's per-dish table):
    `<model>.<setting>.vs_<other>` on the whole split and `<model>.<setting>.by_family.<group>.vs_<other>`
    per family group; and the test dishes per group ({}: no scenes, one group)."""
    models: dict = {}
    per_family: dict[tuple[str, str], dict] = {}
    families: dict[str, int] = {}
    for model, setting, row, other in plan:
        a, b = read(row), read(other)
        vs = vs_key(other, model, STAGE0_SUFFIX)
        c = models.setdefault(model, {}).setdefault(setting, {})[vs] = compare(a, b, n_bootstrap, seed, row, other)
        if log:
            log(f"{row} vs {other}: {c}")
        for g, cg in compare_by_family(a, b, n_bootstrap, seed, row, other).items():
            per_family.setdefault((model, setting), {}).setdefault(g, {})[vs] = cg
            if log:
                log(f"  {g}: {cg}")
        if not families and (fam := dish_families(a, b)):
            families = {g: sum(f == g for f in fam.values()) for g in FAMILY_GROUPS}
    for (model, setting), by_family in per_family.items():   # after the setting's vs_ keys
        models[model][setting]["by_family"] = by_family
    return models, families


def comparison_plan(models: Sequence[str], available: set[str], baselines: Sequence[str],
                    settings: dict[str, str], stage0_suffix: str,
                    zero_shot: Sequence[str] = (), alternatives: dict[str, str] | None = None,
                    students: Mapping[str, str] | None = None
                    ) -> list[tuple[str, str, str, str]]:
    """(model, setting, row of the model, row compared against) for every comparison the
    evaluated files allow: each model in each setting vs each baseline, vs its own stage 0 and vs
    each zero-shot model (what fine-tuning gained over a model used as is) in the same setting;
    each zero-shot model vs each baseline; for a setting in `alternatives`, the model's row vs
    its own row of the setting named there (end to end: the mask head's mask vs the cut from the
    predicted depth); and each distilled student (`students`: student -> teacher) vs its teacher and
    vs the same student fine-tuned directly, and that one vs the teacher. Diagnostic rows
    (`is_diagnostic`) are never planned."""
    plan = []
    for m in [*models, *zero_shot]:
        for setting, suffix in settings.items():
            row = m + suffix
            if row not in available:
                continue
            others = [*baselines, m + stage0_suffix + suffix]
            if m in models:
                others += [z + suffix for z in zero_shot]
                if setting in (alternatives or {}):
                    others.append(m + settings[alternatives[setting]])
            for other in others:
                if other in available and not is_diagnostic(row) and not is_diagnostic(other):
                    plan.append((m, setting, row, other))
    for student, teacher in (students or {}).items():
        direct = student + DIRECT_SUFFIX
        for setting, suffix in settings.items():
            for m, other in ((student, teacher), (student, direct), (direct, teacher)):
                if m + suffix in available and other + suffix in available:
                    plan.append((m, setting, m + suffix, other + suffix))
    return plan


def vs_key(other: str, model: str, stage0_suffix: str) -> str:
    """compare.json key of the opponent: `vs_stage0` for the model's own start, else `vs_<name>`."""
    return "vs_stage0" if other.startswith(model + stage0_suffix) else f"vs_{other}"


def compare_mass(a: pd.DataFrame, b: pd.DataFrame, n_bootstrap: int = 2000, seed: int = 0) -> dict:
    """Difference a − b of mass MAE as a share of the mean mass, on the kept dishes and on all
    (`_all`), with paired bootstrap 95 % intervals and the Wilcoxon p on per-dish |error|."""
    m = a[["dish_id", "dropped", "mass_g", "abs_err_g"]].merge(
        b[["dish_id", "abs_err_g"]], on="dish_id", suffixes=("_a", "_b"), validate="one_to_one")
    if len(m) != len(a) or len(m) != len(b):
        raise ValueError("compare_mass: the two rows hold different dishes")
    out: dict = {}
    rng = np.random.default_rng(seed)
    for sfx, sel in (("", ~m["dropped"].astype(bool)), ("_all", np.ones(len(m), bool))):
        t = m[np.asarray(sel)]
        n = len(t)
        out[f"n_dishes{sfx}"] = int(n)
        if n == 0:
            continue
        ea, eb, w = (t[c].to_numpy(float) for c in ("abs_err_g_a", "abs_err_g_b", "mass_g"))
        idx = rng.integers(0, n, size=(int(n_bootstrap), n))
        boot = (ea[idx].mean(1) - eb[idx].mean(1)) / w[idx].mean(1)
        lo, hi = np.percentile(boot, [2.5, 97.5])
        out[f"mae_pct_of_mean_diff{sfx}"] = round(float((ea.mean() - eb.mean()) / w.mean()), 6)
        out[f"mae_pct_of_mean_ci_low{sfx}"] = round(float(lo), 6)
        out[f"mae_pct_of_mean_ci_high{sfx}"] = round(float(hi), 6)
        out[f"wilcoxon_p{sfx}"] = float(f"{wilcoxon_p(ea, eb):.4g}")
    return out


def mass_plan(models: Sequence[str], available: set[str]) -> list[tuple[str, str, str, str, str]]:
    """(model, setting, compare.json key, row, other row) for the paired mass comparisons: each
    model's learned and global rows vs the train-mean baseline, and learned vs global."""
    plan = []
    for m in models:
        for setting, sfx in SETTINGS.items():
            g, lrn = f"mass_{m}_global{sfx}", f"mass_{m}_learned{sfx}"
            for key, row, other in (("learned_vs_baseline_mean", lrn, MASS_BASELINE_MEAN),
                                    ("global_vs_baseline_mean", g, MASS_BASELINE_MEAN),
                                    ("learned_vs_global", lrn, g)):
                if row in available and other in available:
                    plan.append((m, setting, key, row, other))
    return plan
