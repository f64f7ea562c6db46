"""Fine-tuning with PyTorch Lightning: the LightningModule, the trainer, resume logic.

Stage 1 trains the decoder on a frozen encoder; stage 2 trains everything at lower rates
from the stage-1 weights. Checkpoints live beside a hash of the parameters that shaped
them, so a killed run resumes and a changed parameter restarts cleanly.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint, EarlyStopping, ModelCheckpoint

from pipeline.data import DishDataModule, check_size, train_augment
from pipeline.inference import load_model, save_model
from pipeline.io import write_json, write_text
from pipeline.losses import check_weights, focal_rel_errors, total_loss, valid_depth
from pipeline.models import DepthModel, build_model

MONITOR = "val/volume_ape"
HASH_FILE = "config_hash.txt"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def config_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def trainer_kwargs(tr: dict) -> dict:
    """params `trainer` -> pl.Trainer kwargs. precision "auto": bf16-mixed on GPU, 32 on CPU."""
    accel = str(tr.get("accelerator", "auto"))
    gpu = torch.cuda.is_available() and accel in ("auto", "gpu", "cuda")
    precision = tr.get("precision", "auto")
    if precision == "auto":
        precision = "bf16-mixed" if gpu else "32-true"
    return {"accelerator": accel, "devices": tr.get("devices", 1), "num_nodes": int(tr.get("num_nodes", 1)),
            "strategy": tr.get("strategy", "auto"), "precision": precision}


class DepthLitModule(pl.LightningModule):
    """One training stage of one model: our losses, our validation volume error."""

    def __init__(self, model: DepthModel, stage: int, loss_weights: dict, geom: dict,
                 lr_encoder: float, lr_decoder: float, weight_decay: float, max_epochs: int) -> None:
        super().__init__()
        self.model = model
        self.stage = int(stage)
        self.weights = check_weights(loss_weights)
        self.geom = dict(geom)
        self.lr_encoder, self.lr_decoder = float(lr_encoder), float(lr_decoder)
        self.weight_decay, self.max_epochs = float(weight_decay), int(max_epochs)
        self.predicts_K = bool(getattr(model, "predicts_K", False))  # UniDepth, camera: predict
        self.model.set_encoder_frozen(self.stage == 1)
        self.live = None  # dvclive.Live, attached by run_stage on rank 0
        self.history: list[dict] = []
        self._train_sum, self._train_n, self._skipped = 0.0, 0, 0
        self._val: list[torch.Tensor] = []
        self._t0 = time.time()

    def forward(self, images: torch.Tensor, K: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model(images, K.clone())  # UniDepth-style in-place edits never reach the batch

    def on_fit_start(self) -> None:
        self._t0 = time.time()

    def on_train_start(self) -> None:
        # after a resume, drop DVCLive rows of epochs that will be trained again
        if self.live is not None and self.current_epoch > 0:
            truncate_live(Path(self.live.dir), self.current_epoch)

    def on_train_epoch_start(self) -> None:
        dm = self.trainer.datamodule
        if dm is not None and dm.train_set is not None:
            dm.train_set.epoch = self.current_epoch
        self._train_sum, self._train_n = 0.0, 0

    def training_step(self, batch: dict, batch_idx: int):
        out = self(batch["image"], batch["K"])
        loss, terms = total_loss(out, batch, self.weights, self.geom, self.predicts_K)
        if loss is None:  # no valid GT pixel anywhere in the batch
            self._skipped += 1
            return None
        bs = batch["image"].shape[0]
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=bs, sync_dist=True)
        for k, v in terms.items():
            self.log(f"train/{k}", v, on_step=False, on_epoch=True, batch_size=bs, sync_dist=True)
        self._train_sum += float(loss.detach()) * bs
        self._train_n += bs
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        from pipeline.geometry import estimate_volume_torch as volume_any_precision

        def estimate_volume_torch(*a, **kw) -> torch.Tensor:  # float32 under bf16 autocast (geometry's
            with torch.autocast(self.device.type, enabled=False):  # numpy steps reject bf16)
                return volume_any_precision(*a, **kw)
        out = self(batch["image"], batch["K"])
        pred = out["depth"].float()
        gt, mask, K = batch["depth"], batch["mask"], batch["K"]
        valid = valid_depth(gt)
        abs_rel = torch.stack([((pred[i] - gt[i]).abs() / gt[i])[valid[i]].mean() if valid[i].any()
                               else pred.new_tensor(float("nan")) for i in range(len(gt))])
        kw = dict(method=self.geom["method"], ring_px=int(self.geom["ring_px"]),
                  cell_mm=float(self.geom["cell_mm"]), seed=int(self.geom.get("seed", 0)))
        try:
            vol = estimate_volume_torch(pred, mask, K.float(), **kw).float()
        except ValueError:  # one odd dish must not hide the others: retry one at a time
            vols = []
            for i in range(len(gt)):
                try:
                    vols.append(estimate_volume_torch(pred[i:i + 1], mask[i:i + 1], K[i:i + 1].float(),
                                                      **kw).float().reshape(()))
                except ValueError:
                    vols.append(pred.new_tensor(float("nan")))
            vol = torch.stack(vols)
        ape = (vol - batch["volume_ml"].float()).abs() / batch["volume_ml"].float()
        ape = torch.where(torch.isfinite(ape), ape, torch.ones_like(ape))  # a failed estimate counts 100 %
        k_err = (focal_rel_errors(out["K"], K) if self.predicts_K  # fx, fy relative error
                 else pred.new_full((len(gt), 2), float("nan")))
        self._val.append(torch.cat([torch.stack([ape, abs_rel], 1), k_err.float()], 1))

    def on_validation_epoch_start(self) -> None:
        self._val = []

    def on_validation_epoch_end(self) -> None:
        local = torch.cat(self._val) if self._val else torch.zeros(0, 4, device=self.device)
        allv = self.all_gather(local).reshape(-1, 4)
        ape, abs_rel = allv[:, 0], allv[:, 1]
        med = float(ape.median()) if len(ape) else float("nan")
        row = {"epoch": int(self.current_epoch), MONITOR: med,
               "val/volume_mape": float(ape.mean()) if len(ape) else float("nan"),
               "val/depth_abs_rel": float(np.nanmean(abs_rel.cpu().numpy())) if len(ape) else float("nan")}
        if self.predicts_K and len(ape):
            row["val/fx_rel_err"], row["val/fy_rel_err"] = (float(v) for v in allv[:, 2:].mean(0))
        self.log(MONITOR, med, sync_dist=False)
        self.log("val/volume_mape", row["val/volume_mape"])
        self.log("val/depth_abs_rel", row["val/depth_abs_rel"])
        if self.trainer.sanity_checking:
            return
        row["train/loss"] = self._train_sum / self._train_n if self._train_n else float("nan")
        row["time_s"] = round(time.time() - self._t0, 1)
        self.history.append(row)
        if self.live is not None and self.trainer.is_global_zero:
            self.live.step = int(self.current_epoch)  # step == epoch, also across a resume
            for k, v in row.items():
                if k not in ("epoch", "time_s") and math.isfinite(v):
                    self.live.log_metric(k, v)
            self.live.sync()

    def configure_optimizers(self):
        groups = []
        enc = [p for p in self.model.encoder_parameters() if p.requires_grad]
        dec = [p for p in self.model.decoder_parameters() if p.requires_grad]
        if enc:
            groups.append({"params": enc, "lr": self.lr_encoder})
        if dec:
            groups.append({"params": dec, "lr": self.lr_decoder})
        if not groups:
            raise ValueError("training: no trainable parameters (everything frozen?)")
        opt = torch.optim.AdamW(groups, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.max_epochs), eta_min=0.0)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


class LatestCheckpoint(Checkpoint):
    """Writes `path` at the end of every epoch (after validation and early stopping), atomically.
    Lightning's `save_last` only follows a new best, so a kill after epochs without improvement
    would lose them on resume."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        trainer.save_checkpoint(tmp)
        if trainer.is_global_zero:
            os.replace(tmp, self.path)


