"""Stage 1 + stage 2 smoke run on a few tiny synthetic dishes, and resume after a kill."""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import pipeline.train.fit as tr
from pipeline import io
from pipeline.config import load_params
from pipeline.models.inference import load_model
from pipeline.train.fit import config_hash, prepare_checkpoint_dir, trainer_kwargs
from pipeline.train.module import DepthLitModule


def make_index(root: Path, n_train: int = 6, n_val: int = 2, width: int = 224, height: int = 168,
               rel_root: Path | None = None, no_depth: tuple[int, ...] = ()) -> Path:
    """A tiny dishes index (real synthetic dishes written with pipeline.io) under `root`.
    Paths are relative to `rel_root` (default: this repository); dishes in `no_depth` get
    an all-invalid depth map (a batch of them has no valid GT pixel)."""
    from pipeline.data.synthetic import generate_dish
    rel = (lambda q: Path(os.path.relpath(q, rel_root)).as_posix()) if rel_root else io.rel_to_repo
    rows = []
    for i in range(n_train + n_val):
        d = generate_dish(seed=7, index=i, width=width, height=height, noise=True)
        base = root / "dishes" / f"d{i:03d}"
        io.write_rgb(base / "rgb.png", d.rgb)
        io.write_depth_png(base / "depth.png", d.depth * 0 if i in no_depth else d.depth)
        io.write_mask(base / "mask.png", d.mask)
        rows.append({"dish_id": f"d{i:03d}", "split": "train" if i < n_train else "val",
                     "rgb_path": rel(base / "rgb.png"),
                     "depth_path": rel(base / "depth.png"),
                     "mask_path": rel(base / "mask.png"),
                     "fx": d.K[0, 0], "fy": d.K[1, 1], "cx": d.K[0, 2], "cy": d.K[1, 2],
                     "width": width, "height": height, "volume_ml": d.volume_ml_true,
                     "volume_ml_true": d.volume_ml_true})
    path = root / "index.csv"
    io.write_csv(path, pd.DataFrame(rows))
    return path


def small_params(epochs1: int = 1, epochs2: int = 1) -> dict:
    p = load_params().to_dict()
    p["model_cfg"]["depth_anything_v2"]["size"] = [84, 112]
    p["model_cfg"]["depth_anything_v2"]["pretrained"] = None  # random init: the random recipe
    p["train"].update({"batch_size": 4, "stage1": {"epochs": epochs1}, "stage2": {"epochs": epochs2},
                       "grad_norm_every": 2})
    p["train"]["recipe_random"].update({"lr_decoder": 1e-3, "lr_encoder": 2e-5})
    p["trainer"].update({"accelerator": "cpu", "precision": "auto", "num_workers": 0})
    return p


@pytest.fixture(scope="module")
def index_path(tmp_path_factory) -> Path:
    return make_index(Path(tmp_path_factory.mktemp("dishes")))


def run_stage(name: str, stage: int, params: dict, index_path: Path, **kw) -> dict:
    """tr.run_stage with the tmp dishes allowed (as stages/train.py allows data.root)."""
    return tr.run_stage(name, stage, params, index_path, allowed_roots=[index_path.parent], **kw)


def paths(tmp: Path, k: int) -> dict:
    return {"weights_out": tmp / f"models/stage{k}", "ckpt_dir": tmp / f"ckpt/stage{k}",
            "live_dir": tmp / f"dvclive/stage{k}", "metrics_path": tmp / f"metrics/stage{k}.json"}


