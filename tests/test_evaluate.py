"""Evaluation end to end on a tiny index (tmp_path): perfect / failing / tiny random model,
both baselines, both mask settings, and the proof that predictions never read measured depth."""
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.config import MasksConfig, VolumeConfig, as_params
from pipeline.evaluate.baselines import AreaHeightBaseline, MeanVolumeBaseline, baseline_table, fit_baselines
from pipeline.evaluate.names import stage0_kind
from pipeline.evaluate.scoring import (
    END_TO_END,
    GIVEN,
    MeasureConfig,
    evaluate_model,
    evaluate_predictor,
    finish_table,
    given_mask_source,
    inference_size,
    model_predictor,
    reference_volume,
    select_split,
    summarise,
)
from pipeline.io import read_json, rel_to_repo, write_depth_png, write_mask, write_rgb

H, W, F, TABLE_Z = 84, 112, 120.0, 0.40
# metric keys and per-dish columns of docs/contracts.md ("Files the pipeline writes")
CONTRACT_KEYS = ["n_dishes", "volume_mae_ml", "volume_mape", "volume_median_ape", "volume_rmse_ml",
             "volume_bias_pct", "within_10pct", "within_20pct", "depth_abs_rel", "depth_rmse_m", "depth_delta1"]
CONTRACT_CSV = ["dish_id", "volume_ml_gt", "volume_ml_pred", "abs_err_ml", "ape"]


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
                     "gt_mask_path": rel_to_repo(paths["mask"]),
                     "fx": F, "fy": F, "cx": (W - 1) / 2, "cy": (H - 1) / 2, "width": W, "height": H,
                     "volume_ml": vol * 1.01, "volume_ml_true": vol if split == "test" else np.nan})
    return pd.DataFrame(rows), root


VCFG = MeasureConfig(VolumeConfig(method="columns", ring_px=8, cell_mm=2.0),
                     MasksConfig(min_height_mm=4.0, min_area_px=20))


def colour_depth(rgb: np.ndarray, K: np.ndarray) -> np.ndarray:
    """A depth predictor that reads only the RGB: yellow is food 2 cm high on a 0.40 m table."""
    food = (rgb[..., 0] > 180) & (rgb[..., 2] < 80)
    return np.where(food, TABLE_Z - 0.02, TABLE_Z).astype(np.float32)


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
    from pipeline.evaluate.scoring import load_dish
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
    # no depth-free masks (Nutrition5k): area x height is not fitted, never on depth-cut masks
    assert set(fit_baselines(train.drop(columns="gt_mask_path"), [root], with_masks=False)) == {"baseline_mean"}


@pytest.mark.slow
def test_tiny_random_model_end_to_end(tiny_index, tmp_path):
    from pipeline.models import build_model
    df, root = tiny_index
    dishes = select_split(df, "test")
    params = {"model_cfg": {"depth_anything_v2": {"pretrained": None, "max_depth": 2, "size": [56, 84]}},
              "eval": {"n_worst": 2, "volume_bins": [50, 150]}}
    size = inference_size(params, "depth_anything_v2")
    assert size == (56, 84)
    model = build_model("depth_anything_v2", params["model_cfg"]["depth_anything_v2"], seed=0).eval()
    ecfg = as_params(params).eval
    predict = model_predictor(model, size)
    s = evaluate_model("tiny", predict, dishes, VCFG, ecfg, tmp_path / "metrics", tmp_path / "plots", [root])
    e2e = evaluate_model("tiny", predict, dishes, VCFG, ecfg, tmp_path / "metrics", tmp_path / "plots", [root],
                         setting=END_TO_END)
    js = read_json(tmp_path / "metrics" / "tiny.json")
    assert js == s and js["mask_source"] == "gt_mask"
    assert read_json(tmp_path / "metrics" / "tiny_e2e.json") == e2e and e2e["mask_source"] == "predicted_depth"
    assert e2e["n_dishes"] == 3
    for k in CONTRACT_KEYS:
        assert k in js and k in e2e
    # no depth-free masks (an index without given_mask_path or gt_mask_path): the given setting says
    # so instead of using depth masks
    na = evaluate_model("n5k", predict, dishes.drop(columns="gt_mask_path"), VCFG, ecfg, tmp_path / "metrics",
                        tmp_path / "plots", [root])
    assert na["n_dishes"] == 0 and na["mask_source"].startswith("unavailable")
    assert js["n_dishes"] == 3 and 0 <= js["n_failed"] <= 3
    assert set(js["bins"]) == {"lt50", "50_150", "ge150"}
    assert sum(b["n"] for b in js["bins"].values()) == 3
    csv = pd.read_csv(tmp_path / "metrics" / "tiny.csv")
    assert list(csv.columns[:2]) == CONTRACT_CSV[:2] and set(CONTRACT_CSV) <= set(csv.columns)
    assert len(csv) == 3 and np.isfinite(csv["volume_ml_pred"]).all()
    for f in ("scatter.png", "error_hist.png", "error_by_bin.png", "worst_dishes.png"):
        assert (tmp_path / "plots" / "tiny" / f).stat().st_size > 1000


