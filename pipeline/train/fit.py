"""Run one fine-tuning stage with PyTorch Lightning: the trainer, checkpoints and resume logic.

Stage 0 (synthetic pretraining) trains every layer of a random network; stage 1 trains the
decoder on a frozen encoder from the stage-0 model; stage 2 trains everything from the stage-1
weights. Each runs a fixed schedule and exports the EMA of its weights at the end (or the last
weights): never the best epoch of a noisy validation score. Checkpoints live beside a hash of the
parameters, code and data that shaped them, so a killed run resumes and a changed parameter
restarts cleanly."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint, WeightAveraging
from torch.optim.swa_utils import get_ema_multi_avg_fn

from pipeline.config import Params, TrainConfig, TrainerConfig, as_params
from pipeline.io import REPO_ROOT, resolve, sha256_file, write_json, write_text
from pipeline.models import build_model, config_for
from pipeline.models.base import depth_only
from pipeline.models.inference import load_model, save_model
from pipeline.train.datamodule import DishDataModule, check_size, train_augment
from pipeline.train.module import MONITOR, DepthLitModule, loss_term_summary
from pipeline.train.recipe import recipe_for
from pipeline.typed import build

HASH_FILE = "config_hash.txt"


def config_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def trainer_kwargs(tr: TrainerConfig | Mapping) -> dict:
    """params `trainer` -> pl.Trainer kwargs. precision "auto": bf16-mixed on GPU, 32 on CPU."""
    tr = build(TrainerConfig, tr, "trainer")
    accel = tr.accelerator
    gpu = torch.cuda.is_available() and accel in ("auto", "gpu", "cuda")
    precision = tr.precision
    if precision == "auto":
        precision = "bf16-mixed" if gpu else "32-true"
    strategy = tr.strategy
    if strategy == "ddp":  # Depth-Anything's first fusion block has a residual unit that is never
        strategy = "ddp_find_unused_parameters_true"  # used: plain DDP refuses such a model
    return {"accelerator": accel, "devices": tr.devices, "num_nodes": tr.num_nodes,
            "strategy": strategy, "precision": precision, "deterministic": tr.deterministic}


@contextlib.contextmanager
def onednn(enabled: bool):
    """torch.backends.mkldnn.enabled for the duration of a block."""
    old = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = enabled
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = old


def code_digest() -> str:
    """Hash of the training code (every pipeline module and the stage script): a checkpoint
    written by other code is never resumed, even when the params are the same."""
    h = hashlib.sha256()
    files = sorted((REPO_ROOT / "pipeline").rglob("*.py")) + [REPO_ROOT / "stages" / "train.py"]
    for f in files:
        if f.is_file():
            h.update(f.relative_to(REPO_ROOT).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def data_digest(dm: DishDataModule) -> str:
    """Hash of every file the stage reads (RGB, depth, mask of the train and val dishes), so
    regenerated data with an unchanged index never resumes a stale checkpoint."""
    h = hashlib.sha256()
    for split in ("train", "val"):
        for _, row in dm.rows(split).iterrows():
            for col in ("rgb_path", "depth_path", "mask_path"):
                h.update(sha256_file(resolve(row[col], dm.allowed_roots)).encode())
    return h.hexdigest()[:16]


class LatestCheckpoint(Checkpoint):
    """Writes `path` at the end of every epoch (after validation and early stopping), atomically.
    Lightning's `save_last` only follows a new best, so a kill after epochs without improvement
    would lose them on resume."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        trainer.save_checkpoint(tmp, weights_only=False)  # full state: resume needs optimizer + loops
        if trainer.is_global_zero:
            os.replace(tmp, self.path)


def open_live(live_dir: Path, resume: bool) -> Any:
    """DVCLive logger for one stage; its dvc.yaml entries are ours, not DVCLive's."""
    from scmrepo.exceptions import SCMError

    from dvclive import Live

    try:
        return Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False, resume=resume)
    except SCMError as e:  # DVCLive 3.49 fails on a git repository with no commit yet
        raise ValueError(f"DVCLive could not read this git repository ({e}): make a first "
                         "commit (`git add -A && git commit -m init`), then run dvc repro again") from None


def geometry_params(params: Params | Mapping, size_hw: tuple[int, int], orig_width: float) -> dict:
    """`volume` params with ring_px rescaled from the labels' resolution to the training size."""
    params = as_params(params)
    vol = params.volume
    scale = size_hw[1] / orig_width
    return {"method": vol.method, "ring_px": max(2, int(round(vol.ring_px * scale))),
            "cell_mm": vol.cell_mm, "seed": params.train.seed}


def _round(v: float | None) -> float | None:
    return None if v is None else round(float(v), 5)


