"""What the mass stages cost against the whole `dvc repro`, and the mass rows they produced.

    python bench/bench_mass.py [--project DIR] [--log repro.log]

`--log`: a `dvc repro` log whose lines start with a Unix time stamp (e.g. piped through
`while IFS= read -r l; do echo "$(date +%s) $l"; done`): prints every stage's wall time and the
mass stages' share. Without it, re-runs the mass stages (mass_head@<model>, mass@<model>) in
`--project` (default: this repository, after `dvc repro`) and times them (the two model-free mass
rows are written by the `baselines` stage, in well under a second).
Then prints the mass table from the project's metrics/eval/mass_*.json.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
MASS_STAGES = ("mass_head", "mass_baselines", "mass")   # mass_baselines: logs of the first layout


def stage_times(log: Path) -> dict[str, float]:
    """Stage -> seconds, from the time stamps of consecutive `Running stage` lines."""
    starts, end = [], None
    for line in log.read_text().splitlines():
        m = re.match(r"(\d+) Running stage '([^']+)'", line)
        if m:
            starts.append((m.group(2), int(m.group(1))))
        elif re.match(r"\d+ ", line):
            end = int(line.split()[0])
    bounds = [t for _, t in starts[1:]] + [end or starts[-1][1]]
    return {name: float(b - t) for (name, t), b in zip(starts, bounds)}


def rerun(project: Path) -> dict[str, float]:
    models = yaml.safe_load((project / "params.yaml").read_text())["models"]
    cmds = {f"mass_head@{m}": ["stages.mass_head", m] for m in models}
    cmds |= {f"mass@{m}": ["stages.mass", m] for m in models}
    out = {}
    for name, args in cmds.items():
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", *args], cwd=project, check=True, capture_output=True)
        out[name] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, default=REPO)
    ap.add_argument("--log", type=Path)
    a = ap.parse_args()
    times = stage_times(a.log) if a.log else rerun(a.project)
    total = sum(times.values())
    mass = sum(v for k, v in times.items() if k.split("@")[0] in MASS_STAGES)
    print("| stage | seconds |\n|---|---|")
    for k, v in times.items():
        print(f"| {k} | {v:.0f} |")
    if a.log:
        print(f"| **mass stages / whole repro** | {mass:.0f} / {total:.0f} = {100 * mass / total:.1f} % |")
    print("\n| row | n kept | MAE g | MAE % of mean | n all (dropped) | MAE % of mean, all |"
          "\n|---|---|---|---|---|---|")
    for f in sorted((a.project / "metrics/eval").glob("mass_*.json")):
        r = json.loads(f.read_text())
        pct = lambda k: "–" if r.get(k) is None else f"{100 * r[k]:.1f} %"  # noqa: E731
        mae = "–" if r.get("mass_mae_g") is None else f"{r['mass_mae_g']:.1f}"
        print(f"| {f.stem} | {r.get('n_dishes')} | {mae} | {pct('mass_mae_pct_of_mean')} | "
              f"{r.get('n_all')} ({r.get('n_dropped')}) | {pct('mass_mae_pct_of_mean_all')} |")


if __name__ == "__main__":
    main()
