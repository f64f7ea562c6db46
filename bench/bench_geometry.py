"""Accuracy and speed of pipeline.geometry on exactly ray-cast analytic scenes.

Prints |volume error| (median, max, %) for both methods at elevations 90/75/60/45 deg,
then throughput (dishes/s) of the numpy methods and the torch twin at 640x480.
Run: python bench/bench_geometry.py [--quick]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pipeline import geometry  # noqa: E402
from pipeline.shapes import Box, Camera, Cone, Cylinder, Plane, SphereCap, render  # noqa: E402

ELEVATIONS = (90, 75, 60, 45)
SIZES_ML = (50, 100, 200, 400, 800)
DISTANCE_M = 0.36


def _cap(v: float) -> SphereCap:
    """Mound: height = 0.5 radius."""
    r = (v / (np.pi * 0.5 * (3 + 0.25) / 6)) ** (1 / 3)
    return SphereCap(0.0, 0.0, r, 0.5 * r)


def _dome(v: float) -> SphereCap:
    """Hemisphere-like cap (height = 0.9 radius): steep sides, hidden back at oblique views."""
    r = (v / (np.pi * 0.9 * (3 + 0.81) / 6)) ** (1 / 3)
    return SphereCap(0.0, 0.0, r, 0.9 * r)


def _cyl(v: float) -> Cylinder:
    r = (v / (np.pi * 0.6)) ** (1 / 3)
    return Cylinder(0.0, 0.0, r, 0.6 * r)


def _box(v: float) -> Box:
    s = (v / (0.8 * 0.5)) ** (1 / 3)
    return Box(0.0, 0.0, s, 0.8 * s, 0.5 * s, yaw=0.4)


def _cone(v: float) -> Cone:
    r = (v / (np.pi * 0.8 / 3)) ** (1 / 3)
    return Cone(0.0, 0.0, r, 0.8 * r)


SHAPES = {"cap": _cap, "dome": _dome, "cylinder": _cyl, "box": _box, "cone": _cone}


def scenes(elevation: float, sizes=SIZES_ML, azimuth: float = 30.0):
    """Yield (name, depth, mask, K, true_ml) for every shape and size at one elevation."""
    cam = Camera.look_at(elevation, azimuth, DISTANCE_M)
    for name, make in SHAPES.items():
        for ml in sizes:
            food = make(ml * 1e-6)
            depth, label = render([food, Plane()], cam)
            yield f"{name}{ml}", depth, label == 0, cam.K, food.volume_m3 * 1e6


def accuracy(sizes) -> list[dict]:
    rows = []
    for el in ELEVATIONS:
        errs = {"heightmap": [], "columns": []}
        for _, depth, mask, K, true_ml in scenes(el, sizes):
            for m in errs:
                v = geometry.estimate_volume(depth, mask, K, method=m).volume_ml
                errs[m].append(100 * abs(v - true_ml) / true_ml)
        for m, e in errs.items():
            rows.append({"method": m, "elevation": el, "median_pct": float(np.median(e)),
                         "max_pct": float(np.max(e)), "n": len(e)})
    return rows


def _rate(fn, n_calls: int) -> tuple[float, float]:
    """(dishes/s by wall clock, dishes/s by this process's CPU time): on a shared machine
    the wall clock also counts other people's work."""
    fn()
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n_calls):
        fn()
    return n_calls / (time.perf_counter() - w0), n_calls / max(time.process_time() - c0, 1e-9)


def throughput(n_calls: int) -> dict:
    _, depth, mask, K, _ = next(iter(s for s in scenes(60, (200,)) if s[0] == "cap200"))
    out = {}
    for m in ("heightmap", "columns"):
        out[f"numpy {m}"] = _rate(lambda: geometry.estimate_volume(depth, mask, K, method=m),
                                  n_calls)
    dt = torch.as_tensor(depth, dtype=torch.float32)[None]
    mt = torch.as_tensor(mask)[None]
    Kt = torch.as_tensor(K, dtype=torch.float32)[None]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # more intra-op threads only fight over 2 shared cores
    for m in ("heightmap", "columns"):
        out[f"torch {m} (cpu f32, 1 thr)"] = _rate(
            lambda: geometry.estimate_volume_torch(dt, mt, Kt, method=m), max(n_calls // 4, 1))
    torch.set_num_threads(threads)
    if torch.cuda.is_available():
        dc, mc, Kc = dt.cuda(), mt.cuda(), Kt.cuda()
        for m in ("heightmap", "columns"):
            def run():
                geometry.estimate_volume_torch(dc, mc, Kc, method=m)
                torch.cuda.synchronize()
            out[f"torch {m} (cuda f32)"] = _rate(run, max(n_calls // 4, 1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer sizes and calls")
    args = ap.parse_args()
    sizes = (50, 200, 800) if args.quick else SIZES_ML
    rows = accuracy(sizes)
    print(f"shapes: {', '.join(SHAPES)}; sizes (mL): {sizes}; camera {DISTANCE_M} m, f=615 px, "
          "640x480, exact ray casting")
    print(f"{'method':<10} {'elev':>5} {'median|err|%':>13} {'max|err|%':>10} {'n':>4}")
    for r in rows:
        print(f"{r['method']:<10} {r['elevation']:>5} {r['median_pct']:>13.2f} "
              f"{r['max_pct']:>10.2f} {r['n']:>4}")
    print()
    print(f"{'path (cap 200 mL, 60 deg)':<30} {'dishes/s wall':>14} {'dishes/s cpu':>13}")
    for k, (wall, cpu) in throughput(20 if args.quick else 100).items():
        print(f"{k:<30} {wall:>14.1f} {cpu:>13.1f}")


if __name__ == "__main__":
    main()
