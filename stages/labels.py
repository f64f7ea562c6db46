"""DVC stage `labels`: GT volume per dish -> data/dishes/index.csv (+ skipped.csv), metrics/labels.json."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline import io
from pipeline.config import Params, load_params
from pipeline.labels import labels_from_files, plot_mass_vs_volume


def run(p: Params, split_csv: Path, masks_csv: Path, extra_roots: list[Path] = ()
        ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The stage's work on the files the earlier stages wrote: (index, skipped, report)."""
    return labels_from_files(split_csv, masks_csv, p, p.data_roots() + list(extra_roots))


def main() -> None:
    index, skipped, report = run(load_params(), io.REPO_ROOT / "data/interim/split.csv",
                                 io.REPO_ROOT / "data/masks/masks.csv")
    io.write_csv(io.REPO_ROOT / "data/dishes/index.csv", index)
    io.write_csv(io.REPO_ROOT / "data/dishes/skipped.csv", skipped)
    io.write_json(io.REPO_ROOT / "metrics/labels.json", report)
    plot_mass_vs_volume(index, io.REPO_ROOT / "plots/labels/mass_vs_volume.png")
    print(report)


if __name__ == "__main__":
    main()
