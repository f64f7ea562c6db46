"""DVC end-to-end on a Nutrition5k-format tree: `dvc repro labels` (ingest -> split -> masks -> labels)
with data.source=nutrition5k and data.root=<tree>. Find it with `pytest -k n5k_dvc`."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from conftest import dvc

from tests.fixtures.fake_release import make_release_tree

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("dvc") is None, reason="dvc CLI not installed")]


def test_n5k_dvc_repro_labels(tmp_path, dvc_project):
    tree = tmp_path / "release"
    planted = make_release_tree(tree, n=3, seed=0, corrupt=True)
    root = dvc_project({"data.source": "nutrition5k", "data.root": str(tree), "data.workers": 1,
                        "masks.method": "geometry"})
    dvc(root, "repro", "labels")

    ingest = json.loads((root / "metrics/ingest.json").read_text())
    assert ingest["source"] == "nutrition5k"
    assert ingest["n_found"] == len(planted["kept"]) + 3 and ingest["n_kept"] == len(planted["kept"])
    assert ingest["n_skipped"] == 3
    for reason, ids in planted["skipped"].items():
        assert ingest["skipped"][reason] == len(ids) and ingest["skipped_ids"][reason] == ids
    assert ingest["split_ids_without_imagery"] == {s: len(v) for s, v in planted["no_imagery"].items()}

    split = pd.read_csv(root / "data/interim/split.csv", dtype={"dish_id": str})
    assert sorted(split["dish_id"]) == sorted(planted["kept"])
    for r in split.to_dict("records"):  # the release's test split stays test
        assert (r["split"] == "test") == (planted["split"][r["dish_id"]] == "test")

    index = pd.read_csv(root / "data/dishes/index.csv", dtype={"dish_id": str})
    assert 1 <= len(index) <= len(planted["kept"])
    assert set(index["dish_id"]) <= set(planted["kept"])
    assert {"mass_g", "volume_ml", "split", "rgb_path", "depth_path", "mask_path"} <= set(index.columns)
    # the given evaluation setting's depth-free masks: RGB only (no SAM 2 checkpoint file offline)
    assert (index["given_mask_source"] == "rgb_rule").all()
    for r in index.to_dict("records"):
        assert r["mass_g"] == pytest.approx(planted["mass_g"][r["dish_id"]])
        assert r["depth_path"].endswith(f"{r['dish_id']}/depth_raw.png")  # read in place
        assert r["volume_ml"] > 0
        assert r["given_mask_path"].endswith(f"data/masks/given/{r['dish_id']}.png")
    masks = json.loads((root / "metrics/masks.json").read_text())
    assert masks["given_mask_source"] == {"rgb_rule": len(planted["kept"])} and masks["n_given_failed"] == 0