def open_live(live_dir: Path, resume: bool) -> Any:
    """DVCLive logger for one stage; its dvc.yaml entries are ours, not DVCLive's."""
    from dvclive import Live
    from scmrepo.exceptions import SCMError

    try:
        return Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False, resume=resume)
    except SCMError as e:  # DVCLive 3.49 fails on a git repository with no commit yet
        raise ValueError(f"DVCLive could not read this git repository ({e}): make a first "
                         "commit (`git add -A && git commit -m init`), then run dvc repro again") from None


def truncate_live(live_dir: Path, from_step: int) -> None:
    """Remove DVCLive .tsv rows with step >= from_step (written before a kill)."""
    for tsv in (live_dir / "plots" / "metrics").rglob("*.tsv"):
        lines = tsv.read_text().splitlines()
        keep = lines[:1] + [ln for ln in lines[1:] if int(float(ln.split("\t")[0])) < from_step]
        write_text(tsv, "\n".join(keep) + "\n")


def geometry_params(params: dict, size_hw: tuple[int, int], orig_width: float) -> dict:
    """`volume` params with ring_px rescaled from the labels' resolution to the training size."""
    vol = params.get("volume", {})
    scale = size_hw[1] / orig_width
    return {"method": vol.get("method", "heightmap"),
            "ring_px": max(2, int(round(float(vol.get("ring_px", 20)) * scale))),
            "cell_mm": float(vol.get("cell_mm", 2.0)), "seed": int(params.get("train", {}).get("seed", 0))}