def test_end_to_end_masks_come_from_predicted_depth(tiny_index):
    df, root = tiny_index
    dishes = select_split(df, "test")
    assert given_mask_source(dishes) == "gt_mask"
    assert given_mask_source(dishes.drop(columns="gt_mask_path")) is None
    # the masks stage's column wins; sources are named (and '+'-joined when dishes mix them)
    staged = dishes.assign(given_mask_path=dishes["gt_mask_path"],
                           given_mask_source=["rgb_rule", "rgb_rule", "sam2_rgb"])
    assert given_mask_source(staged) == "rgb_rule+sam2_rgb"
    assert given_mask_source(staged.assign(given_mask_path=["", "a.png", "b.png"])) is None
    given = evaluate_predictor(colour_depth, dishes, VCFG, allowed_roots=[root], setting=GIVEN)
    e2e = evaluate_predictor(colour_depth, dishes, VCFG, allowed_roots=[root], setting=END_TO_END)
    assert not given["failed"].any() and not e2e["failed"].any()
    # the colour rule finds the boxes: both settings land near the box volume (the end-to-end
    # mask loses the box corners to the geometry mask's morphological opening)
    assert np.allclose(e2e["volume_ml_pred"], given["volume_ml_pred"], rtol=0.1)
    assert np.allclose(given["volume_ml_pred"], dishes["volume_ml_gt"], rtol=0.03)
    assert (e2e["mask_px"] > 0).all()
    flat = evaluate_predictor(lambda rgb, K: np.full(rgb.shape[:2], TABLE_Z, np.float32), dishes, VCFG,
                              allowed_roots=[root], setting=END_TO_END)
    assert flat["failed"].all() and (flat["volume_ml_pred"] == 0).all()
    assert flat["error"].str.contains("no food").all()


@pytest.mark.slow
def test_noise_in_measured_depth_changes_scores_not_predictions(tiny_index, tmp_path):
    """The proof that the prediction side never reads the measured depth: replace every test
    dish's depth PNG with noise; every predicted volume (both settings, models and baselines)
    stays bit-identical, only the depth scores move. The oracle, which IS the measured depth,
    moves: the test would catch a leak."""
    from pipeline.models import build_model
    df, src_root = tiny_index
    root = tmp_path / "copy"
    shutil.copytree(src_root, root)
    df = df.copy()
    for c in ("rgb_path", "depth_path", "mask_path", "gt_mask_path"):
        df[c] = [rel_to_repo(root / Path(p).name) for p in df[c]]
    dishes = select_split(df, "test")
    model = build_model("depth_anything_v2", {"pretrained": None, "max_depth": 2, "size": [56, 84]}, seed=0).eval()
    predictors = {"colour": colour_depth, "tiny": model_predictor(model, (56, 84)), "oracle": None}
    train = df[df["split"] == "train"]

    def run():
        out = {(n, s): evaluate_predictor(p, dishes, VCFG, allowed_roots=[root], setting=s)
               for n, p in predictors.items() for s in (GIVEN, END_TO_END)}
        fitted = fit_baselines(train, [root])
        out.update({(n, GIVEN): finish_table(baseline_table(b, dishes, [root])) for n, b in fitted.items()})
        return out

    before = run()
    rng = np.random.default_rng(1)
    for p in dishes["depth_path"]:
        write_depth_png(root / Path(p).name, rng.uniform(0.2, 0.6, (H, W)).astype(np.float32))
    after = run()
    for key, t in before.items():
        if key[0] == "oracle":
            continue
        assert np.array_equal(t["volume_ml_pred"], after[key]["volume_ml_pred"]), key
        assert np.array_equal(t["failed"], after[key]["failed"]), key
        assert np.array_equal(t["ape"], after[key]["ape"]), key
    assert not before[("colour", END_TO_END)]["failed"].any()  # a non-trivial prediction was compared
    for s in (GIVEN, END_TO_END):
        assert not np.allclose(before[("colour", s)]["depth_abs_rel"], after[("colour", s)]["depth_abs_rel"])
        assert not np.allclose(before[("tiny", s)]["depth_abs_rel"], after[("tiny", s)]["depth_abs_rel"])
    assert not np.allclose(before[("oracle", GIVEN)]["volume_ml_pred"], after[("oracle", GIVEN)]["volume_ml_pred"])