def median_ci(values: np.ndarray, n_boot: int = 2000, seed: int = 0) -> list[float]:
    """Percentile bootstrap 95 % interval of the median (resampling the validation dishes)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    meds = np.median(v[rng.integers(0, len(v), size=(n_boot, len(v)))], axis=1)
    return [round(float(np.quantile(meds, 0.025)), 5), round(float(np.quantile(meds, 0.975)), 5)]


def selection_callbacks(tp: TrainConfig) -> list:
    """The selection rule as callbacks: `ema` keeps an exponential moving average of the
    weights (validated every epoch and copied into the model when training ends), `last`
    nothing. Neither looks at the validation score: a fixed schedule picks no epoch."""
    if tp.selection == "ema":  # lerp: a frozen weight stays bit-identical (decay*w + (1-decay)*w may not)
        return [WeightAveraging(multi_avg_fn=get_ema_multi_avg_fn(tp.ema_decay))]  # EMA, every step
    return []


def exported_note(tp: TrainConfig, last_epoch: int) -> dict:
    """What `metrics/train/*.json` says about the exported weights."""
    if tp.selection == "ema":
        return {"weights": "ema", "decay": tp.ema_decay, "epoch": last_epoch,
                "why": "exponential moving average of the weights at the end of the fixed schedule: "
                       "epoch-to-epoch differences of the validation score are within its noise, so "
                       "no epoch is picked by it; the curve and the score are of these EMA weights"}
    return {"weights": "last", "epoch": last_epoch,
            "why": "the last weights of the fixed schedule (the official Depth-Anything-V2 metric "
                   "recipe exports latest.pth); no epoch is picked by the noisy validation score"}


def prepare_checkpoint_dir(ckpt_dir: Path, live_dir: Path, key: str, clean: bool = True) -> Path | None:
    """Return the checkpoint to resume from, or None after clearing stale state from the
    checkpoint and DVCLive folders: a different config hash, no hash, or a run that finished
    (DVC re-runs a finished stage only because something changed, e.g. code).

    Only global rank 0 cleans (`clean`); other ranks only read. Rank 0 deletes stale
    checkpoints before it writes the new key, so a rank reading at any moment reaches the
    same answer as rank 0."""
    hash_path, last = ckpt_dir / HASH_FILE, ckpt_dir / "last.ckpt"
    same = hash_path.is_file() and hash_path.read_text().strip() == key
    if same and last.is_file():
        return last
    if not clean:
        return None
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    for p in ckpt_dir.glob("*.ckpt"):
        p.unlink()
    if live_dir.exists():
        shutil.rmtree(live_dir)
    write_text(hash_path, key + "\n")
    return None


def stage_model(name: str, stage: int, params: Params, init_weights: Path | None):
    """(model, recipe source) a stage starts from: stage 0 a random network (no food-mask head),
    stage 1 the stage-0 model (`model_cfg.<name>.pretrained`: a checkpoint, or random when null)
    with a fresh food-mask head when `model_cfg.<name>.mask_head`, stage 2 the stage-1 weights."""
    model_cfg = config_for(params, name)
    seed = params.train.seed
    if stage == 0:   # a stand-in for a checkpoint: the depth network alone, never a food-mask head
        return build_model(name, depth_only(dataclasses.replace(model_cfg, pretrained=None)), seed=seed), "random"
    source, _ = recipe_for(params, name)
    if stage == 1:
        return build_model(name, model_cfg, seed=seed), source
    if init_weights is None:
        raise ValueError("stage 2 needs init_weights (the stage-1 weights folder)")
    return load_model(init_weights).train(), source


def run_stage(name: str, stage: int, params: Params | Mapping, index_path: Path, weights_out: Path,
              ckpt_dir: Path, live_dir: Path, metrics_path: Path, init_weights: Path | None = None,
              max_dishes: int | None = None, allowed_roots: list[Path] | None = None,
              lit_class: Callable[..., DepthLitModule] = DepthLitModule, extra: dict | None = None) -> dict:
    """Train one stage end to end; write the weights (stage 0: a checkpoint that
    `model_cfg.<name>.pretrained` can point at; else safetensors + model.json), stage metrics and
    DVCLive logs. `lit_class` builds the LightningModule (distillation passes one with a teacher);
    `extra` (what that adds, JSON-able) joins the resume key and the stage metrics."""
    params = as_params(params)
    tp, tr = params.train, params.trainer
    epochs = tp.pretrain.epochs if stage == 0 else tp.stage(stage).epochs
    seed = tp.seed
    if tr.threads:
        torch.set_num_threads(tr.threads)
    pl.seed_everything(seed, workers=True, verbose=False)
    model_cfg = config_for(params, name)
    size = check_size(model_cfg.size)
    dm = DishDataModule(index_path, size, tp.batch_size, train_augment(params, name), seed=seed,
                        num_workers=tr.num_workers, work_scale=tp.work_scale,
                        max_dishes=max_dishes, allowed_roots=allowed_roots,
                        exclude_suspect=params.suspect.exclude)
    dm.rows("train"), dm.rows("val")  # an empty split fails here, in one line, not after the model is built
    model, source = stage_model(name, stage, params, init_weights)
    _, recipe = recipe_for(params, name, source)
    geom = geometry_params(params, size, dm.original_width())
    key = config_hash({"name": name, "stage": stage, "model_cfg": asdict(model_cfg), "loss": asdict(params.loss),
                       "train": asdict(tp), "augment": params.augment and asdict(params.augment), "geom": geom,
                       "trainer": asdict(tr),
                       "index": sha256_file(Path(index_path)), "max_dishes": max_dishes,
                       "init": sha256_file(Path(init_weights) / "model.safetensors") if init_weights else None,
                       "code": code_digest(), "data": data_digest(dm), **({"extra": extra} if extra else {})})
    sp = tp.stage2 if stage == 2 else None
    lit = lit_class(model, stage, params.loss, geom, recipe, tp.grad_norm_every,
                    encoder=sp.encoder if sp else None, lora=sp.lora if sp else None)
    trainer = pl.Trainer(max_epochs=epochs, gradient_clip_val=tp.grad_clip,
                         callbacks=selection_callbacks(tp) + [LatestCheckpoint(ckpt_dir / "last.ckpt")],
                         logger=False, num_sanity_val_steps=0,
                         default_root_dir=str(ckpt_dir), enable_model_summary=False,
                         log_every_n_steps=1, **trainer_kwargs(tr))
    # ranks are known once the Trainer exists; only global rank 0 deletes or writes files
    resume = prepare_checkpoint_dir(Path(ckpt_dir), Path(live_dir), key, clean=trainer.is_global_zero)
    if trainer.is_global_zero:
        lit.live = open_live(live_dir, resume is not None)
    t0 = time.time()
    portable = tr.portable_cpu and trainer.strategy.root_device.type == "cpu"
    start = None
    if stage >= 1:  # the starting weights on the same validation dishes: what the stage adds
        with onednn(enabled=not portable):
            trainer.validate(lit, datamodule=dm, verbose=False)
        v = lit.last_validation()
        start = {"val_volume_ape": _round(v.get(MONITOR)), "val_volume_mape": _round(v.get("val/volume_mape")),
                 "val_depth_abs_rel": _round(v.get("val/depth_abs_rel")),
                 "val_volume_ape_ci95": median_ci(lit.val_apes, seed=seed)}
    with onednn(enabled=not portable):  # oneDNN picks kernels and blocking per CPU model
        trainer.fit(lit, datamodule=dm, ckpt_path=str(resume) if resume else None,
                    weights_only=True)  # resume never unpickles code
    seconds = time.time() - t0
    if lit.live is not None:
        lit.live.end()
    if not trainer.is_global_zero:
        return {}
    # the selection callbacks have left the exported weights in lit.model (EMA: copied at train end)
    if stage == 0:
        lit.model.save_pretrained(Path(weights_out))
    else:
        save_model(lit.model, Path(weights_out), name, model_cfg,
                   trained_on={"data": params.data.source, "n_train": len(dm.train_set), "stage": stage,
                               "start": source})
    # no wall times in the file: it is a DVC metric, and its hash must repeat in a fresh clone
    curve = [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items() if k != "time_s"}
             for r in lit.history]
    last = curve[-1] if curve else {}
    metrics = {"model": name, "stage": stage, "start": source, "recipe": asdict(recipe),
               "exported": exported_note(tp, int(last.get("epoch", -1))),
               "val_volume_ape": last.get("val/volume_ape"),
               "val_volume_ape_ci95": median_ci(lit.val_apes, seed=seed),
               "val_start": start,
               "val_ci_note": "median APE of the exported weights on the validation dishes, percentile "
                              "bootstrap 95 % interval over the dishes (2000 resamples)",
               "epochs_run": int(trainer.current_epoch), "resumed": resume is not None,
               "skipped_batches": lit.skipped,
               "world_size": int(trainer.world_size),
               "n_train": len(dm.train_set), "n_val": len(dm.val_set),
               "val_label": "GT depth through the same geometry at the training size (val/volume_ape; "
                            "dishes labelled above a bowl's surface are left out)",
               "val_reference_vs_fullres_label": lit.val_reference,
               "loss_terms": loss_term_summary(lit.history, lit.weights), "curve": curve}
    if extra:
        metrics["extra"] = extra
    write_json(metrics_path, metrics)
    write_text(Path(ckpt_dir) / HASH_FILE, f"{key} finished\n")  # never resume a finished run
    return {**metrics, "train_seconds": round(seconds, 1)}
