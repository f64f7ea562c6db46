"""DVC stage `ingest`: data source -> data/raw/ (+ manifest.csv) and metrics/ingest.json."""
from __future__ import annotations

from pathlib import Path

from pipeline import io
from pipeline.cli import run_stage
from pipeline.config import Params, load_params
from pipeline.data.ingest import ingest_nutrition5k, ingest_synthetic
from pipeline.paths import INGEST_JSON, RAW_DIR, repo_path

TIMING_KEYS = ("seconds", "dishes_per_s", "ms_per_dish")


def run(p: Params, out: Path) -> dict:
    """The stage's work with params `p`, writing data/raw into `out` (benches call this with a
    scratch folder, so they measure what `dvc repro` runs)."""
    d = p.data
    if d.source == "synthetic":
        _, report = ingest_synthetic(out, d.seed, d.n_dishes, d.width, d.height, d.noise, d.workers,
                                     d.families, p.volume.ring_px)
    else:  # nutrition5k (the config allows nothing else)
        _, report = ingest_nutrition5k(out, io.REPO_ROOT / d.root, p.nutrition5k, d.workers,
                                       p.suspect.max_rig_tilt_deg)
    return report


def main() -> None:
    report = run(load_params(), repo_path(RAW_DIR))
    timing = {k: report.pop(k) for k in TIMING_KEYS if k in report}  # printed, not a metric:
    io.write_json(repo_path(INGEST_JSON), report)                    # a fresh clone repeats its hash
    print({k: v for k, v in {**report, **timing}.items() if not isinstance(v, (list, dict))})


if __name__ == "__main__":
    run_stage(main)
