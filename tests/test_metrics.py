"""Volume/depth metrics on hand-computed cases."""
import math

import numpy as np
import pytest

from pipeline.evaluate.metrics import (
    assign_bins,
    bin_labels,
    depth_errors,
    height_error_mm,
    nanmean,
    per_bin_metrics,
    volume_metrics,
)


def test_volume_metrics_hand_computed():
    gt = [100.0, 200.0, 400.0, 50.0]
    pred = [110.0, 150.0, 400.0, 100.0]
    # errors 10, -50, 0, 50 ; ape .1, .25, 0, 1.0
    m = volume_metrics(gt, pred)
    assert m["n"] == 4
    assert m["volume_mae_ml"] == pytest.approx(27.5)
    assert m["volume_mape"] == pytest.approx((0.1 + 0.25 + 0 + 1.0) / 4)
    assert m["volume_median_ape"] == pytest.approx((0.1 + 0.25) / 2)
    assert m["volume_rmse_ml"] == pytest.approx(math.sqrt((100 + 2500 + 0 + 2500) / 4))
    assert m["volume_bias_pct"] == pytest.approx((0.1 - 0.25 + 0 + 1.0) / 4)
    assert m["volume_bias_ml"] == pytest.approx(2.5)
    assert m["within_10pct"] == pytest.approx(0.5)  # 0.1 counts as within (<=)
    assert m["within_20pct"] == pytest.approx(0.5)


def test_volume_metrics_perfect_and_empty():
    m = volume_metrics([10.0, 20.0], [10.0, 20.0])
    assert m["volume_mape"] == 0 and m["within_10pct"] == 1.0 and m["volume_rmse_ml"] == 0
    e = volume_metrics([], [])
    assert e["n"] == 0 and math.isnan(e["volume_mape"])


def test_volume_metrics_bad_input():
    with pytest.raises(ValueError, match="gt_ml"):
        volume_metrics([0.0, 10.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="differ in length"):
        volume_metrics([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="pred_ml"):
        volume_metrics([1.0], [float("nan")])


def test_bins_split_dishes_by_reference_volume():
    assert bin_labels((100, 300, 600)) == ["lt100", "100_300", "300_600", "ge600"]
    gt = np.array([50.0, 99.9, 100.0, 299.0, 300.0, 650.0])
    assert assign_bins(gt).tolist() == ["lt100", "lt100", "100_300", "100_300", "300_600", "ge600"]
    pred = gt * np.array([1.5, 1.5, 1.0, 1.1, 0.8, 1.0])
    b = per_bin_metrics(gt, pred)
    assert [b[k]["n"] for k in bin_labels()] == [2, 2, 1, 1]
    assert b["lt100"]["volume_mape"] == pytest.approx(0.5)
    assert b["100_300"]["volume_mape"] == pytest.approx(0.05)
    assert b["300_600"]["volume_bias_pct"] == pytest.approx(-0.2)
    assert b["ge600"]["within_10pct"] == 1.0
    with pytest.raises(ValueError, match="increasing"):
        bin_labels((300, 100))


def test_depth_errors_in_region_only():
    gt = np.full((4, 4), 0.4)
    pred = gt.copy()
    pred[0, 0] = 0.6          # outside region: ignored
    pred[1, 1] = 0.5          # inside: ratio 1.25 -> not < 1.25
    gt[2, 2] = 0.0            # invalid GT inside region: skipped
    region = np.zeros((4, 4), bool)
    region[1:3, 1:3] = True
    m = depth_errors(pred, gt, region)
    assert m["n_px"] == 3
    assert m["abs_rel"] == pytest.approx(0.25 / 3)
    assert m["rmse_m"] == pytest.approx(math.sqrt(0.01 / 3))
    assert m["delta1"] == pytest.approx(2 / 3)
    assert math.isnan(depth_errors(pred, gt, np.zeros((4, 4), bool))["abs_rel"])
    with pytest.raises(ValueError, match="shapes"):
        depth_errors(pred, gt, region[:2])


def test_height_error_mm():
    h_gt = np.array([[0.01, 0.02], [np.nan, 0.0]])
    h_pred = np.array([[0.012, 0.017], [0.05, 0.0]])
    m = height_error_mm(h_pred, h_gt, np.array([[True, True], [True, False]]))
    assert m["mae_mm"] == pytest.approx(2.5)
    assert m["bias_mm"] == pytest.approx(-0.5)
    assert nanmean([1.0, float("nan"), 3.0]) == 2.0 and math.isnan(nanmean([]))
