"""The food-mask head (model_cfg.<m>.mask_head): its output on both model families, its loss,
export and reload (LoRA too), the stage-0 checkpoint under a head, training wiring and predict."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import dvc
from safetensors.torch import load_file, save_file

from pipeline.config import LoraConfig, params_from_dict
from pipeline.measure import MASK_HEAD, food_mask, measure
from pipeline.models import build_model
from pipeline.models.base import depth_only
from pipeline.models.inference import load_model, predict_arrays, save_model
from pipeline.models.mask_head import mask_loss
from pipeline.train.losses import loss_terms

REPO = Path(__file__).resolve().parent.parent
STAGE0 = REPO / "models/depth_anything_v2/pretrain"
HW = (56, 84)
DA = {"pretrained": None, "max_depth": 2, "init_depth": 0.4, "size": list(HW), "mask_head": True}


def _batch(n: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images with a bright box of "food" (the target mask) on a darker table."""
    g = torch.Generator().manual_seed(0)
    img = 0.3 + 0.1 * torch.rand(n, 3, *HW, generator=g)
    mask = torch.zeros(n, *HW, dtype=torch.bool)
    mask[:, 15:40, 20:60] = True
    img[:, 0][mask], img[:, 2][mask] = 0.9, 0.1
    return img, mask, torch.tensor([[60.0, 0, 41.5], [0, 60.0, 27.5], [0, 0, 1]]).repeat(n, 1, 1)


def test_da_head_logits_shape_and_depth_unchanged():
    with_head = build_model("depth_anything_v2", DA, seed=0).eval()
    plain = build_model("depth_anything_v2", {**DA, "mask_head": False}, seed=0).eval()
    img, _, K = _batch()
    with torch.no_grad():
        a, b = with_head(img, K), plain(img, K)
    assert a["mask_logits"].shape == (2, *HW) and torch.isfinite(a["mask_logits"]).all()
    p = torch.sigmoid(a["mask_logits"])
    assert float(p.min()) >= 0 and float(p.max()) <= 1
    assert torch.equal(a["depth"], b["depth"]) and "mask_logits" not in b   # the head changes no depth
    # the head trains with the decoder (stages 1 and 2): its parameters are decoder parameters
    ids = {id(q) for q in with_head.decoder_parameters()}
    assert all(id(q) in ids for q in with_head.mask_head.parameters())
    assert with_head.arch_config()["mask_head"] == {"in_channels": 32, "hidden": 16}


@pytest.mark.skipif(importlib.util.find_spec("unidepth") is None, reason="unidepth not installed (optional extra)")
def test_unidepth_head_logits_shape(tmp_path):
    m = build_model("unidepth_v2", {"pretrained": None, "size": [70, 84], "mask_head": True,
                                    "tiny": {"hidden_dim": 32, "depths": [1, 1, 1], "out_dim": 8,
                                             "num_heads": 2, "expansion": 2}}, seed=0).eval()
    img = torch.rand(1, 3, 70, 84)
    with torch.no_grad():
        out = m(img, torch.tensor([[60.0, 0, 41.5], [0, 60.0, 34.5], [0, 0, 1]])[None])
    assert out["mask_logits"].shape == (1, 70, 84) and torch.isfinite(out["mask_logits"]).all()
    assert m.arch_config()["mask_head"]["in_channels"] == 32
    ids = {id(q) for q in m.decoder_parameters()}
    assert all(id(q) in ids for q in m.mask_head.parameters())
    save_model(m, tmp_path / "ud", "unidepth_v2", {"mask_head": True})   # the export carries the head
    again = load_model(tmp_path / "ud")
    with torch.no_grad():
        out2 = again(img, torch.tensor([[60.0, 0, 41.5], [0, 60.0, 34.5], [0, 0, 1]])[None])
    assert torch.allclose(out2["mask_logits"], out["mask_logits"])


