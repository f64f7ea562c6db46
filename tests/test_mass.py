"""Mass: the synthetic density table, the density head, the mass metrics and comparisons, predict's
mass line, and the mass stages end to end on a Nutrition5k-format tree (`pytest -k n5k_mass`)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.data import density, synthetic
from pipeline.data.food_items import FOOD_LOOKS
from pipeline.data.synthetic import generate_dish
from pipeline.evaluate.compare import compare_mass
from pipeline.evaluate.mass import mass_metrics, mass_table, scored_dishes
from pipeline.evaluate.names import model_rows
from pipeline.mass import DensityHead, density_source, global_density, pooled_features

FAMILIES = {"table": 0.4, "platform": 0.15, "rails": 0.15, "deep_bowl": 0.15, "metal": 0.15}


def test_every_look_has_a_real_bulk_density() -> None:
    assert set(density.FOOD_DENSITY_G_ML) == set(FOOD_LOOKS)
    for look, (rho, food) in density.FOOD_DENSITY_G_ML.items():
        assert 0.3 <= rho <= 1.1 and food, look
    d = density.item_densities(0, 1, ["rice"] * 400 + ["bread"] * 400)
    assert (d >= density.LIMITS[0]).all() and (d <= density.LIMITS[1]).all()
    rice, bread = d[:400], d[400:]
    assert np.median(rice) == pytest.approx(0.67, rel=0.05) and 0.05 < np.std(np.log(rice)) < 0.2  # spread
    assert np.median(bread) < 0.5 * np.median(rice)        # kinds differ more than items within a kind
    assert np.array_equal(d, density.item_densities(0, 1, ["rice"] * 400 + ["bread"] * 400))
    with pytest.raises(ValueError, match="no density"):
        density.item_densities(0, 0, ["gravel"])


def test_masses_leave_the_rendered_dish_byte_identical(monkeypatch) -> None:
    """The densities come from their own stream: with the mass hook stubbed out, every image,
    depth map and mask is the same to the byte."""
    real = [generate_dish(0, i, width=96, height=72, families=FAMILIES) for i in range(3)]
    monkeypatch.setattr(synthetic, "dish_mass", lambda seed, index, looks, vols: (0.0, np.zeros(len(looks))))
    stub = [generate_dish(0, i, width=96, height=72, families=FAMILIES) for i in range(3)]
    for a, b in zip(real, stub):
        for f in ("rgb", "depth", "depth_clean", "mask", "items"):
            assert getattr(a, f).tobytes() == getattr(b, f).tobytes(), f
        rho = np.asarray(a.meta["item_densities_g_ml"])
        assert a.meta["mass_g"] == pytest.approx(float(rho @ np.asarray(a.item_volumes_ml)), rel=1e-3)
        assert 0.25 <= a.meta["mass_g"] / a.volume_ml_true <= 1.15


def test_density_head_learns_density_from_features(tmp_path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 20))
    rho = np.exp(-0.3 + 0.25 * X[:, 0] - 0.15 * X[:, 3] + 0.02 * rng.normal(size=120))
    head = DensityHead.fit(X[:100], rho[:100], (0.01, 1.0, 100.0), (0.2, 1.6), 0.74)
    assert head.info["loo_rmse_log_density"] < 0.5 * head.info["spread_rmse_log_density"]
    assert np.allclose(head.predict(X[100:]), np.clip(rho[100:], 0.2, 1.6), rtol=0.1)
    head.save(tmp_path / "mass_head", "depth_anything_v2", (126, 168))
    back = DensityHead.load(tmp_path / "mass_head")
    assert np.allclose(back.predict(X[100:]), head.predict(X[100:]))
    text, fixed, learned = density_source(tmp_path / "mass_head", None, 0.8)
    assert learned is not None and fixed is None and "learned" in text
    assert density_source(tmp_path / "mass_head", 0.5, 0.8)[:2] == ("given (--density 0.5 g/mL)", 0.5)
    assert density_source(tmp_path / "nowhere", None, 0.8)[1] == 0.8
    with pytest.raises(ValueError, match="--density"):
        density_source(tmp_path, 40.0, 0.8)


def test_pooled_features_weigh_the_food_cells() -> None:
    fmap = np.zeros((2, 4, 4))
    fmap[0, :2, :2] = 1.0
    mask = np.zeros((40, 40), bool)
    mask[:20, :20] = True
    f = pooled_features(fmap, mask)
    assert f.shape == (4,) and f[0] == pytest.approx(1.0) and f[2] == pytest.approx(0.25)


def test_global_density_is_the_train_median_and_refuses_test_rows() -> None:
    train = pd.DataFrame({"split": "train", "mass_g": [80.0, 100.0, 300.0, np.nan],
                          "volume_ml": [100.0, 100.0, 200.0, 50.0]})
    assert global_density(train) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="leakage"):
        global_density(train.assign(split="test"))


def test_mass_metrics_score_kept_and_all_dishes() -> None:
    index = pd.DataFrame({"dish_id": list("abcde"), "split": ["test"] * 4 + ["train"],
                          "mass_g": [100.0, 200.0, 300.0, 100.0, 50.0], "suspect": ["", "", "", "specks", ""]})
    dishes = scored_dishes(index, "test", exclude_suspect=True)
    assert dishes["dropped"].tolist() == [False, False, False, True]
    t = mass_table(dishes, np.array([110.0, 180.0, np.nan, 300.0]))
    m = mass_metrics(t)
    assert m["n_dishes"] == 3 and m["n_failed"] == 1 and m["n_all"] == 4 and m["n_dropped"] == 1
    assert m["mass_mae_g"] == pytest.approx((10 + 20 + 300) / 3)
    assert m["mass_mae_pct_of_mean"] == pytest.approx(110 / 200)          # a fraction, not percent
    assert m["mass_mae_pct_of_mean_all"] == pytest.approx((330 + 200) / 4 / 175)
    assert scored_dishes(index, "test", exclude_suspect=False)["dropped"].sum() == 0
    c = compare_mass(t, mass_table(dishes, np.full(4, 175.0)), n_bootstrap=200)
    assert {"mae_pct_of_mean_diff", "mae_pct_of_mean_ci_low", "mae_pct_of_mean_ci_high", "wilcoxon_p",
            "mae_pct_of_mean_diff_all", "n_dishes_all"} <= set(c) and c["n_dishes"] == 3
    assert c["mae_pct_of_mean_ci_low"] <= c["mae_pct_of_mean_diff"] <= c["mae_pct_of_mean_ci_high"]


@pytest.mark.slow
def test_predict_prints_mass_and_density_source(tmp_path, capsys) -> None:
    from pipeline import io
    from pipeline.models import build_model
    from pipeline.models.inference import save_model
    from pipeline.predict import main

    cfg = {"pretrained": None, "size": [126, 168]}
    save_model(build_model("depth_anything_v2", cfg, seed=0), tmp_path / "m" / "stage2", "depth_anything_v2", cfg)
    dish = generate_dish(0, 13, width=320, height=240, noise=False)
    io.write_rgb(tmp_path / "dish.png", dish.rgb)
    io.write_mask(tmp_path / "mask.png", dish.mask)
    args = [str(tmp_path / "dish.png"), "--model", str(tmp_path / "m" / "stage2"), "--mask", str(tmp_path / "mask.png")]
    assert main(args + ["--density", "0.5"]) == 0
    out = capsys.readouterr().out
    total = float(out.split("total:")[1].split("mL")[0])
    mass = float(out.split("mass:")[1].split("g")[0])
    assert mass == pytest.approx(0.5 * total, abs=0.1) and "--density 0.5" in out
    rng = np.random.default_rng(0)
    DensityHead.fit(rng.normal(size=(10, 384)), np.full(10, 0.7), (1.0,), (0.2, 1.6), 0.7).save(
        tmp_path / "m" / "mass_head", "depth_anything_v2", (126, 168))
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "learned head" in out and float(out.split("density")[1].split("g/mL")[0]) == pytest.approx(0.7, rel=0.01)


@pytest.mark.slow
def test_n5k_mass_path(tmp_path, monkeypatch) -> None:
    """The mass path on a Nutrition5k-format tree (total_mass from the release's metadata), every
    stage's main run in process on a project folder (no training: a random tiny model stands in
    for stage 2): each mass row has the contract keys, compare.json its mass block, the report its
    mass table with the published figures marked as not measured here."""
    import yaml

    from pipeline import config, io
    from pipeline.models import build_model
    from pipeline.models.inference import save_model
    from stages import baselines, compare, evaluate, ingest, labels, masks, mass, mass_head, report, split
    from tests.fixtures.rig_release import write_release

    truth = write_release(tmp_path / "release", n=9, seed=3, test_share=0.5)  # the fixed rig, every family
    planted = {"mass_g": dict(zip(truth["dish_id"], truth["mass_g"]))}
    root = tmp_path / "project"
    root.mkdir()
    params = yaml.safe_load((config.PARAMS_FILE).read_text())
    params["data"].update(source="nutrition5k", root=str(tmp_path / "release"), workers=1)
    params["eval"].update(n_bootstrap=100, n_worst=1)
    params["suspect"]["exclude"] = False
    params["distill"]["students"] = {}   # the mass path only: no distilled student rows to compare
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.setattr(io, "REPO_ROOT", root)
    monkeypatch.setattr(config, "REPO_ROOT", root)
    monkeypatch.setattr(config, "PARAMS_FILE", root / "params.yaml")
    for stage in (ingest, split, masks, labels):
        stage.main()
    m = "depth_anything_v2"
    cfg = params["model_cfg"][m]
    save_model(build_model(m, cfg, seed=0), root / "models" / m / "stage2", m, cfg)
    evaluate.main([m])
    baselines.main()
    mass_head.main([m])
    mass.main([m])
    compare.main()
    report.main()

    index = pd.read_csv(root / "data/dishes/index.csv", dtype={"dish_id": str})
    assert np.allclose(index["mass_g"], [planted["mass_g"][d] for d in index["dish_id"]])
    head = json.loads((root / f"metrics/train/{m}_mass_head.json").read_text())
    assert head["kind"] == "learned" and 0.25 <= head["global_density_g_ml"] <= 1.6
    for row in model_rows(m) + ["mass_baseline_mean", "mass_oracle_measured_global"]:
        js = json.loads((root / f"metrics/eval/{row}.json").read_text())
        assert {"mass_mae_g", "mass_mae_pct_of_mean", "n_all", "n_dropped", "mass_mae_pct_of_mean_all"} <= set(js), row
        assert js["n_all"] >= 1 and js["mass_mae_g"] is not None, row
    compare = json.loads((root / "metrics/compare.json").read_text())
    assert "learned_vs_baseline_mean" in compare["mass"][m]["end_to_end"]
    text = (root / "metrics/report.md").read_text()
    assert "## Mass (g)" in text and "not measured here" in text and "58.5 %" in text
    # Nutrition5k has no scene: one group, said so; the ring-rescaled diagnostic rows are there all the same
    assert compare["families"] == {} and "by_family" not in compare["models"][m]["given"]
    assert "everything is one group" in text and f"`{m}_stage0_diag_ring_rescaled`" in text
