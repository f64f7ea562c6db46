"""DVC stage `labels`: GT volume per dish -> data/dishes/index.csv (+ skipped.csv), metrics/labels.json."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline import io
from pipeline.cli import run_stage
from pipeline.config import Params, load_params
from pipeline.labels import labels_from_files, plot_mass_vs_volume
from pipeline.paths import INDEX_CSV, LABELS_JSON, MASKS_CSV, MASS_VS_VOLUME_PNG, SKIPPED_CSV, SPLIT_CSV, repo_path


def run(p: Params, split_csv: Path, masks_csv: Path, extra_roots: list[Path] = ()
        ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The stage's work on the files the earlier stages wrote: (index, skipped, report)."""
    return labels_from_files(split_csv, masks_csv, p, p.data_roots() + list(extra_roots))


def main() -> None:
    index, skipped, report = run(load_params(), repo_path(SPLIT_CSV), repo_path(MASKS_CSV))
    io.write_csv(repo_path(INDEX_CSV), index)
    io.write_csv(repo_path(SKIPPED_CSV), skipped)
    io.write_json(repo_path(LABELS_JSON), report)
    plot_mass_vs_volume(index, repo_path(MASS_VS_VOLUME_PNG))
    print(report)


if __name__ == "__main__":
    run_stage(main)
