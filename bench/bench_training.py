"""Time both training stages of the default model at the default params on synthetic
dishes (a stand-in for data/dishes/index.csv), and print the validation curve.

    python bench/bench_training.py [--n-train 220] [--n-val 48] [--workers 2]
Target: both stages <= 6 min on 2 CPU cores, val/volume_ape falling across epochs.
"""
from __future__ import annotations

import argparse
import shutil
import time
from concurrent.futures import ProcessPoolExecutor

import pandas as pd

from pipeline import io
from pipeline.config import load_params
from pipeline.train.fit import run_stage

ROOT = io.REPO_ROOT / ".bench_dishes"


def _one(job: tuple[int, str]) -> dict:
    from pipeline.data.synthetic import generate_dish
    i, split = job
    d = generate_dish(seed=123, index=i, width=640, height=480, noise=True)
    base = ROOT / "dishes" / f"b{i:04d}"
    io.write_rgb(base / "rgb.png", d.rgb)
    io.write_depth_png(base / "depth.png", d.depth)
    io.write_mask(base / "mask.png", d.mask)
    return {"dish_id": f"b{i:04d}", "split": split, "rgb_path": io.rel_to_repo(base / "rgb.png"),
            "depth_path": io.rel_to_repo(base / "depth.png"), "mask_path": io.rel_to_repo(base / "mask.png"),
            "fx": d.K[0, 0], "fy": d.K[1, 1], "cx": d.K[0, 2], "cy": d.K[1, 2], "width": 640, "height": 480,
            "volume_ml": d.volume_ml_true, "volume_ml_true": d.volume_ml_true}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-train", type=int, default=220)
    ap.add_argument("--n-val", type=int, default=48)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the generated dishes")
    a = ap.parse_args()
    index = ROOT / "index.csv"
    n = a.n_train + a.n_val
    if not index.is_file() or len(pd.read_csv(index)) != n:
        jobs = [(i, "train" if i < a.n_train else "val") for i in range(n)]
        with ProcessPoolExecutor(a.workers) as ex:
            rows = list(ex.map(_one, jobs, chunksize=8))
        io.write_csv(index, pd.DataFrame(rows))
    params = load_params()
    name = params.models[0]
    rows = []
    try:
        for k in (1, 2):
            t0 = time.time()
            m = run_stage(name, k, params, index, ROOT / f"models/stage{k}", ROOT / f"ckpt/stage{k}",
                          ROOT / f"dvclive/stage{k}", ROOT / f"metrics/stage{k}.json",
                          init_weights=ROOT / "models/stage1" if k == 2 else None)
            rows.append((k, time.time() - t0, m))
    finally:
        if not a.keep:
            shutil.rmtree(ROOT, ignore_errors=True)
    print(f"\n{'stage':>5} {'wall s':>7} {'epochs':>6} {'val ape':>8}  val/volume_ape per epoch")
    for k, s, m in rows:
        curve = " ".join(f"{r['val/volume_ape']:.3f}" for r in m["curve"])
        print(f"{k:>5} {s:7.1f} {m['epochs_run']:>6} {m['val_volume_ape']:8.3f}  {curve}")
    print(f"total {sum(s for _, s, _ in rows):.1f} s for {a.n_train} train / {a.n_val} val dishes")


if __name__ == "__main__":
    main()
