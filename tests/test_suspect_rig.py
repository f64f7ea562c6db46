"""Suspect flags, the one filter that drops them, the rig plane across dishes, label sanity vs mass."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline import suspect
from pipeline.data.rig import combine_planes
from pipeline.labels import mass_sanity
from pipeline.masks.cleanup import hysteresis
from pipeline.masks.support import Support


def test_border_fraction_and_mask_reasons() -> None:
    m = np.zeros((100, 100), bool)
    m[40:60, 40:60] = True
    assert suspect.border_fraction(m) == 0.0
    glued = np.zeros((100, 100), bool)
    glued[:, :3] = True          # a strip along the left edge: most of its outline is border
    assert suspect.border_fraction(glued) > 0.5
    assert suspect.mask_reasons(m, 178.0, "plate_floor", 0.5) == ["specks"]   # 400 px, 178 g
    assert suspect.mask_reasons(m, float("nan"), "plane", float("nan")) == []  # no mass: no specks
    assert suspect.mask_reasons(glued, float("nan"), "bowl_surface", 0.05) == ["border", "support_inliers"]


def test_label_reasons_density_and_tilt() -> None:
    assert suspect.label_reasons(200.0, 178.0, 1.0, rig=True) == []
    assert suspect.label_reasons(5.7, 178.0, 1.0, rig=True) == ["density"]       # 31 g/mL
    assert suspect.label_reasons(200.0, 178.0, 21.0, rig=True) == ["support_tilt"]
    assert suspect.label_reasons(200.0, 178.0, 21.0, rig=False) == []            # synthetic views
    assert suspect.label_reasons(1.0, float("nan"), 1.0, rig=False) == []        # no mass


def test_drop_suspect_is_the_one_filter() -> None:
    df = pd.DataFrame({"dish_id": ["a", "b", "c"], "suspect": ["", "density", np.nan]})
    assert list(suspect.drop_suspect(df, exclude=True)["dish_id"]) == ["a", "c"]
    assert len(suspect.drop_suspect(df, exclude=False)) == 3
    assert len(suspect.drop_suspect(df.drop(columns="suspect"), exclude=True)) == 3
    counts = suspect.count(pd.Series(["", "density", "specks;border", np.nan]))
    assert counts["n_suspect"] == 2 and counts["suspect"]["border"] == 1
    assert suspect.join(["density"], "specks") == "specks;density"


def test_rig_plane_is_the_median_of_good_dishes() -> None:
    good = [{"normal": [0.01 * k, 0.0, -1.0], "d": 0.408 + 0.001 * k, "inlier_fraction": 0.8}
            for k in (-1, 0, 1)]
    bowl = {"normal": [0.36, 0.0, -0.93], "d": 0.30, "inlier_fraction": 0.1}   # 21 deg, few inliers
    rig = combine_planes(good + [bowl, None])
    assert rig["n_dishes"] == 3 and rig["n_tried"] == 5
    assert rig["d"] == pytest.approx(0.408) and rig["tilt_deg"] < 0.1
    with pytest.raises(ValueError, match="none of 2 dishes"):
        combine_planes([bowl, None])


def test_rig_tilt_param_decides_which_planes_ingest_accepts() -> None:
    """params suspect.max_rig_tilt_deg (default 15) reaches the rig plane, not only the flags."""
    t = np.tan(np.radians(12.0))
    tilted = [{"normal": [t, 0.0, -1.0], "d": 0.40, "inlier_fraction": 0.9}]   # 12 deg
    assert combine_planes(tilted)["n_dishes"] == 1
    with pytest.raises(ValueError, match="none of 1 dishes"):
        combine_planes(tilted, max_tilt_deg=10.0)


def test_mass_sanity_and_support_json() -> None:
    vol = pd.Series([100.0, 200.0, 400.0, 10.0])
    mass = pd.Series([90.0, 210.0, 380.0, np.nan])
    s = mass_sanity(vol, mass)
    assert s["n_with_mass"] == 3 and s["spearman_volume_mass"] == pytest.approx(1.0)
    assert 0.9 <= s["density_g_per_ml"]["median"] <= 1.05 and s["n_density_outside_0.4_1.6"] == 0
    sup = Support("bowl_surface", [0.0, 0.0, -1.0], 0.4, [0.0, 0.0], [0.01, 0.05], [0.06, 0.07], 0.3)
    assert Support.from_json(sup.to_json()) == sup
    with pytest.raises(ValueError, match="kind"):
        Support.from_json('{"kind": "table"}')


def test_hysteresis_keeps_weak_pixels_connected_to_seeds() -> None:
    weak = np.zeros((20, 20), bool)
    weak[2:8, 2:8] = weak[12:18, 12:18] = True
    strong = np.zeros_like(weak)
    strong[4, 4] = True
    grown = hysteresis(strong, weak)
    assert grown[2:8, 2:8].all() and not grown[12:18, 12:18].any()


def test_evaluation_and_training_rows_leave_suspect_dishes_out(tmp_path) -> None:
    from pipeline.evaluate.scoring import select_split
    from pipeline.train.datamodule import DishDataModule

    df = pd.DataFrame({"dish_id": ["a", "b", "c", "d"], "split": ["test", "test", "train", "train"],
                       "volume_ml": [100.0, 5.7, 80.0, 90.0], "suspect": ["", "density", "", "specks"]})
    assert list(select_split(df, "test")["dish_id"]) == ["a"]          # params: suspect.exclude on
    full = df.assign(rgb_path="x.png", depth_path="x.png", mask_path="x.png", fx=500.0, fy=500.0,
                     cx=320.0, cy=240.0, width=640, height=480)
    full.to_csv(tmp_path / "index.csv", index=False)
    dm = DishDataModule(tmp_path / "index.csv", (126, 168), 2, None)
    assert list(dm.rows("train")["dish_id"]) == ["c"]


def test_a_split_left_empty_fails_in_one_line_before_the_model_is_built(tmp_path) -> None:
    """The rehearsal's 12-dish tree left its one val dish suspect: the training stage must say so
    at once (one line naming the index and the split), not after minutes of model building."""
    import pytest

    from pipeline.config import params_from_dict
    from pipeline.train.fit import run_stage

    df = pd.DataFrame({"dish_id": ["a", "b", "c"], "split": ["train", "train", "val"],
                       "volume_ml": [100.0, 80.0, 90.0], "suspect": ["", "", "empty_mask"],
                       "rgb_path": "x.png", "depth_path": "x.png", "mask_path": "x.png", "fx": 500.0,
                       "fy": 500.0, "cx": 320.0, "cy": 240.0, "width": 640, "height": 480})
    df.to_csv(tmp_path / "index.csv", index=False)
    params = params_from_dict({"model_cfg": {"depth_anything_v2": {"pretrained": "no/such-checkpoint"}}})
    with pytest.raises(ValueError, match=r"index.csv: no usable dishes with split == 'val' \(all 1 suspect"):
        run_stage("depth_anything_v2", 1, params, tmp_path / "index.csv", tmp_path / "w", tmp_path / "c",
                  tmp_path / "l", tmp_path / "m.json")
