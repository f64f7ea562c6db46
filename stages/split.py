"""DVC stage `split`: data/raw/manifest.csv -> data/interim/split.csv (train/val/test: seeded, or on
Nutrition5k the release's split or whole capture sessions, `split.nutrition5k`) and
metrics/split.json (the split's name, sizes and near-duplicate counts across it)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline import io
from pipeline.cli import run_stage
from pipeline.config import Params, load_params
from pipeline.data.ingest import read_manifest
from pipeline.paths import RAW_DIR, SPLIT_CSV, SPLIT_JSON, repo_path
from pipeline.split_sessions import make_split


def run(p: Params, raw_dir: Path, out_csv: Path) -> tuple[pd.DataFrame, dict]:
    """The stage's work: (the manifest in `raw_dir` with a `split` column, written to `out_csv`;
    the split's report)."""
    df = read_manifest(raw_dir)
    split, report = make_split(df, p)
    df.insert(1, "split", split)
    io.write_csv(out_csv, df)
    return df, report


def main() -> None:
    df, report = run(load_params(), repo_path(RAW_DIR), repo_path(SPLIT_CSV))
    io.write_json(repo_path(SPLIT_JSON), report)
    print(df["split"].value_counts().to_dict(), {k: v for k, v in report.items() if k.startswith("test_with")})


if __name__ == "__main__":
    run_stage(main)
