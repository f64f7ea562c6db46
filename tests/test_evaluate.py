"""Evaluation end to end on a tiny index (tmp_path): perfect / failing / tiny random model,
and both baselines."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.baselines import AreaHeightBaseline, MeanVolumeBaseline, baseline_table, fit_baselines
from pipeline.evaluate import (EvalConfig, VolumeConfig, evaluate_model, evaluate_predictor, finish_table,
                               inference_size, model_predictor, reference_volume, select_split, summarise)
from pipeline.io import read_json, rel_to_repo, write_depth_png, write_mask, write_rgb

H, W, F, TABLE_Z = 84, 112, 120.0, 0.40
SPEC_KEYS = ["n_dishes", "volume_mae_ml", "volume_mape", "volume_median_ape", "volume_rmse_ml",
             "volume_bias_pct", "within_10pct", "within_20pct", "depth_abs_rel", "depth_rmse_m", "depth_delta1"]
SPEC_CSV = ["dish_id", "volume_ml_gt", "volume_ml_pred", "abs_err_ml", "ape"]


def box_dish(half_w: int, half_h: int, height_m: float):
    """Top-down view of a level table at 0.40 m with a box of food: exact z-depth."""
    depth = np.full((H, W), TABLE_Z, np.float32)
    mask = np.zeros((H, W), bool)
    cy, cx = H // 2, W // 2
    mask[cy - half_h:cy + half_h, cx - half_w:cx + half_w] = True
    depth[mask] = TABLE_Z - height_m
    rng = np.random.default_rng(half_w * 100 + half_h)
    rgb = rng.integers(60, 120, (H, W, 3), dtype=np.uint8)
    rgb[mask] = (200, 180, 40)
    z = TABLE_Z - height_m
    vol_ml = mask.sum() * z * z / (F * F) * height_m * 1e6  # footprint = top face (vertical walls)
    return rgb, depth, mask, vol_ml


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory) -> tuple[pd.DataFrame, Path]:
    root = tmp_path_factory.mktemp("dishes")
    rows = []
    specs = [("train", 8, 6, 0.02), ("train", 12, 8, 0.02), ("train", 16, 10, 0.02), ("val", 10, 8, 0.02),
             ("test", 6, 5, 0.02), ("test", 14, 9, 0.02), ("test", 20, 12, 0.02)]
    for i, (split, hw, hh, h) in enumerate(specs):
        rgb, depth, mask, vol = box_dish(hw, hh, h)
        paths = {k: root / f"d{i}_{k}.png" for k in ("rgb", "depth", "mask")}
        write_rgb(paths["rgb"], rgb)
        write_depth_png(paths["depth"], depth)
        write_mask(paths["mask"], mask)
        rows.append({"dish_id": f"d{i}", "split": split, "rgb_path": rel_to_repo(paths["rgb"]),
                     "depth_path": rel_to_repo(paths["depth"]), "mask_path": rel_to_repo(paths["mask"]),
                     "fx": F, "fy": F, "cx": (W - 1) / 2, "cy": (H - 1) / 2, "width": W, "height": H,
                     "volume_ml": vol * 1.01, "volume_ml_true": vol if split == "test" else np.nan})
    return pd.DataFrame(rows), root


VCFG = VolumeConfig(method="columns", ring_px=8, cell_mm=2.0)


def test_reference_volume_prefers_analytic_truth(tiny_index):
    df, _ = tiny_index
    ref = reference_volume(df)
    test = df["split"] == "test"
    assert np.allclose(ref[test], df.loc[test, "volume_ml_true"])
    assert np.allclose(ref[~test], df.loc[~test, "volume_ml"])
    dishes = select_split(df, "test")
    assert len(dishes) == 3 and "volume_ml_gt" in dishes
    with pytest.raises(ValueError, match="no dishes in split"):
        select_split(df, "nope")


def test_perfect_depth_scores_near_zero(tiny_index):
    df, root = tiny_index
    dishes = select_split(df, "test")
    gt_by_shape = {}

    def oracle(rgb, K):  # the GT depth, looked up by the dish's image (the model never sees it)
        return gt_by_shape[rgb.tobytes()]
    from pipeline.evaluate import load_dish
    for _, r in dishes.iterrows():
        rgb, gt, _, _ = load_dish(r, [root])
        gt_by_shape[rgb.tobytes()] = gt
    table = evaluate_predictor(oracle, dishes, VCFG, allowed_roots=[root])
    s = summarise(table)
    assert s["n_dishes"] == 3 and s["n_failed"] == 0
    assert s["volume_mape"] < 0.03
    assert s["depth_abs_rel"] == 0 and s["depth_delta1"] == 1 and s["depth_ring_abs_rel"] == 0
    assert s["height_mae_mm"] == pytest.approx(0, abs=1e-3)
    oracle = evaluate_predictor(None, dishes, VCFG, allowed_roots=[root])  # predict=None: GT depth
    assert np.allclose(oracle["volume_ml_pred"], table["volume_ml_pred"])


def test_failures_are_counted_and_scored_not_dropped(tiny_index):
    df, root = tiny_index
    dishes = select_split(df, "test")
    table = evaluate_predictor(lambda rgb, K: np.zeros(rgb.shape[:2], np.float32), dishes, VCFG,
                               allowed_roots=[root])
    assert len(table) == 3 and table["failed"].all()
    assert (table["volume_ml_pred"] == 0).all() and np.allclose(table["ape"], 1.0)
    assert all(table["error"].str.len() > 0)
    s = summarise(table)
    assert s["n_failed"] == 3 and s["volume_mape"] == pytest.approx(1.0)


def test_baselines_fit_on_train_only(tiny_index):
    df, root = tiny_index
    train = df[df["split"] == "train"]
    mean = MeanVolumeBaseline.fit(train)
    assert mean.mean_ml == pytest.approx(train["volume_ml"].mean())
    ah = AreaHeightBaseline.fit(train, [root])
    assert ah.z_ref_m == pytest.approx(TABLE_Z - 0.02, abs=2e-4)
    # every training label is 1.01 x a 2 cm column seen at 0.38 m -> mean height 2.02 cm
    assert ah.mean_height_m == pytest.approx(0.0202, rel=2e-3)
    dishes = select_split(df, "test")
    pred = ah.predict(dishes, [root])
    assert np.allclose(pred, dishes["volume_ml_gt"] * 1.01, rtol=3e-3)
    fitted = fit_baselines(train, [root])
    assert set(fitted) == {"baseline_mean", "baseline_area_height"}
    t = finish_table(baseline_table(fitted["baseline_mean"], dishes, [root]))
    assert np.allclose(t["volume_ml_pred"], mean.mean_ml) and not t["failed"].any()
    with pytest.raises(ValueError, match="leakage"):
        fit_baselines(df, [root])


def test_tiny_random_model_end_to_end(tiny_index, tmp_path):
    from pipeline.models import build_model
    df, root = tiny_index
    dishes = select_split(df, "test")
    params = {"model_cfg": {"depth_anything_v2": {"pretrained": None, "max_depth": 2, "size": [56, 84]}},
              "eval": {"n_worst": 2, "volume_bins": [50, 150]}}
    size = inference_size(params, "depth_anything_v2")
    assert size == (56, 84)
    model = build_model("depth_anything_v2", params["model_cfg"]["depth_anything_v2"], seed=0).eval()
    ecfg = EvalConfig.from_params(params)
    s = evaluate_model("tiny", model_predictor(model, size), dishes, VCFG, ecfg,
                       tmp_path / "metrics", tmp_path / "plots", [root])
    js = read_json(tmp_path / "metrics" / "tiny.json")
    assert js == s
    for k in SPEC_KEYS:
        assert k in js
    assert js["n_dishes"] == 3 and 0 <= js["n_failed"] <= 3
    assert set(js["bins"]) == {"lt50", "50_150", "ge150"}
    assert sum(b["n"] for b in js["bins"].values()) == 3
    csv = pd.read_csv(tmp_path / "metrics" / "tiny.csv")
    assert list(csv.columns[:2]) == SPEC_CSV[:2] and set(SPEC_CSV) <= set(csv.columns)
    assert len(csv) == 3 and np.isfinite(csv["volume_ml_pred"]).all()
    for f in ("scatter.png", "error_hist.png", "error_by_bin.png", "worst_dishes.png"):
        assert (tmp_path / "plots" / "tiny" / f).stat().st_size > 1000
