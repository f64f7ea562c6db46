"""DVC stage `masks`: one food mask per dish in data/masks/ (labels, training), a depth-free
given mask per dish for the evaluation (ground truth, or RGB-only in data/masks/given/), and
metrics/masks.json."""
from __future__ import annotations

from pathlib import Path

from pipeline import io
from pipeline.cli import run_stage
from pipeline.config import Params, load_params
from pipeline.masks.make import masks_from_files
from pipeline.paths import MASKS_DIR, MASKS_JSON, RAW_DIR, SPLIT_CSV, repo_path


def run(p: Params, split_csv: Path, raw_dir: Path, out_dir: Path, extra_roots: list[Path] = ()) -> dict:
    """The stage's work on the files the earlier stages wrote (split.csv, data/raw with the
    release's rig_plane.json); benches call this with scratch folders."""
    _, report = masks_from_files(split_csv, raw_dir, out_dir, p, p.data_roots() + list(extra_roots))
    return report


def main() -> None:
    report = run(load_params(), repo_path(SPLIT_CSV), repo_path(RAW_DIR), repo_path(MASKS_DIR))
    io.write_json(repo_path(MASKS_JSON), report)
    print(report)


if __name__ == "__main__":
    run_stage(main)
