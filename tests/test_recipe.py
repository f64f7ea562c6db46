"""Per-starting-point recipes (LRs, warmup, per-iteration schedule) and the selection rule."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from pipeline.config import RecipeConfig, load_params
from pipeline.train.fit import exported_note, selection_callbacks
from pipeline.train.recipe import lr_factor, recipe_for


def _params(pretrained):
    p = load_params()
    p.model_cfg = {**p.model_cfg, "depth_anything_v2": {**p.model_cfg["depth_anything_v2"],
                                                        "pretrained": pretrained}}
    return p


def test_pretrained_and_random_starts_get_their_own_recipes():
    src, r = recipe_for(_params("depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf"), "depth_anything_v2")
    # the official Depth-Anything-V2 metric recipe: encoder 5e-6, decoder 10x, poly 0.9, no warmup
    assert src == "pretrained" and (r.lr_encoder, r.lr_decoder) == (5e-6, 5e-5)
    assert r.schedule == "poly" and r.poly_power == 0.9 and r.warmup_frac == 0.0
    src, r = recipe_for(_params(None), "depth_anything_v2")
    assert src == "random" and r.lr_decoder >= 1e-3 and r.warmup_frac > 0
    _, u = recipe_for(_params(None), "unidepth_v2", source="pretrained")
    assert (u.lr_encoder, u.lr_decoder, u.weight_decay) == (1e-5, 1e-4, 0.1)  # UniDepth's config
    p = _params("x")
    p.train.recipe_pretrained = {}
    with pytest.raises(ValueError, match="train.recipe_pretrained.depth_anything_v2: missing"):
        recipe_for(p, "depth_anything_v2")


def test_schedule_is_per_iteration_with_warmup():
    r = RecipeConfig(1e-3, 1e-4, 0.0, 0.1, "cosine", 0.9, 0.0)
    f = [lr_factor(s, 100, r) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)      # 10 warmup steps
    assert all(a >= b for a, b in zip(f[10:], f[11:])) and f[-1] < 0.01   # then falls every step
    poly = dataclasses.replace(r, schedule="poly", warmup_frac=0.0)
    assert lr_factor(50, 100, poly) == pytest.approx(0.5 ** 0.9)


def test_optimizer_groups_take_the_recipe_lrs():
    from pipeline.models import build_model
    from pipeline.train.module import DepthLitModule
    p = load_params()
    cfg = {**p.model_cfg["depth_anything_v2"], "pretrained": None}
    r = RecipeConfig(3e-4, 3e-5, 0.05, 0.0, "poly", 0.9, 0.0)
    geom = {"method": "heightmap", "ring_px": 5, "cell_mm": 2.0, "seed": 0}
    lit = DepthLitModule(build_model("depth_anything_v2", cfg), 2, p.loss, geom, r)
    lit.trainer = type("T", (), {"estimated_stepping_batches": 10})()
    conf = lit.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]
    assert conf["lr_scheduler"]["interval"] == "step"
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == {"encoder": pytest.approx(3e-5), "decoder": pytest.approx(3e-4)}
    assert all(g["weight_decay"] == 0.05 for g in opt.param_groups)
    opt.step()
    sched["scheduler"].step()
    assert opt.param_groups[1]["lr"] == pytest.approx(3e-4 * 0.9 ** 0.9)  # one iteration later


def test_selection_rule_exports_the_ema_not_a_picked_epoch():
    p = load_params()
    cbs = selection_callbacks(p.train)
    assert p.train.selection == "ema" and len(cbs) == 1
    avg = cbs[0]
    # the average follows the weights by lerp: a frozen weight stays bit-identical
    model = torch.nn.Linear(3, 1)
    from torch.optim.swa_utils import AveragedModel
    ema = AveragedModel(model, multi_avg_fn=avg._kwargs["multi_avg_fn"])
    ema.update_parameters(model)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update_parameters(model)
    d = p.train.ema_decay
    assert torch.allclose(ema.module.weight, model.weight - d)  # moved (1 - d) of the way
    assert torch.equal(ema.module.bias, model.bias)
    note = exported_note(p.train, 7)
    assert note["weights"] == "ema" and note["epoch"] == 7 and "fixed schedule" in note["why"]
    last = dataclasses.replace(p.train, selection="last")
    assert selection_callbacks(last) == [] and exported_note(last, 7)["weights"] == "last"


def test_the_synthetic_stage0_gets_the_small_copys_recipe():
    """models/<m>/pretrain (the small copy's own stage 0) trains with train.recipe_stage0; a hub id
    or another folder keeps the official recipe_pretrained."""
    src, r = recipe_for(_params("models/depth_anything_v2/pretrain"), "depth_anything_v2")
    assert src == "stage0" and (r.lr_encoder, r.lr_decoder) == (5e-5, 5e-4)
    src, r = recipe_for(_params("some/other/folder"), "depth_anything_v2")
    assert src == "pretrained" and (r.lr_encoder, r.lr_decoder) == (5e-6, 5e-5)
