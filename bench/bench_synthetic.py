"""Synthetic dish generation speed (1 vs 2 processes), the scene-family mix, the volume
distribution, and per-family depth statistics next to real Nutrition5k dishes.

Why: the ingest stage generates hundreds of dishes; the target is >= 5 dishes/s at
640x480 on 2 cores. The rig families must look like the real rig (platform step, holes).
Usage: python bench/bench_synthetic.py [--n 40] [--width 640 --height 480]
       [--real-root <Nutrition5k release root>]   (adds the real dishes' depth statistics)
"""
from __future__ import annotations

import argparse
import os
import time
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import yaml

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from pipeline.data.scene import FAMILIES, PART, family_of
from pipeline.data.synthetic import dish_scene, generate_dish

ROOT = Path(__file__).resolve().parent.parent


def _one(args: tuple) -> tuple[float, float, str]:
    """(wall s, CPU s, family) of one dish; CPU time is what a loaded machine can't inflate much."""
    seed, i, w, h, families = args
    t, c = time.perf_counter(), time.process_time()
    d = generate_dish(seed, i, w, h, families=families)
    return time.perf_counter() - t, time.process_time() - c, d.meta["scene"]


def _run(n: int, procs: int, w: int, h: int, seed: int, families: dict) -> tuple[float, list]:
    jobs = [(seed, i, w, h, families) for i in range(n)]
    t = time.perf_counter()
    if procs == 1:
        res = [_one(j) for j in jobs]
    else:
        with ProcessPoolExecutor(procs) as ex:
            res = list(ex.map(_one, jobs, chunksize=2))
    wall = time.perf_counter() - t
    return n / wall, res


