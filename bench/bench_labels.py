"""Synthetic label accuracy per scene family: the volume label from the default (geometry)
masks and from the ground-truth masks against the exact synthetic volume.

Why: labels are the training targets; their error on synthetic dishes (where the truth is
known) bounds what any model can learn. Target (issue 9): median APE <= 3 % over the
non-suspect dishes with the default masks. Each dish runs the stages' own code with the
stage params: pipeline.data.synthetic (ingest) -> depth quantised as the depth PNG stores it ->
pipeline.masks.food_mask + suspect checks (masks) -> pipeline.masks.support.volume_above_support
(labels). Tune on seed 0, report held-out seed 1. These are library calls per generated dish,
not the stages' entries (no data/raw on disk, the rig's vessel floor is not used): figures
quoted for the stage come from bench/bench_family_labels.py (stages/masks.py, labels.py `run`).
Usage: python bench/bench_labels.py [--seed 0] [--n 320] [--csv per_dish.csv]
"""
from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline import io, suspect
from pipeline.config import Params, load_params
from pipeline.data.rig import tilt_deg
from pipeline.data.synthetic import generate_dish
from pipeline.masks.cleanup import iou
from pipeline.masks.from_depth import food_mask
from pipeline.masks.support import volume_above_support


def stored_depth(depth: np.ndarray) -> np.ndarray:
    """Depth as the labels stage reads it back from the 16-bit PNG (io.write_depth_png)."""
    units = np.where(np.isfinite(depth) & (depth > 0), np.round(depth / io.DEPTH_SCALE_M), 0)
    units[units > 65535] = 0
    return units.astype(np.float32) * np.float32(io.DEPTH_SCALE_M)


def label_one(job: tuple[int, int, Params]) -> dict:
    """One dish through ingest -> masks -> labels; its errors and diagnostics."""
    seed, index, p = job
    d = p.data
    dish = generate_dish(seed, index, d.width, d.height, d.noise, d.families)
    depth = stored_depth(dish.depth)
    m, v, sus = p.masks, p.volume, p.suspect
    out = {"index": index, "family": dish.meta.get("scene", "table"),
           "true_ml": dish.volume_ml_true}
    try:
        mask, sup = food_mask(depth, dish.K, m.min_height_mm, m.min_area_px, None, dish.rgb, suspect_cfg=sus)
        reasons = suspect.mask_reasons(mask, np.nan, sup.kind, sup.inlier_fraction, sus,
                                       sup.floor_guess_m, sup.floor_wall_colour, sup.uncertainty)
        kw = dict(method=v.method, ring_px=v.ring_px, cell_mm=v.cell_mm)
        res = volume_above_support(depth, mask, dish.K, sup, **kw)
        reasons += suspect.label_reasons(res.volume_ml, np.nan, tilt_deg(res.plane_normal),
                                         sup.kind != "plane", sus)
        gt_ml = volume_above_support(depth, dish.mask, dish.K, sup, **kw).volume_ml
        out.update(label_ml=res.volume_ml, gt_mask_ml=gt_ml, iou=iou(mask, dish.mask),
                   support=sup.kind, suspect=suspect.join(reasons), mask_px=int(mask.sum()),
                   gt_px=int(dish.mask.sum()), miss_px=int((dish.mask & ~mask).sum()),
                   extra_px=int((mask & ~dish.mask).sum()), floor_guess_m=sup.floor_guess_m)
    except ValueError as e:
        out.update(label_ml=np.nan, gt_mask_ml=np.nan, iou=0.0, support="", suspect=f"error: {e}")
    return out


def _stats(g: pd.DataFrame) -> dict:
    ape = (g["label_ml"] - g["true_ml"]).abs() / g["true_ml"]
    ape_gt = (g["gt_mask_ml"] - g["true_ml"]).abs() / g["true_ml"]
    return {"n": len(g), "med_ape_%": 100 * ape.median(), "p90_ape_%": 100 * ape.quantile(0.9),
            "med_ape_gt_mask_%": 100 * ape_gt.median(), "mean_iou": g["iou"].mean()}


def table(df: pd.DataFrame) -> pd.DataFrame:
    """Per family (non-suspect dishes) with suspect counts, then overall non-suspect and all."""
    ok = df["suspect"].fillna("") == ""
    rows = []
    for fam, g in df.groupby("family"):
        s = g["suspect"].fillna("")
        why = ", ".join(f"{r} {int(s.str.split(';').apply(lambda x, r=r: r in x).sum())}"
                        for r in suspect.REASONS if s.str.contains(r).any())
        n_err = int(s.str.startswith("error").sum())
        why = ", ".join(x for x in (why, f"error {n_err}" if n_err else "") if x)
        rows.append({"family": fam, "n_all": len(g), "n_suspect": int((s != "").sum()),
                     "suspect_reasons": why or "-", **_stats(g[s == ""])})
    rows.append({"family": "ALL non-suspect", "n_all": len(df), "n_suspect": int((~ok).sum()),
                 "suspect_reasons": "", **_stats(df[ok])})
    rows.append({"family": "ALL dishes", "n_all": len(df), "n_suspect": 0,
                 "suspect_reasons": "", **_stats(df)})
    return pd.DataFrame(rows).round(2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="synthetic data seed (tune 0, report 1)")
    ap.add_argument("--n", type=int, default=None, help="dishes (default: data.n_dishes)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--csv", type=Path, default=None, help="also write the per-dish table here")
    args = ap.parse_args()
    p = load_params()
    n = args.n or p.data.n_dishes
    jobs = [(args.seed, i, p) for i in range(n)]
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(tqdm(pool.map(label_one, jobs, chunksize=4), total=n, desc="dishes"))
    df = pd.DataFrame(rows)
    if args.csv:
        io.write_csv(args.csv, df)
    print(f"seed {args.seed}, {n} dishes, masks {p.masks.method} -> geometry (default "
          f"offline masks), min_height {p.masks.min_height_mm} mm")
    print(table(df).to_string(index=False))


if __name__ == "__main__":
    main()