def test_stage0_row_names():
    assert stage0_kind({"pretrained": None}) == "random init"
    assert stage0_kind({"pretrained": "depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf"}) == \
        "pretrained, not fine-tuned"


def _lookup_predictor(dishes: pd.DataFrame, root: Path, scale: float):
    """A predictor returning `scale` x the dish's measured depth, found by its image (a model that sees
    the food perfectly but has the distance wrong by `scale`)."""
    from pipeline.evaluate.scoring import load_dish
    by_image = {}
    for _, r in dishes.iterrows():
        rgb, gt, _, _ = load_dish(r, [root])
        by_image[rgb.tobytes()] = gt
    return lambda rgb, K: (scale * by_image[rgb.tobytes()]).astype(np.float32)


def test_ring_rescaled_diagnostic_recovers_the_scale(tiny_index, tmp_path):
    """Predicted = 1.3 x measured depth: the ring ratio is 1.3, the model row's volumes are 1.3³ x the
    measured depth's, and the diagnostic row (depth / ring ratio) lands on the measured depth's volumes.
    It is written as a diagnostic, per family, and never enters the comparison plan (no verdict)."""
    from pipeline.evaluate.compare import comparison_plan
    from pipeline.evaluate.names import BASELINE_NAMES, DIAG_KIND, DIAG_SUFFIX, SETTINGS, STAGE0_SUFFIX
    df, root = tiny_index
    dishes = select_split(df.assign(scene=["table"] * 4 + ["table", "platform", "deep_bowl"],
                                    support=["plane"] * 6 + ["bowl_surface"]), "test")
    ecfg = as_params({"eval": {"n_worst": 1, "volume_bins": [50, 150]}}).eval
    metrics, plots = tmp_path / "metrics", tmp_path / "plots"
    s = evaluate_model("m", _lookup_predictor(dishes, root, 1.3), dishes, VCFG, ecfg, metrics, plots, [root],
                       extra={"kind": "fine-tuned (stage 2)"}, diagnostic=True)
    measured = evaluate_predictor(None, dishes, VCFG, allowed_roots=[root])   # the measured depth's volumes
    model = pd.read_csv(metrics / "m.csv", dtype={"dish_id": str, "scene": str})
    diag = pd.read_csv(metrics / f"m{DIAG_SUFFIX}.csv", dtype={"dish_id": str, "scene": str})
    assert np.allclose(model["ring_scale_ratio"], 1.3, rtol=1e-4) and s["ring_scale_ratio_median"] == \
        pytest.approx(1.3, rel=1e-4)
    assert np.allclose(model["volume_ml_pred"], 1.3 ** 3 * measured["volume_ml_pred"], rtol=2e-3)
    assert np.allclose(diag["volume_ml_pred"], measured["volume_ml_pred"], rtol=2e-3)
    assert np.allclose(diag["ring_scale_ratio"], 1.0, atol=1e-4) and not diag["failed"].any()
    assert list(diag["dish_id"]) == list(model["dish_id"]) and list(diag["scene"]) == ["table", "platform", "deep_bowl"]
    d = read_json(metrics / f"m{DIAG_SUFFIX}.json")
    assert d["kind"] == DIAG_KIND and "reads measured depth" in d["kind"] and d["diagnostic_of"] == "m"
    assert d["mask_source"] == "gt_mask" and d["volume_mape"] < 0.03 < s["volume_mape"]
    assert (plots / f"m{DIAG_SUFFIX}" / "scatter.png").is_file()
    # per family: rig (platform + deep_bowl pooled) and table, with their counts
    for js in (s, d):
        assert {g: v["n"] for g, v in js["by_family"].items()} == {"rig": 2, "table": 1}
        assert sum(b["n"] for b in js["height_bins"]["all"].values()) == 3
    assert s["by_family"]["rig"]["ring_scale_ratio_median"] == pytest.approx(1.3, rel=1e-4)
    # per support kind (what the label's food stands on), carried per dish from the index
    assert list(model["support"]) == ["plane", "plane", "bowl_surface"]
    assert {k: v["n"] for k, v in s["by_support"].items()} == {"bowl_surface": 1, "plane": 2}
    from pipeline.evaluate.report import support_section
    text = "\n".join(support_section({"m": s, f"m{DIAG_SUFFIX}": d}))
    assert "`bowl_surface`" in text and f"`m{DIAG_SUFFIX}`" in text
    # every box is 2 cm high: the 15-30 mm bin; the scale error shows as height error, gone when rescaled
    assert model["food_height_mm"].to_numpy() == pytest.approx(20.0, abs=0.5)
    assert s["height_bins"]["table"]["15_30"]["n"] == 1 and s["height_bins"]["rig"]["lt15"]["n"] == 0
    assert s["height_mae_mm"] > 4 and d["height_mae_mm"] < 0.5
    # the diagnostic never enters the comparison plan (no verdict), even when its metrics exist
    avail = {"m", f"m{DIAG_SUFFIX}", "m_stage0", f"m_stage0{DIAG_SUFFIX}", *BASELINE_NAMES}
    plan = comparison_plan(["m"], avail, BASELINE_NAMES, SETTINGS, STAGE0_SUFFIX, zero_shot=[f"m{DIAG_SUFFIX}"])
    assert plan and not any(DIAG_SUFFIX in x for p in plan for x in p)
    # end to end there is no diagnostic; without scenes (Nutrition5k) one group: no by_family, no crash
    with pytest.raises(ValueError, match="given"):
        from pipeline.evaluate.scoring import evaluate_tables
        evaluate_tables(None, dishes, VCFG, allowed_roots=[root], setting=END_TO_END, diagnostic=True)
    plain = summarise(evaluate_predictor(None, select_split(df, "test"), VCFG, allowed_roots=[root]))
    assert "by_family" not in plain and plain["height_bins"]["all"]["15_30"]["n"] == 3
    assert "by_support" not in plain   # an index without `support`: no group