def test_mask_loss_falls_on_a_small_overfit_batch():
    model = build_model("depth_anything_v2", DA, seed=0)
    model.set_encoder_frozen(True)   # stage 1: the decoder and the head train
    img, mask, K = _batch()
    opt = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=3e-3)
    losses = []
    for _ in range(25):
        loss = mask_loss(model(img, K)["mask_logits"], mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    # exact target: the loss is near its floor; all wrong: high
    assert float(mask_loss(torch.where(mask, 20.0, -20.0), mask)) < 1e-3
    assert float(mask_loss(torch.where(mask, -20.0, 20.0), mask)) > 1.0


def test_loss_terms_have_a_mask_term_only_with_a_head():
    img, mask, K = _batch()
    depth = torch.full((2, *HW), 0.4)
    depth[mask] = 0.38
    batch = {"depth": depth, "mask": mask, "K": K, "volume_ml": torch.tensor([10.0, 10.0])}
    w = {"w_depth": 1.0, "w_grad": 0.0, "w_plane": 0.0, "w_volume": 0.0, "w_silog": 0.0, "w_intrinsics": 0.0,
         "w_height": 0.0, "w_mask": 0.1}
    geom = {"method": "heightmap", "ring_px": 5, "cell_mm": 2.0, "seed": 0}
    with_head = loss_terms({"depth": depth, "K": K, "mask_logits": torch.zeros(2, *HW)}, batch, w, geom, False)
    plain = loss_terms({"depth": depth, "K": K}, batch, w, geom, False)
    assert "mask" in with_head and "mask" not in plain
    assert "mask" not in loss_terms({"depth": depth, "K": K, "mask_logits": torch.zeros(2, *HW)}, batch,
                                    {**w, "w_mask": 0.0}, geom, False)


def test_stage0_has_no_head_and_its_loss_no_mask_term():
    from pipeline.train.fit import stage_model
    p = params_from_dict({"model_cfg": {"depth_anything_v2": {**DA, "size": [56, 84]}}})
    m0, _ = stage_model("depth_anything_v2", 0, p, None)
    assert not m0.has_mask_head and p.for_stage0().loss.w_mask == 0.0 and p.loss.w_mask > 0
    m1, _ = stage_model("depth_anything_v2", 1, p, None)
    assert m1.has_mask_head


def test_export_reload_keeps_the_head_and_its_mask(tmp_path):
    model = build_model("depth_anything_v2", DA, seed=0).eval()
    with torch.no_grad():
        model.mask_head.conv3.bias.fill_(0.3)   # not the init: the reload must carry trained weights
    save_model(model, tmp_path / "w", "depth_anything_v2", DA)
    again = load_model(tmp_path / "w")
    assert again.has_mask_head
    rgb = (np.random.default_rng(0).random((90, 120, 3)) * 255).astype(np.uint8)
    K = np.array([[100.0, 0, 59.5], [0, 100.0, 44.5], [0, 0, 1]])
    a, b = predict_arrays(model, rgb, K, HW), predict_arrays(again, rgb, K, HW)
    assert a["food_prob"].shape == rgb.shape[:2]
    np.testing.assert_array_equal(a["food_prob"], b["food_prob"])
    np.testing.assert_array_equal(a["depth"], b["depth"])
    # a head-less export loads head-less (older exports are unchanged)
    save_model(depth_only_model(), tmp_path / "plain", "depth_anything_v2", {**DA, "mask_head": False})
    assert not load_model(tmp_path / "plain").has_mask_head
    # weights without the head's keys do not load into a head architecture (strict)
    state = load_file(str(tmp_path / "w" / "model.safetensors"))
    save_file({k: v for k, v in state.items() if not k.startswith("mask_head.")},
              str(tmp_path / "w" / "model.safetensors"))
    with pytest.raises(ValueError, match="weights do not match"):
        load_model(tmp_path / "w")


def depth_only_model():
    return build_model("depth_anything_v2", {**DA, "mask_head": False}, seed=0)


def test_lora_export_carries_the_head(tmp_path):
    pytest.importorskip("peft")
    from pipeline.models.lora import set_encoder_mode
    model = build_model("depth_anything_v2", DA, seed=0)
    set_encoder_mode(model, "lora", LoraConfig(rank=2))
    with torch.no_grad():
        model.mask_head.conv3.bias.fill_(-0.2)
    save_model(model, tmp_path / "w", "depth_anything_v2", DA)
    again = load_model(tmp_path / "w")
    assert torch.equal(again.mask_head.conv3.bias, model.mask_head.conv3.bias.detach())


@pytest.mark.skipif(not STAGE0.is_dir(), reason="no committed stage-0 checkpoint")
def test_stage0_checkpoint_loads_under_a_head_with_only_the_head_fresh(capsys, tmp_path):
    cfg = {"pretrained": str(STAGE0), "mask_head": True}
    head = build_model("depth_anything_v2", cfg, seed=0)
    assert "has no food-mask head: the head alone is initialised fresh (seed 0)" in capsys.readouterr().out
    plain = build_model("depth_anything_v2", {**cfg, "mask_head": False}, seed=0)
    hs, ps = head.state_dict(), plain.state_dict()
    assert {k for k in hs if k not in ps} == {k for k in hs if k.startswith("mask_head.")} != set()
    assert all(torch.equal(hs[k], ps[k]) for k in ps)
    again = build_model("depth_anything_v2", cfg, seed=0)   # seeded: the same fresh head
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in hs.items())
    # a checkpoint with a key the network lacks is an error naming it, never ignored
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((STAGE0 / "config.json").read_text())
    state = load_file(str(STAGE0 / "model.safetensors"))
    save_file({**state, "head.extra.weight": torch.zeros(1)}, str(bad / "model.safetensors"))
    with pytest.raises(ValueError, match="does not fit the network.*head.extra.weight"):
        build_model("depth_anything_v2", {**cfg, "pretrained": str(bad)}, seed=0)
    assert depth_only(dataclasses.replace(head_cfg(), mask_head=True)).mask_head is False


