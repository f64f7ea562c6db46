"""Two independent copies of the project, one reduced `dvc repro` each: identical hashes?

    python bench/bench_repro.py [--dishes 24] [--epochs 2]

Copies pipeline/, stages/, dvc.yaml and params.yaml into two fresh git+DVC repositories
(nothing else: no checkpoints/, no caches), runs `dvc repro train_stage1@depth_anything_v2`
in each with a small synthetic data set, and prints every output hash from both dvc.lock files.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
STAGE = "train_stage1@depth_anything_v2"


def make_copy(root: Path, overrides: dict) -> None:
    root.mkdir(parents=True)
    for d in ("pipeline", "stages"):
        shutil.copytree(REPO / d, root / d, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for dotted, value in overrides.items():
        node = params
        *keys, last = dotted.split(".")
        for k in keys:
            node = node[k]
        node[last] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run = dict(cwd=root, check=True, capture_output=True)
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com",
                 "commit", "-qm", "copy"]):
        subprocess.run(cmd, **run)


def out_hashes(root: Path) -> dict[str, str]:
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    return {f"{name}: {o['path']}": o.get("md5", "?") for name, st in lock.items() for o in st.get("outs", [])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dishes", type=int, default=24)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    overrides = {"data.n_dishes": args.dishes, "train.stage1.epochs": args.epochs}
    tmp = Path(tempfile.mkdtemp(prefix="bench_repro_"))
    hashes = []
    for name in ("copy_a", "copy_b"):
        root = tmp / name
        make_copy(root, overrides)
        t0 = time.time()
        r = subprocess.run(["dvc", "repro", STAGE], cwd=root, capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"dvc repro failed in {root}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
        print(f"{name}: dvc repro {STAGE} in {time.time() - t0:.0f} s", flush=True)
        hashes.append(out_hashes(root))
    print("\n| output | copy A | copy B | same |\n| --- | --- | --- | --- |")
    for key in hashes[0]:
        a, b = hashes[0][key], hashes[1].get(key, "-")
        if key.split(": ")[1].startswith("metrics/ingest"):
            continue  # holds the wall time
        print(f"| {key} | {a[:10]} | {b[:10]} | {'yes' if a == b else 'NO'} |")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
