"""Zero-shot rows (eval.zero_shot): models only evaluated, never trained, through the registry;
Depth Pro (its own field of view, focal error reported, volumes with the true K) and ZoeDepth, each
a tiny random config of the real transformers classes; their rows reach the report of a project."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import dvc

from pipeline.evaluate.compare import comparison_plan
from pipeline.evaluate.scoring import GIVEN, MeasureConfig, model_predictor, predict_dish
from pipeline.models import build_model
from pipeline.models.inference import predict_depth_array

HW = (120, 160)


def _K(h: int = HW[0], w: int = HW[1], f: float = 150.0) -> np.ndarray:
    return np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1.0]])


def _rgb(seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((*HW, 3)) * 255).astype(np.uint8)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["depth_pro", "zoedepth"])
def test_zero_shot_models_real_classes(name: str):
    m = build_model(name, {"pretrained": None, "size": list(HW)}, seed=0).eval()
    assert type(m.net).__name__ == {"depth_pro": "DepthProForDepthEstimation",
                                    "zoedepth": "ZoeDepthForDepthEstimation"}[name]
    depth, K_out = predict_depth_array(m, _rgb(), _K(), HW)   # any size: the processor resizes
    assert depth.shape == HW and np.isfinite(depth).all() and (depth > 0).all() and depth.std() > 0
    if name == "zoedepth":
        np.testing.assert_allclose(K_out, _K(), atol=1e-4)     # takes no camera: K passes through


@pytest.mark.slow
def test_zero_shot_depth_pro_camera_modes():
    """`predict`: its own field of view gives the focal (the fresh head starts at init_fov_deg) and
    scales the depth; `given`: the true focal scales it (depth proportional to f) and K is returned."""
    pred = build_model("depth_pro", {"pretrained": None, "init_fov_deg": 60.0}, seed=0).eval()
    x = torch.rand(1, 3, *HW)
    K = torch.tensor(_K(), dtype=torch.float32)[None]
    with torch.no_grad():
        out = pred(x, K.clone())
    f60 = 0.5 * HW[1] / np.tan(np.radians(30.0))
    assert pred.predicts_K and abs(float(out["K"][0, 0, 0]) / f60 - 1) < 0.05
    assert float(out["K"][0, 1, 1]) == float(out["K"][0, 0, 0]) and torch.equal(out["K"][0, :2, 2], K[0, :2, 2])
    assert abs(float(out["depth"].median()) - 0.5) < 0.15       # init_depth
    given = build_model("depth_pro", {"pretrained": None, "init_fov_deg": 60.0, "camera": "given"}, seed=0).eval()
    with torch.no_grad():
        a, b = given(x, K.clone()), given(x, 2 * K * torch.tensor([1, 1, 0.5]).view(1, 3, 1))
    assert not given.predicts_K and torch.equal(a["K"], K)
    torch.testing.assert_close(b["depth"], 2 * a["depth"], rtol=1e-3, atol=1e-5)
    with pytest.raises(ValueError, match="camera"):
        build_model("depth_pro", {"pretrained": None, "camera": "guess"})


@pytest.mark.slow
def test_zero_shot_focal_error_scored_with_true_K():
    """The evaluation scores a K-predicting model with the true K and reports its focal error."""
    m = build_model("depth_pro", {"pretrained": None, "init_fov_deg": 60.0}, seed=0).eval()
    K = _K(f=200.0)
    mask = np.zeros(HW, bool)
    mask[40:80, 60:100] = True
    p = predict_dish(model_predictor(m, HW), _rgb(), K, GIVEN, mask, MeasureConfig())
    f_pred = 0.5 * HW[1] / np.tan(np.radians(30.0))
    assert abs(p.focal_rel_err - abs(f_pred - 200.0) / 200.0) < 0.02
    da = build_model("depth_anything_v2", {"pretrained": None}, seed=0).eval()
    assert np.isnan(predict_dish(model_predictor(da, (84, 112)), _rgb(), K, GIVEN, mask, MeasureConfig()).focal_rel_err)


def test_zero_shot_comparison_plan_and_params():
    avail = {"m", "m_e2e", "m_stage0", "m_stage0_e2e", "z", "z_e2e", "baseline_mean"}
    plan = comparison_plan(["m"], avail, ["baseline_mean"], {"given": "", "end_to_end": "_e2e"}, "_stage0", ["z"])
    assert ("m", "given", "m", "z") in plan and ("m", "end_to_end", "m_e2e", "z_e2e") in plan
    assert ("z", "given", "z", "baseline_mean") in plan and ("z", "end_to_end", "z_e2e", "baseline_mean") in plan
    assert not any(r[0] == "z" and r[3].startswith("m") for r in plan)
    from pipeline.config import params_from_dict
    with pytest.raises(ValueError, match=r"eval.zero_shot\[0\]: 'nope' has no model_cfg"):
        params_from_dict({"eval": {"zero_shot": ["nope"]}})
    with pytest.raises(ValueError, match=r"also in `models`"):
        params_from_dict({"eval": {"zero_shot": ["depth_anything_v2"]}})


@pytest.mark.slow
def test_zero_shot_row_in_report_of_a_project(dvc_project):
    """A tiny project with no trained model and Depth Pro zero-shot: `dvc repro report` gives its
    rows (both mask settings) with the focal error, compared with the baselines on the same dishes."""
    root = dvc_project({"data.n_dishes": 16, "data.width": 160, "data.height": 120, "data.workers": 1,
                        "models": [], "distill.students": {}, "eval.zero_shot": ["depth_pro"], "eval.n_bootstrap": 100,
                        "eval.n_worst": 1, "model_cfg.depth_pro.size": [120, 160]})
    dvc(root, "repro", "report")
    report = (root / "metrics/report.md").read_text()
    rows: dict[str, str] = {}
    for ln in report.splitlines():   # the first table: every row with its kind
        if ln.startswith("| `"):
            rows.setdefault(ln.split("|")[1].strip(), ln)
    for row in ("`depth_pro`", "`depth_pro_e2e`"):
        assert "pretrained, not fine-tuned" in rows[row], report
    m = json.loads((root / "metrics/eval/depth_pro.json").read_text())
    assert m["mask_source"] == "gt_mask" and m["n_dishes"] > 0 and m["focal_rel_err"] is not None
    base = json.loads((root / "metrics/eval/baseline_mean.json").read_text())
    assert base["n_dishes"] == m["n_dishes"]
    c = json.loads((root / "metrics/compare.json").read_text())["models"]["depth_pro"]
    assert set(c) == {"given", "end_to_end"} and "vs_baseline_mean" in c["given"]
    assert "`depth_pro` (given masks) vs `baseline_mean`" in report
    # synthetic dishes have a scene: per-family comparisons, their counts, and the report's family section
    fams = json.loads((root / "metrics/compare.json").read_text())["families"]
    assert fams and set(fams) <= {"rig", "table"} and sum(fams.values()) == m["n_dishes"]
    for g, n in fams.items():
        if n:
            assert c["given"]["by_family"][g]["vs_baseline_mean"]["n_dishes"] == n
    assert "## Per scene family" in report and "one group" not in report
    area = json.loads((root / "metrics/eval/baseline_area_height.json").read_text())
    assert sum(b["n"] for b in area["height_bins"]["all"].values()) == m["n_dishes"]