@pytest.mark.slow
def test_stage1_then_stage2(index_path: Path, tmp_path: Path):
    p = small_params(epochs1=2, epochs2=1)
    m1 = run_stage("depth_anything_v2", 1, p, index_path, **paths(tmp_path, 1))
    assert m1["n_train"] == 6 and m1["n_val"] == 2 and len(m1["curve"]) == 2
    assert np.isfinite(m1["val_volume_ape"]) and m1["exported"]["weights"] == "ema"
    lo, hi = m1["val_volume_ape_ci95"]
    assert lo <= m1["val_volume_ape"] <= hi
    start = m1["val_start"]  # the stage-0 weights on the same validation dishes, before training
    assert np.isfinite(start["val_volume_ape"]) and start["val_volume_ape"] != m1["val_volume_ape"]
    assert start["val_volume_ape_ci95"][0] <= start["val_volume_ape"] <= start["val_volume_ape_ci95"][1]
    gn = m1["loss_terms"]["last_epoch"]["train_gradnorm"]  # per-term gradient norms beside the values
    assert gn["depth"]["norm"] > 0 and sum(v["share"] for v in gn.values()) == pytest.approx(1, abs=1e-3)
    assert gn["mask"]["norm"] > 0   # params.yaml's model has a food-mask head: it trains in stage 1 (loss.w_mask)
    s1 = tmp_path / "models/stage1"
    assert (s1 / "model.safetensors").is_file() and (s1 / "model.json").is_file()
    # stage 1 leaves the encoder untouched
    from pipeline.models import build_model
    fresh = build_model("depth_anything_v2", p["model_cfg"]["depth_anything_v2"], seed=0)
    trained = load_model(s1)
    for a, b in zip(fresh.encoder_parameters(), trained.encoder_parameters()):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(fresh.decoder_parameters(), trained.decoder_parameters()))
    assert trained.has_mask_head and any(not torch.equal(a, b) for a, b in
                                         zip(fresh.mask_head_parameters(), trained.mask_head_parameters()))
    m2 = run_stage("depth_anything_v2", 2, p, index_path, init_weights=s1, **paths(tmp_path, 2))
    assert len(m2["curve"]) == 1
    trained2 = load_model(tmp_path / "models/stage2")
    assert trained2.has_mask_head
    assert any(not torch.equal(a, b) for a, b in zip(trained.encoder_parameters(), trained2.encoder_parameters()))
    tsv = tmp_path / "dvclive/stage2/plots/metrics/val/volume_ape.tsv"
    assert tsv.is_file()
    assert json.loads((tmp_path / "metrics/stage2.json").read_text())["stage"] == 2


@pytest.mark.slow
def test_resume_after_interrupted_fit(index_path: Path, tmp_path: Path, monkeypatch):
    p = small_params(epochs1=3)
    calls = {"n": 0}
    orig = DepthLitModule.on_train_epoch_start

    def killer(self):
        if self.current_epoch == 1 and calls["n"] == 0:
            calls["n"] += 1
            raise KeyboardInterrupt  # as a kill during the 2nd epoch (last.ckpt holds epoch 0)
        orig(self)

    monkeypatch.setattr(DepthLitModule, "on_train_epoch_start", killer)
    kw = paths(tmp_path, 1)
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        run_stage("depth_anything_v2", 1, p, index_path, **kw)
    assert (kw["ckpt_dir"] / "last.ckpt").is_file()
    m = run_stage("depth_anything_v2", 1, p, index_path, **kw)
    assert m["resumed"] is True
    assert [r["epoch"] for r in m["curve"]] == [1, 2]  # epoch 0 was not trained again
    steps = (kw["live_dir"] / "plots/metrics/val/volume_ape.tsv").read_text().split()[2::2]
    assert steps == ["0", "1", "2"]  # DVCLive curve continues across the resume
    # a changed parameter restarts cleanly instead of resuming stale state
    p2 = copy.deepcopy(p)
    p2["loss"]["w_volume"] = 0.2
    m2 = run_stage("depth_anything_v2", 1, p2, index_path, **kw)
    assert m2["resumed"] is False and [r["epoch"] for r in m2["curve"]] == [0, 1, 2]
    # a finished run is never resumed (DVC re-runs it only because something changed)
    m3 = run_stage("depth_anything_v2", 1, p2, index_path, **kw)
    assert m3["resumed"] is False and len(m3["curve"]) == 3


def test_checkpoint_dir_hash(tmp_path: Path):
    ck, live = tmp_path / "ck", tmp_path / "live"
    assert prepare_checkpoint_dir(ck, live, "a") is None
    (ck / "last.ckpt").write_bytes(b"x")
    assert prepare_checkpoint_dir(ck, live, "a") == ck / "last.ckpt"
    live.mkdir()
    assert prepare_checkpoint_dir(ck, live, "b") is None
    assert not (ck / "last.ckpt").exists() and not live.exists()
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    # a rank other than 0 never deletes: it reads the same answer rank 0 reaches
    (ck / "last.ckpt").write_bytes(b"x")
    live.mkdir()
    assert prepare_checkpoint_dir(ck, live, "c", clean=False) is None
    assert (ck / "last.ckpt").exists() and live.exists()


def _val_batch_and_module(index_path: Path) -> tuple[dict, DepthLitModule]:
    """The first validation batch (2 dishes) of the tiny index and a small random module to score it."""
    from pipeline.models import build_model
    from pipeline.train.datamodule import DishDataModule
    p = small_params()
    cfg = p["model_cfg"]["depth_anything_v2"]
    dm = DishDataModule(index_path, tuple(cfg["size"]), 2, None, allowed_roots=[index_path.parent])
    dm.setup()
    batch = next(iter(dm.val_dataloader()))
    geom = tr.geometry_params(p, tuple(cfg["size"]), dm.original_width())
    recipe = load_params().train.recipe_random
    return batch, DepthLitModule(build_model("depth_anything_v2", cfg), 1, p["loss"], geom, recipe)