def prepare_checkpoint_dir(ckpt_dir: Path, live_dir: Path, key: str) -> Path | None:
    """Return the checkpoint to resume from, or None after clearing stale state from the
    checkpoint and DVCLive folders: a different config hash, no hash, or a run that finished
    (DVC re-runs a finished stage only because something changed, e.g. code)."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    hash_path, last = ckpt_dir / HASH_FILE, ckpt_dir / "last.ckpt"
    same = hash_path.is_file() and hash_path.read_text().strip() == key
    if same and last.is_file():
        return last
    for p in ckpt_dir.glob("*.ckpt"):
        p.unlink()
    if live_dir.exists():
        shutil.rmtree(live_dir)
    write_text(hash_path, key + "\n")
    return None


def run_stage(name: str, stage: int, params: dict, index_path: Path, weights_out: Path,
              ckpt_dir: Path, live_dir: Path, metrics_path: Path, init_weights: Path | None = None,
              max_dishes: int | None = None, allowed_roots: list[Path] | None = None) -> dict:
    """Train one stage end to end; write safetensors weights, stage metrics and DVCLive logs."""
    if stage not in (1, 2):
        raise ValueError(f"stage: expected 1 or 2, got {stage}")
    tp = params["train"]
    sp = tp[f"stage{stage}"]
    seed = int(tp.get("seed", 0))
    tr = params.get("trainer", {})
    if tr.get("threads"):
        torch.set_num_threads(int(tr["threads"]))
    pl.seed_everything(seed, workers=True, verbose=False)
    model_cfg = params["model_cfg"][name]
    size = check_size(model_cfg.get("size", [126, 168]))
    if stage == 1:
        model = build_model(name, model_cfg, seed=seed)
    else:
        if init_weights is None:
            raise ValueError("stage 2 needs init_weights (the stage-1 weights folder)")
        model = load_model(init_weights).train()
    dm = DishDataModule(index_path, size, tp.get("batch_size", 8), train_augment(params, name), seed=seed,
                        num_workers=int(tr.get("num_workers", 0)), work_scale=float(tp.get("work_scale", 1.5)),
                        max_dishes=max_dishes, allowed_roots=allowed_roots)
    geom = geometry_params(params, size, dm.original_width())
    key = config_hash({"name": name, "stage": stage, "model_cfg": model_cfg, "loss": params["loss"],
                       "train": tp, "augment": params.get("augment"), "geom": geom, "trainer": tr,
                       "index": sha256_file(Path(index_path)), "max_dishes": max_dishes,
                       "init": sha256_file(Path(init_weights) / "model.safetensors") if init_weights else None})
    resume = prepare_checkpoint_dir(Path(ckpt_dir), Path(live_dir), key)
    lit = DepthLitModule(model, stage, params["loss"], geom, sp.get("lr_encoder", 0.0), sp["lr_decoder"],
                         tp.get("weight_decay", 0.01), sp["epochs"])
    ckpt_cb = ModelCheckpoint(dirpath=str(ckpt_dir), filename="best", monitor=MONITOR, mode="min",
                              save_top_k=1)
    stop_cb = EarlyStopping(monitor=MONITOR, mode="min", patience=int(tp.get("patience", 3)))
    trainer = pl.Trainer(max_epochs=int(sp["epochs"]), gradient_clip_val=float(tp.get("grad_clip", 1.0)),
                         callbacks=[ckpt_cb, stop_cb, LatestCheckpoint(ckpt_dir / "last.ckpt")],
                         logger=False, num_sanity_val_steps=0,
                         default_root_dir=str(ckpt_dir), enable_model_summary=False,
                         log_every_n_steps=1, **trainer_kwargs(tr))
    if trainer.is_global_zero:
        lit.live = open_live(live_dir, resume is not None)
    t0 = time.time()
    trainer.fit(lit, datamodule=dm, ckpt_path=str(resume) if resume else None,
                weights_only=True)  # resume never unpickles code
    seconds = time.time() - t0
    if lit.live is not None:
        lit.live.end()
    if not trainer.is_global_zero:
        return {}
    best = ckpt_cb.best_model_path or str(Path(ckpt_dir) / "last.ckpt")
    state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    lit.load_state_dict(state)
    save_model(lit.model, Path(weights_out), name, model_cfg)
    curve = [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()} for r in lit.history]
    best_score = ckpt_cb.best_model_score
    metrics = {"model": name, "stage": stage, "best_val_volume_ape": float(best_score) if best_score is not None else None,
               "epochs_run": int(trainer.current_epoch), "resumed": resume is not None,
               "skipped_batches": lit._skipped, "train_seconds": round(seconds, 1),
               "n_train": len(dm.train_set), "n_val": len(dm.val_set), "curve": curve}
    write_json(metrics_path, metrics)
    write_text(Path(ckpt_dir) / HASH_FILE, f"{key} finished\n")  # never resume a finished run
    return metrics
