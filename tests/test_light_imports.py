"""Stages import only what they use: the numpy workers (masks, labels) never load torch, and the
table stages (compare, report) load neither torch nor the data, masks, models or predict code,
so they start fast and (with dvc.yaml's deps) do not re-run when that code changes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("pipeline.data", "pipeline.masks", "pipeline.models", "pipeline.predict", "pipeline.geometry",
         "pipeline.train", "pipeline.evaluate.scoring")

pytestmark = pytest.mark.slow  # four fresh interpreters (~7 s): the import structure, checked by the full suite


def _loaded(module: str) -> list[str]:
    """sys.modules after importing `module` in a fresh interpreter."""
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("stage", ["stages.masks", "stages.labels"])
def test_numpy_workers_do_not_import_torch(stage: str) -> None:
    assert "torch" not in _loaded(stage)


@pytest.mark.parametrize("stage", ["stages.compare", "stages.report"])
def test_table_stages_import_no_heavy_code(stage: str) -> None:
    mods = _loaded(stage)
    assert "torch" not in mods
    heavy = [m for m in mods if m.startswith(HEAVY)]
    assert not heavy, f"{stage} imports {heavy}"