def head_cfg():
    from pipeline.models import model_config
    return model_config("depth_anything_v2", DA)


def test_food_mask_and_measure_with_the_head():
    prob = np.zeros((60, 80), np.float32)
    prob[10:40, 20:60] = 0.9
    prob[50, 5] = 0.9   # a speck
    assert food_mask(prob, min_area_px=5).sum() == 30 * 40
    depth = np.full((60, 80), 0.4, np.float32)
    depth[10:40, 20:60] = 0.38
    K = np.array([[80.0, 0, 39.5], [0, 80.0, 29.5], [0, 0, 1]])
    from pipeline.config import MasksConfig
    m = measure(depth, K, None, masks=MasksConfig(min_area_px=5), food_prob=prob)
    assert m.mask_source == MASK_HEAD and m.mask.sum() == 30 * 40 and m.total_ml > 0
    assert measure(depth, K, None, masks=MasksConfig(min_area_px=5)).mask_source == "geometry"


def test_predict_uses_the_head_of_the_weights(tmp_path):
    from pipeline.data.synthetic import generate_dish
    from pipeline.predict import predict_volume
    cfg = {**DA, "size": [126, 168]}
    model = build_model("depth_anything_v2", cfg, seed=0)
    with torch.no_grad():   # an untrained head may call everything food; this one calls nothing food
        model.mask_head.conv3.weight.zero_()
        model.mask_head.conv3.bias.fill_(-5.0)
    save_model(model, tmp_path / "head", "depth_anything_v2", cfg)
    save_model(build_model("depth_anything_v2", {**cfg, "mask_head": False}, seed=0), tmp_path / "plain",
               "depth_anything_v2", {**cfg, "mask_head": False})
    dish = generate_dish(0, 3, width=224, height=168, noise=False)
    pred = predict_volume(dish.rgb, "depth_anything_v2", tmp_path / "head", K=dish.K)
    assert pred.mask_source == MASK_HEAD and not pred.mask.any() and pred.total_ml == 0
    assert any("no food found" in w for w in pred.warnings)
    assert predict_volume(dish.rgb, "depth_anything_v2", tmp_path / "plain", K=dish.K).mask_source == "geometry"
    assert predict_volume(dish.rgb, "depth_anything_v2", tmp_path / "head", K=dish.K,
                          mask=dish.mask).mask_source == "given"


