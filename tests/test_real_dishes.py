"""The two real Nutrition5k dishes (a plate, a deep steel bowl): rig-aware offline masks reach
IoU >= 0.7 against hand annotations and volume labels land at 0.4-1.6 g/mL, both through the
library and through the real `dvc repro labels`. Skipped when the sample release is absent."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, dvc

ROOT = (REPO / "../shared/nutrition5k_samples").resolve()
pytestmark = pytest.mark.skipif(not (ROOT / "imagery").is_dir(),
                                reason="real Nutrition5k sample dishes not present")
DISHES = {"dish_1559845399": "plate_floor", "dish_1568056217": "bowl_surface"}


def test_real_dishes_masks_and_density_at_default_intrinsics() -> None:
    sys.path.insert(0, str(REPO / "bench"))
    from bench_real_dishes import real_dish_table

    rows = {r["dish_id"]: r for r in real_dish_table(ROOT, focals=(616.6,))}
    assert set(rows) == set(DISHES)
    for dish, support in DISHES.items():
        r = rows[dish]
        assert r["iou"] >= 0.7, r
        assert 0.4 <= r["density_g_ml"] <= 1.6, r
        assert r["support"] == support and r["suspect"] == "-", r


@pytest.mark.skipif(shutil.which("dvc") is None, reason="dvc CLI not installed")
def test_real_dishes_dvc_repro_labels(dvc_project) -> None:
    root = dvc_project({"data.source": "nutrition5k", "data.root": str(ROOT), "data.workers": 1,
                        "masks.method": "geometry"})
    dvc(root, "repro", "labels")
    ingest = json.loads((root / "metrics/ingest.json").read_text())
    rig = ingest["rig_plane"]
    assert rig["n_dishes"] == 2 and rig["tilt_deg"] < 2 and 0.40 < rig["d"] < 0.42  # surround ~0.41 m
    assert (root / "data/raw/rig_plane.json").is_file()
    index = pd.read_csv(root / "data/dishes/index.csv", dtype={"dish_id": str}).set_index("dish_id")
    for dish, support in DISHES.items():
        r = index.loc[dish]
        assert r["support"] == support
        assert pd.isna(r["suspect"]) or r["suspect"] == ""
        assert 0.4 <= r["mass_g"] / r["volume_ml"] <= 1.6
    labels = json.loads((root / "metrics/labels.json").read_text())
    assert labels["n_suspect"] == 0 and labels["mass_sanity"]["n_density_outside_0_4_1_6"] == 0
    assert (root / "plots/labels/mass_vs_volume.png").stat().st_size > 1000
    masks = json.loads((root / "metrics/masks.json").read_text())
    assert masks["n_suspect"] == 0 and masks["support"]["bowl_surface"] == 1
