"""Run the DVC stages' own entries (stages/ingest.py ... stages/labels.py `run`) on a
Nutrition5k-format release in a scratch folder: what `dvc repro labels` runs with
data.source=nutrition5k and data.root=<release>, so a bench measures the stage, not a look-alike
(tests/test_stage_path.py pins the two equal)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from pipeline.config import Params


def release_params(p: Params, root: Path, workers: int | None = None) -> Params:
    """`p` with data.source=nutrition5k and data.root=`root` (as `dvc exp run -S` would set)."""
    data = dataclasses.replace(p.data, source="nutrition5k", root=str(Path(root).resolve()),
                               workers=workers or p.data.workers)
    return dataclasses.replace(p, data=data)


def run_stages(root: Path, work: Path, p: Params, workers: int | None = None
               ) -> tuple[pd.DataFrame, pd.DataFrame, dict, dict]:
    """ingest -> split -> masks -> labels on the release at `root`, outputs under `work`
    (raw/, split.csv, masks/): (index, skipped, labels report with the masks report under
    'masks', ingest report)."""
    from stages import ingest, labels, masks, split

    p = release_params(p, root, workers)
    work = Path(work).resolve()
    extra = [work]
    ingest_report = ingest.run(p, work / "raw")
    split.run(p, work / "raw", work / "split.csv")
    masks_report = masks.run(p, work / "split.csv", work / "raw", work / "masks", extra)
    index, skipped, report = labels.run(p, work / "split.csv", work / "masks" / "masks.csv", extra)
    report["masks"] = masks_report
    return index, skipped, report, ingest_report