REAL = (REPO / "../shared/nutrition5k_samples").resolve()


@pytest.mark.slow
@pytest.mark.skipif(not (REAL / "imagery").is_dir(), reason="real Nutrition5k sample dishes not present")
def test_real_dish_bench_writes_what_the_report_reads(tmp_path):
    """bench/bench_mask_head_real.py on the two real sample dishes with a (random) head: one row per
    annotated dish with the three IoUs, and the weights' hash the report checks against its row."""
    from bench.bench_mask_head_real import real_mask_ious
    from pipeline.io import sha256_file
    cfg = {**DA, "size": [126, 168]}
    save_model(build_model("depth_anything_v2", cfg, seed=0), tmp_path / "w", "depth_anything_v2", cfg)
    out = real_mask_ious(REAL, tmp_path / "w")
    assert {d["dish_id"] for d in out["dishes"]} == {"dish_1559845399", "dish_1568056217"}
    for d in out["dishes"]:
        assert all(0.0 <= d[k] <= 1.0 for k in ("iou_mask_head", "iou_predicted_depth", "iou_rgb_rule"))
    assert out["weights_sha256"] == sha256_file(tmp_path / "w" / "model.safetensors")
    assert "never saw a real photo" in out["note"]


@pytest.mark.slow
def test_mask_head_rows_in_the_dag(dvc_project):
    """`dvc repro report` on a tiny project whose model has a food-mask head: stages 1-2 train it, the
    evaluation writes the `_e2e_head` row (mask_source mask_head, mask IoU), compare pairs it with the
    depth cut, and the report shows both end-to-end sources."""
    root = dvc_project({"data.n_dishes": 20, "data.width": 224, "data.height": 168, "data.workers": 1,
                        "train.pretrain.n_rooms": 4, "train.pretrain.n_dishes": 4, "train.pretrain.epochs": 1,
                        "train.pretrain.width": 224, "train.pretrain.height": 168,
                        "train.stage1.epochs": 1, "train.stage2.epochs": 1, "eval.n_bootstrap": 100,
                        "eval.n_worst": 1, "distill.n_unlabelled": 4, "distill.speed_images": 2})
    for cmd in (["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=root, check=True, capture_output=True)   # DVCLive needs a first commit
    dvc(root, "repro", "report")
    head = json.loads((root / "metrics/eval/depth_anything_v2_e2e_head.json").read_text())
    assert head["mask_source"] == "mask_head" and head["n_dishes"] > 0 and head["mask_iou_mean"] is not None
    assert json.loads((root / "metrics/eval/depth_anything_v2_e2e.json").read_text())["mask_iou_mean"] is not None
    c = json.loads((root / "metrics/compare.json").read_text())["models"]["depth_anything_v2"]
    assert "vs_depth_anything_v2_e2e" in c["end_to_end_mask_head"]
    report = (root / "metrics/report.md").read_text()
    assert "| `depth_anything_v2_e2e_head` | fine-tuned (stage 2) | `mask_head` |" in report
    assert "## Food masks end to end" in report
    # the same repro ran the default distillation: its student paired with the teacher and the direct student
    assert {"vs_depth_anything_v2", "vs_da2_small_direct"} <= set(
        json.loads((root / "metrics/compare.json").read_text())["models"]["da2_small"]["given"])
    assert "## Distillation" in report and "| `da2_small` | 84×112 |" in report
    stage1 = json.loads((root / "metrics/train/depth_anything_v2_stage1.json").read_text())
    assert "mask" in stage1["loss_terms"]["last_epoch"]["train"]
