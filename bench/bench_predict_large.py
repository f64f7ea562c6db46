"""Peak memory and wall time of `python -m pipeline.predict` on a large photo (CPU).

Why: a phone photo is 6000x4000 (24 M pixels); the depth comes from the model's input (168 px
wide for the tiny model, 518 for a real Depth-Anything), so predict measures at a working size
(long side max(1024, 2x the model input)) and its peak memory must stay well under 2.5 GB.
Rows: the 6000x4000 JPEG with the default K and with --K, and the same photo downscaled
beforehand to the working size (its numbers must equal the 6000x4000 --K row's). Each row is a
fresh process: peak RSS (ru_maxrss, includes importing torch) and wall time of that process.
Usage: python bench/bench_predict_large.py [--code DIR] [--width 6000 --height 4000]
  --code DIR: run predict from another checkout (e.g. a commit before the working size).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2

from pipeline import io
from pipeline.data.synthetic import generate_dish
from pipeline.geometry import resize_K
from pipeline.models import build_model
from pipeline.models.inference import save_model

REPO = Path(__file__).resolve().parent.parent
DA_CFG = {"pretrained": None, "max_depth": 2, "init_depth": 0.4, "size": [126, 168],
          "tiny": {"hidden_size": 48, "num_layers": 4, "num_heads": 3,
                   "neck_hidden_sizes": [16, 32, 48, 64], "fusion_hidden_size": 32,
                   "head_hidden_size": 16}}
# runs predict's main in this process and reports its own peak RSS and wall time as the last line
CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from pipeline.predict import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "wall_s": time.perf_counter() - t0,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(code: Path, args: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code)}
    r = subprocess.run([sys.executable, "-c", CHILD, *args], cwd=code, env=env, capture_output=True, text=True,
                       check=False)
    lines = r.stdout.strip().splitlines()
    res = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {"rc": r.returncode, "wall_s": float("nan"),
                                                                              "peak_mb": float("nan")}
    res["total"] = next((x.split()[1] for x in lines if x.startswith("total:")), "-")
    res["err"] = r.stderr.strip().splitlines()[-1] if r.returncode or res["rc"] else ""
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", type=Path, default=REPO)
    ap.add_argument("--width", type=int, default=6000)
    ap.add_argument("--height", type=int, default=4000)
    a = ap.parse_args()
    W, H = a.width, a.height
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        save_model(build_model("depth_anything_v2", DA_CFG, seed=0), t / "w", "depth_anything_v2", DA_CFG)
        dish = generate_dish(0, 13, width=640, height=480, noise=False)
        big = cv2.resize(dish.rgb, (W, H), interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(str(t / "big.jpg"), cv2.cvtColor(big, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        big = io.read_rgb(t / "big.jpg")   # what the decoder gives, so the pre-downscaled photo matches
        K_big = resize_K(dish.K, (480, 640), (H, W))
        s = 1024 / max(W, H)
        h, w = round(H * s), round(W * s)
        io.write_rgb(t / "small.png", cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA))
        (t / "kbig.json").write_text(json.dumps({"K": K_big.tolist()}))
        (t / "ksmall.json").write_text(json.dumps({"K": resize_K(K_big, (H, W), (h, w)).tolist()}))
        del big
        cases = [(f"{W}x{H} JPEG, default K", ["big.jpg"]),
                 (f"{W}x{H} JPEG, --K", ["big.jpg", "--K", "kbig.json"]),
                 (f"pre-downscaled {w}x{h} PNG, --K scaled", ["small.png", "--K", "ksmall.json"])]
        rows = []
        for name, (img, *rest) in cases:
            r = run(a.code.resolve(), [str(t / img), *[str(t / x) if x.endswith(".json") else x for x in rest],
                                       "--model", str(t / "w"), "--out", str(t / f"vis_{img}.png")])
            rows.append((name, r))
    print(f"\npython -m pipeline.predict, tiny random Depth-Anything V2 (168x126 input), code: {a.code}, "
          f"CPU ({os.cpu_count()} cores)")
    print(f"{'case':40s} {'wall s':>7s} {'peak RSS MB':>12s} {'total mL':>9s}  note")
    for name, r in rows:
        print(f"{name:40s} {r['wall_s']:7.1f} {r['peak_mb']:12.0f} {r['total']:>9s}  {r['err']}")


if __name__ == "__main__":
    main()