def test_area_height_baseline_is_scored_on_its_flat_height(tiny_index):
    """area x height predicts one train-mean height (2.02 cm) over the mask: its height error on the 2 cm
    boxes is ~0.2 mm; the dish's scene and camera are carried; the mean baseline predicts no height."""
    df, root = tiny_index
    train = df[df["split"] == "train"]
    dishes = select_split(df.assign(scene="rails"), "test")
    fitted = fit_baselines(train, [root])
    ah = finish_table(baseline_table(fitted["baseline_area_height"], dishes, [root], VCFG))
    assert ah["height_mae_mm"].to_numpy() == pytest.approx(0.2, abs=0.1)
    assert ah["food_height_mm"].to_numpy() == pytest.approx(20.0, abs=0.5)
    assert (ah["scene"] == "rails").all() and (ah["fx_px"] == F).all() and ah["depth_abs_rel"].isna().all()
    assert summarise(ah)["by_family"]["rig"]["n"] == 3
    mean = finish_table(baseline_table(fitted["baseline_mean"], dishes, [root], VCFG))
    assert mean["height_mae_mm"].isna().all() and "height_bins" not in summarise(mean)


def test_mask_head_row_and_mask_iou(tiny_index, tmp_path):
    """End to end with the food-mask head's mask: its own row (`mask_source: mask_head`) through the same
    measure as predict, and both end-to-end rows score their mask against the given masks (IoU)."""
    from pipeline.evaluate.names import END_TO_END_HEAD
    df, root = tiny_index
    dishes = select_split(df, "test")
    ecfg = as_params({"eval": {"n_worst": 1}}).eval

    def head(rgb, K):   # the colour depth and a "head" that calls the yellow pixels food
        food = (rgb[..., 0] > 180) & (rgb[..., 2] < 80)
        return {"depth": colour_depth(rgb, K), "K": None, "food_prob": food.astype(np.float32)}
    s = evaluate_model("m", head, dishes, VCFG, ecfg, tmp_path / "metrics", tmp_path / "plots", [root],
                       setting=END_TO_END_HEAD)
    assert read_json(tmp_path / "metrics" / "m_e2e_head.json") == s and s["mask_source"] == "mask_head"
    assert s["n_dishes"] == 3 and s["n_failed"] == 0 and s["mask_iou_mean"] == pytest.approx(1.0)
    assert s["volume_mape"] < 0.05
    cut = evaluate_model("m", colour_depth, dishes, VCFG, ecfg, tmp_path / "metrics", tmp_path / "plots", [root],
                         setting=END_TO_END)
    assert cut["mask_source"] == "predicted_depth" and cut["mask_iou_mean"] is not None
    given = evaluate_model("m", colour_depth, dishes, VCFG, ecfg, tmp_path / "metrics", tmp_path / "plots", [root])
    assert "mask_iou_mean" not in given
    with pytest.raises(ValueError, match="food-mask head"):   # a predictor without a head has no such row
        evaluate_predictor(colour_depth, dishes, VCFG, allowed_roots=[root], setting=END_TO_END_HEAD)
