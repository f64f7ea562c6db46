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


def test_bench_family_labels_equals_dvc_repro_labels(dvc_project) -> None:
    """bench/bench_family_labels.py (synthetic families, issue 27's deep bowls) runs the masks and
    labels stages' `run` on the split ingest wrote: the same labels as `dvc repro labels`."""
    from bench.bench_family_labels import family_table
    root = dvc_project({"data.n_dishes": 10, "data.workers": 1,
                        "data.families": {"deep_bowl": 0.5, "platform": 0.5}})
    dvc(root, "repro", "labels")
    stage = pd.read_csv(root / "data/dishes/index.csv", dtype={"dish_id": str}).set_index("dish_id")
    bench = family_table(root / "data/interim/split.csv", root / "data/raw", None, workers=1, root=root)
    bench = bench[bench["label_status"] == "ok"].set_index("dish_id")
    assert sorted(stage.index) == sorted(bench.index) and len(stage) >= 8
    bench = bench.loc[stage.index]
    np.testing.assert_array_equal(stage["volume_ml"].to_numpy(), bench["volume_ml"].to_numpy())
    for col in ("support", "support_json", "mask_px"):
        assert (stage[col].fillna("").astype(str) == bench[col].fillna("").astype(str)).all(), col
    assert (bench["suspect"] == stage["suspect"].fillna("").astype(str)).all()
    assert {"deep_bowl", "platform"} == set(stage["scene"]) and "bowl_surface" in set(stage["support"])
