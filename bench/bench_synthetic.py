"""Synthetic dish generation speed (1 vs 2 processes) and the volume distribution.

Why: the ingest stage generates hundreds of dishes; the target is >= 5 dishes/s at
640x480 on 2 cores. Usage: python bench/bench_synthetic.py [--n 40] [--width 640 --height 480]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from pipeline.synthetic import dish_scene, generate_dish  # noqa: E402


def _one(args: tuple[int, int, int, int]) -> tuple[float, float]:
    """(wall s, CPU s) of one dish; CPU time is what a loaded machine can't inflate much."""
    seed, i, w, h = args
    t, c = time.perf_counter(), time.process_time()
    generate_dish(seed, i, w, h)
    return time.perf_counter() - t, time.process_time() - c


def _run(n: int, procs: int, w: int, h: int, seed: int) -> tuple[float, list]:
    jobs = [(seed, i, w, h) for i in range(n)]
    t = time.perf_counter()
    if procs == 1:
        res = [_one(j) for j in jobs]
    else:
        with ProcessPoolExecutor(procs) as ex:
            res = list(ex.map(_one, jobs, chunksize=2))
    wall = time.perf_counter() - t
    return n / wall, res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="dishes per timing run")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-dist", type=int, default=400, help="scenes for the volume table")
    a = ap.parse_args()

    generate_dish(a.seed, 10_000, a.width, a.height)  # warm-up (imports, caches)
    print(f"## Synthetic dish generation, {a.width}x{a.height}, {a.n} dishes, "
          f"{os.cpu_count()} CPUs visible, load avg {os.getloadavg()[0]:.1f}")
    print(f"{'processes':>9} | {'dishes/s':>8} | {'wall ms/dish':>12} | {'CPU ms/dish':>11} | "
          f"{'p90 CPU ms':>10} | {'CPU-bound dishes/s':>18}")
    print("-" * 84)
    for procs in (1, 2):
        rate, res = _run(a.n, procs, a.width, a.height, a.seed)
        wall = np.array([r[0] for r in res]) * 1000
        cpu = np.array([r[1] for r in res]) * 1000
        ideal = procs * 1000 / cpu.mean()  # if each process had a core to itself
        print(f"{procs:>9} | {rate:>8.2f} | {np.median(wall):>12.0f} | {cpu.mean():>11.0f} | "
              f"{np.percentile(cpu, 90):>10.0f} | {ideal:>18.2f}")
    print("(CPU-bound dishes/s = processes / mean CPU time: the rate on otherwise idle cores)")

    vols, kinds, vessels, items = [], Counter(), Counter(), Counter()
    for i in range(a.n_dist):
        sc = dish_scene(a.seed, i)
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


if __name__ == "__main__":
    main()