@pytest.mark.slow
def test_validation_reference_scores_zero(index_path: Path):
    """GT depth as the prediction scores exactly 0 against the same-resolution reference,
    while the full-resolution label differs from it (the resampling alone)."""
    batch, lit = _val_batch_and_module(index_path)
    lit.forward = lambda images, K: {"depth": batch["depth"].clone(), "K": K}
    lit.validation_step(batch, 0)
    rows = lit._val[0]  # [index, ape, ape_full, ref_ape, abs_rel]
    assert torch.equal(rows[:, 1], torch.zeros(len(rows))) and torch.all(rows[:, 4] == 0)
    assert torch.all(rows[:, 3] > 0) and torch.equal(rows[:, 2], rows[:, 3])


@pytest.mark.slow
def test_a_bowl_label_is_scored_on_its_depth_not_its_volume(index_path: Path):
    """A dish labelled above a bowl's surface leaves the validation volume scores, as it leaves
    the volume term: the ring plane's reference is a sliver of its food (one such dish took the
    default's mean val APE from 0.83 to 5.65); its depth error still counts."""
    batch, lit = _val_batch_and_module(index_path)
    batch["bowl_label"] = torch.tensor([True, False])
    lit.forward = lambda images, K: {"depth": batch["depth"].clone() * 1.1, "K": K}
    lit.on_validation_epoch_start()
    lit.validation_step(batch, 0)
    rows = lit._val[0]  # [index, ape, ape_full, ref_ape, abs_rel, fx, fy]
    assert torch.isnan(rows[0, 1:4]).all() and torch.isfinite(rows[1, 1:4]).all()
    assert torch.allclose(rows[:, 4], torch.tensor([0.1, 0.1]), atol=1e-4)
    logged = {}
    lit.all_gather = lambda x: x
    lit.log = lambda k, v, **kw: logged.update({k: float(v)})
    lit._reduce_terms = lambda acc: {}
    lit._trainer = type("NotSanityChecking", (), {"sanity_checking": False})()
    lit.on_validation_epoch_end()
    assert len(lit.val_apes) == 1 and logged["val/volume_ape"] == pytest.approx(float(rows[1, 1]))
    assert logged["val/depth_abs_rel"] == pytest.approx(0.1, abs=1e-4)
    assert lit.val_reference["n_dishes"] == 1


def test_trainer_precision_auto():
    kw = trainer_kwargs({"accelerator": "cpu", "precision": "auto"})
    assert kw["precision"] == "32-true" and kw["num_nodes"] == 1


@pytest.mark.slow
def test_same_seed_same_weights_on_cpu(index_path: Path, tmp_path: Path):
    from safetensors.torch import load_file
    p = small_params(epochs1=1)
    for run in ("a", "b"):
        run_stage("depth_anything_v2", 1, p, index_path, **paths(tmp_path / run, 1))
    a = load_file(str(tmp_path / "a/models/stage1/model.safetensors"))
    b = load_file(str(tmp_path / "b/models/stage1/model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_killed_run_resumes_to_identical_weights(index_path: Path, tmp_path: Path, monkeypatch):
    """A kill during epoch 3, then a re-run, resumes after epoch 2 (not after the last best)
    and ends with exactly the weights of an uninterrupted run (same batches, same draws)."""
    from safetensors.numpy import load_file

    p = small_params(epochs1=4)
    p["train"]["batch_size"] = 2  # several batches per epoch, so the shuffle order matters
    ref = paths(tmp_path / "ref", 1)
    run_stage("depth_anything_v2", 1, p, index_path, **ref)
    calls = {"n": 0}
    orig = DepthLitModule.on_train_epoch_start

    def killer(self):
        if self.current_epoch == 3 and calls["n"] == 0:
            calls["n"] += 1
            raise KeyboardInterrupt
        orig(self)

    monkeypatch.setattr(DepthLitModule, "on_train_epoch_start", killer)
    cut = paths(tmp_path / "cut", 1)
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        run_stage("depth_anything_v2", 1, p, index_path, **cut)
    m = run_stage("depth_anything_v2", 1, p, index_path, **cut)
    assert m["resumed"] and [r["epoch"] for r in m["curve"]] == [3]
    a = load_file(str(ref["weights_out"] / "model.safetensors"))
    b = load_file(str(cut["weights_out"] / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
