"""Per-dish timings of the Nutrition5k path on a generated release-format tree (CPU).

Why: the real release has ~3,490 overhead dishes; these numbers say how long ingest
(validation), SAM 2 masks and new-photo prediction take per dish on this machine.
Rows: scan/validate (1 and 2 workers), release depth read, geometry mask (= SAM box prompts),
SAM 2 mask with a random-init sam2.1_hiera_t (1024 input as released, and 512), predict
(tiny random Depth-Anything V2, geometry mask on predicted depth, per-region volumes).
Usage: python bench/bench_nutrition5k.py [--n 12] [--sam-dishes 3] [--no-sam]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("SAM2_BUILD_CUDA", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: tests.fixtures

from pipeline import io
from pipeline.config import Nutrition5kConfig
from pipeline.data.nutrition5k import read_release_depth, scan_release
from pipeline.masks.from_depth import geometry_mask
from tests.fixtures.fake_release import make_release_tree

_N5K = Nutrition5kConfig()   # the params.yaml `nutrition5k:` defaults
FX, FY, CX, CY = _N5K.fx, _N5K.fy, _N5K.cx, _N5K.cy
DA_CFG = {"pretrained": None, "max_depth": 2, "init_depth": 0.4, "size": [126, 168],
          "tiny": {"hidden_size": 48, "num_layers": 4, "num_heads": 3,
                   "neck_hidden_sizes": [16, 32, 48, 64], "fusion_hidden_size": 32,
                   "head_hidden_size": 16}}


def timed(fn, items) -> tuple[float, list]:
    """Mean seconds per item and the results."""
    t0 = time.perf_counter()
    out = [fn(x) for x in items]
    return (time.perf_counter() - t0) / max(len(items), 1), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=12, help="good dishes in the tree (+4 corrupt)")
    ap.add_argument("--sam-dishes", type=int, default=3)
    ap.add_argument("--no-sam", action="store_true")
    args = ap.parse_args()
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "nutrition5k"
        t0 = time.perf_counter()
        planted = make_release_tree(root, args.n, seed=0, corrupt=True)
        n_found = len(planted["kept"]) + sum(map(len, planted["skipped"].values()))
        rows.append(("make_release_tree (synthetic render)", (time.perf_counter() - t0) / n_found, ""))
        for w in (1, 2):
            t0 = time.perf_counter()
            manifest, report = scan_release(root, FX, FY, CX, CY, workers=w)
            dt = (time.perf_counter() - t0) / report["n_found"]
            rows.append((f"scan/validate, {w} worker(s)", dt,
                         f"{report['n_kept']} kept, skipped {dict((k, v) for k, v in report['skipped'].items() if v)}"))
        depth_paths = [root / "imagery/realsense_overhead" / d / "depth_raw.png" for d in manifest["dish_id"]]
        dt, depths = timed(read_release_depth, depth_paths)
        rows.append(("read release depth", dt, ""))
        K = io.intrinsics(FX, FY, CX, CY)
        dt, masks = timed(lambda d: geometry_mask(d, K), depths)
        rows.append(("geometry mask / SAM box prompts", dt, f"{np.mean([m.mean() for m in masks]):.1%} px food"))

        if not args.no_sam:
            from pipeline.masks.sam2 import box_prompts, load_sam2_predictor, sam2_food_mask
            ids = list(manifest["dish_id"][: args.sam_dishes])
            rgbs = [io.read_rgb(root / "imagery/realsense_overhead" / d / "rgb.png") for d in ids]
            for size in (None, 512):
                t0 = time.perf_counter()
                pred = load_sam2_predictor(None, "configs/sam2.1/sam2.1_hiera_t.yaml", image_size=size)
                load_s = time.perf_counter() - t0
                sam2_food_mask(pred, rgbs[0], depths[0], K, 4.0, 150)  # warm-up
                dt, _ = timed(lambda i: sam2_food_mask(pred, rgbs[i], depths[i], K, 4.0, 150),
                              range(len(ids)))
                nb = np.mean([len(box_prompts(depths[i], K, 4.0, 150)) for i in range(len(ids))])
                rows.append((f"SAM 2 mask, tiny random, {size or 1024} input", dt,
                             f"load {load_s:.1f} s, {nb:.1f} boxes/dish"))

        from pipeline.models import build_model
        from pipeline.models.inference import save_model
        from pipeline.predict import predict_volume
        wdir = Path(tmp) / "w"
        save_model(build_model("depth_anything_v2", DA_CFG, seed=0), wdir, "depth_anything_v2", DA_CFG)
        imgs = [root / "imagery/realsense_overhead" / d / "rgb.png" for d in manifest["dish_id"][:4]]
        predict_volume(imgs[0], "depth_anything_v2", wdir)  # warm-up (model load)
        dt, preds = timed(lambda p: predict_volume(p, "depth_anything_v2", wdir, K=K), imgs)
        rows.append(("predict (tiny DA-V2, geometry mask, regions)", dt,
                     f"{np.mean([len(p.volumes_ml) for p in preds]):.1f} regions/dish"))

    print(f"\nNutrition5k path, per dish, CPU ({os.cpu_count()} cores), 640x480")
    print(f"{'step':48s} {'ms/dish':>9s}  note")
    for name, s, note in rows:
        print(f"{name:48s} {1000 * s:9.1f}  {note}")
    scan1 = next(s for n, s, _ in rows if n.startswith("scan/validate, 1"))
    print(f"\nextrapolated validate of 3,490 release dishes (1 worker): {3490 * scan1:.0f} s")


if __name__ == "__main__":
    main()