def _depth_stats(depth: np.ndarray, d=None) -> dict:
    """Hole fraction, depth percentiles; for a synthetic dish `d` also the share of metal
    pixels, holes on them, and the step (m) from the vessel floor down to what the depth
    shows around the dish (bench, or platform when opaque)."""
    v = depth[depth > 0]
    out = {"holes": (depth == 0).mean(), "p5": np.percentile(v, 5), "p50": np.median(v),
           "p95": np.percentile(v, 95), "metal_px": np.nan, "metal_holes": np.nan, "step": np.nan}
    if d is not None:
        parts, z = d.parts, d.depth_clean
        metal = parts == PART["rail"]
        if d.meta.get("metal"):
            metal |= np.isin(parts, [PART["vessel"], PART["vessel_floor"]])
        out["metal_px"] = metal.mean()
        out["metal_holes"] = (depth[metal] == 0).mean() if metal.any() else np.nan
        around = parts == PART["surface"]
        if d.meta.get("platform_glass"):
            around |= parts == PART["platform"]
        floor = parts == PART["vessel_floor"]
        if d.meta["scene"] != "table" and around.any() and floor.any():
            out["step"] = np.median(z[around]) - np.median(z[floor])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="dishes per timing run")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-dist", type=int, default=400, help="scenes for the volume table")
    ap.add_argument("--n-family", type=int, default=4, help="dishes per family for depth stats")
    ap.add_argument("--real-root", type=Path, default=None,
                    help="Nutrition5k release root: add its overhead dishes' depth statistics")
    a = ap.parse_args()
    families = yaml.safe_load((ROOT / "params.yaml").read_text())["data"].get("families")

    generate_dish(a.seed, 10_000, a.width, a.height)  # warm-up (imports, caches)
    print(f"## Synthetic dish generation, {a.width}x{a.height}, {a.n} dishes (params.yaml "
          f"family mix), {os.cpu_count()} CPUs visible, load avg {os.getloadavg()[0]:.1f}")
    print(f"{'processes':>9} | {'dishes/s':>8} | {'wall ms/dish':>12} | {'CPU ms/dish':>11} | "
          f"{'p90 CPU ms':>10} | {'CPU-bound dishes/s':>18}")
    print("-" * 84)
    per_family: dict[str, list] = {}
    for procs in (1, 2):
        rate, res = _run(a.n, procs, a.width, a.height, a.seed, families)
        wall = np.array([r[0] for r in res]) * 1000
        cpu = np.array([r[1] for r in res]) * 1000
        ideal = procs * 1000 / cpu.mean()  # if each process had a core to itself
        print(f"{procs:>9} | {rate:>8.2f} | {np.median(wall):>12.0f} | {cpu.mean():>11.0f} | "
              f"{np.percentile(cpu, 90):>10.0f} | {ideal:>18.2f}")
        for r in res:
            per_family.setdefault(r[2], []).append(r[1] * 1000)
    print("(CPU-bound dishes/s = processes / mean CPU time: the rate on otherwise idle cores)")
    print("CPU ms/dish by family:", {f: round(float(np.mean(v))) for f, v in
                                     sorted(per_family.items())})

    fams = Counter(family_of(a.seed, i, families) for i in range(a.n_dist))
    print(f"\n## Scene families ({a.n_dist} dishes, seed {a.seed}; weights from params.yaml "
          f"data.families)")
    print(f"{'family':>10} | {'weight':>6} | {'dishes':>6} | {'share':>6}")
    print("-" * 38)
    wsum = sum((families or {"table": 1}).values())
    for f in FAMILIES:
        w = (families or {"table": 1.0}).get(f, 0.0) / wsum
        print(f"{f:>10} | {w:>6.2f} | {fams[f]:>6} | {fams[f] / a.n_dist:>6.1%}")

    vols, kinds, vessels, items = [], Counter(), Counter(), Counter()
    for i in range(a.n_dist):
        sc = dish_scene(a.seed, i, families)
        vols.append(sum(s.volume_m3 for it in sc.food for s in it) * 1e6)
        kinds.update(sc.kinds)
        vessels[sc.vessel] += 1
        items[len(sc.food)] += 1
    vols = np.array(vols)
    edges = [0, 100, 300, 600, np.inf]
    counts = np.histogram(vols, edges)[0]
    print(f"\n## Volume distribution ({a.n_dist} dishes, seed {a.seed})")
    print(f"{'bin (mL)':>10} | {'dishes':>6} | {'share':>6}")
    print("-" * 28)
    for lo, hi, c in zip(edges[:-1], edges[1:], counts):
        label = f"<{hi:.0f}" if lo == 0 else (f">{lo:.0f}" if np.isinf(hi) else f"{lo:.0f}-{hi:.0f}")
        print(f"{label:>10} | {c:>6} | {c / len(vols):>6.1%}")
    print(f"min {vols.min():.0f} mL, median {np.median(vols):.0f} mL, max {vols.max():.0f} mL")
    print("items per dish:", dict(sorted(items.items())), "| vessels:", dict(vessels))
    print("item kinds:", dict(kinds.most_common()))

    print(f"\n## Depth statistics per family (mean over {a.n_family} dishes at "
          f"{a.width}x{a.height}; step: depth around the dish - vessel floor depth, m)")
    print(f"{'scene':>16} | {'holes':>5} | {'metal px':>8} | {'holes on metal':>14} | "
          f"{'step':>5} | {'depth p5 / p50 / p95 (m)':>24}")
    print("-" * 88)
    rows = []
    for f in FAMILIES:
        st = [_depth_stats((d := generate_dish(a.seed, i, a.width, a.height, family=f)).depth, d)
              for i in range(a.n_family)]
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
            rows.append((f, {k: float(np.nanmean([s[k] for s in st])) for k in st[0]}))
    if a.real_root is not None:
        import cv2
        for p in sorted((a.real_root / "imagery" / "realsense_overhead").glob("*/depth_raw.png")):
            z = cv2.imread(str(p), cv2.IMREAD_UNCHANGED).astype(np.float32) * 1e-4
            rows.append((f"real {p.parent.name[-6:]}", _depth_stats(z)))
    for name, s in rows:
        mh, mp, st = ("-" if np.isnan(s[k]) else f"{s[k]:.{n}f}"
                      for k, n in (("metal_holes", 2), ("metal_px", 2), ("step", 3)))
        print(f"{name:>16} | {s['holes']:>5.2f} | {mp:>8} | {mh:>14} | {st:>5} | "
              f"{s['p5']:.3f} / {s['p50']:.3f} / {s['p95']:.3f}")


if __name__ == "__main__":
    main()
