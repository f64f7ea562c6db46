"""The benches measure the stage: bench/stage_path.py (the stages' own `run` entries, which
bench/bench_release_labels.py, bench_bowl_labels.py and bench_real_dishes.py call) gives the
same labels as `dvc repro labels` on a small release tree with bowls and plates."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import dvc

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("dvc") is None, reason="dvc CLI not installed")]


def test_bench_stage_path_equals_dvc_repro_labels(tmp_path, dvc_project) -> None:
    from bench.stage_path import run_stages
    from pipeline.config import load_params
    from tests.fixtures.bowl_release import write_bowl_release

    tree = tmp_path / "release"
    write_bowl_release(tree, 6, seed=9)          # 2 bowls, 4 plates
    bench_index, _, bench_report, _ = run_stages(tree, tmp_path / "work", load_params(), workers=1)
    root = dvc_project({"data.source": "nutrition5k", "data.root": str(tree), "data.workers": 1})
    dvc(root, "repro", "labels")
    stage = pd.read_csv(root / "data/dishes/index.csv", dtype={"dish_id": str}).set_index("dish_id")
    bench = bench_index.set_index("dish_id")
    assert sorted(stage.index) == sorted(bench.index) and len(stage) == 6
    bench = bench.loc[stage.index]
    np.testing.assert_array_equal(stage["volume_ml"].to_numpy(), bench["volume_ml"].to_numpy())
    for col in ("support", "support_json", "suspect", "mask_px"):
        # an empty CSV cell reads back as missing: compare as text with missing = ""
        assert (stage[col].fillna("").astype(str) == bench[col].fillna("").astype(str)).all(), col
    assert {"bowl_surface", "plate_floor"} <= set(stage["support"])
