"""DVC stage `split`: data/raw/manifest.csv -> data/interim/split.csv (seeded train/val/test)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline import io
from pipeline.config import Params, load_params
from pipeline.data.ingest import read_manifest
from pipeline.data.split import assign_splits


def run(p: Params, raw_dir: Path, out_csv: Path) -> pd.DataFrame:
    """The stage's work: the manifest in `raw_dir` with a `split` column, written to `out_csv`."""
    df = read_manifest(raw_dir)
    df.insert(1, "split", assign_splits(df, p.split.val_fraction, p.split.test_fraction, p.data.seed))
    io.write_csv(out_csv, df)
    return df


def main() -> None:
    df = run(load_params(), io.REPO_ROOT / "data/raw", io.REPO_ROOT / "data/interim/split.csv")
    print(df["split"].value_counts().to_dict())


if __name__ == "__main__":
    main()
