"""Fine-tuning with PyTorch Lightning: the LightningModule, the trainer, resume logic.

Stage 1 trains the decoder on a frozen encoder; stage 2 trains everything at lower rates
from the stage-1 weights. Checkpoints live beside a hash of the parameters that shaped
them, so a killed run resumes and a changed parameter restarts cleanly.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path
from dataclasses import asdict
from typing import Any, Mapping

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint, EarlyStopping, ModelCheckpoint

from pipeline.config import LossConfig, Params, TrainerConfig, as_params
from pipeline.typed import build
from pipeline.data import DishDataModule, check_size, train_augment
from pipeline.inference import load_model, save_model
from pipeline.io import REPO_ROOT, resolve, write_json, write_text
from pipeline.losses import (TERM_NAMES, check_weights, focal_rel_errors, graph_zero, loss_terms, valid_depth,
                             weighted_sum)
from pipeline.models import DepthModel, build_model, config_for

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


class DepthLitModule(pl.LightningModule):
    """One training stage of one model: our losses, our validation volume error.

    Correct under DDP: every rank takes a step on every batch (a batch without valid depth
    gives a zero loss that keeps the graph), a non-finite loss on any rank stops all ranks
    with the same error, and epoch metrics are reduced over all ranks (validation gathers
    per-dish errors, de-duplicated, so the median is over all validation dishes)."""

    STATS = ("loss",) + TERM_NAMES  # per-batch vector: total loss, then each term (NaN = off)

    def __init__(self, model: DepthModel, stage: int, loss_weights: LossConfig | dict, geom: dict,
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
        self.live = None  # dvclive.Live, attached by run_stage on global rank 0 only
        self.history: list[dict] = []
        self.val_reference: dict = {}
        self.skipped = 0       # batches without valid GT, all ranks, this run
        self._skipped = 0      # this rank, this epoch
        self._train_acc: list[torch.Tensor] = []  # per batch: [batch size, STATS...]
        self._val: list[torch.Tensor] = []        # per dish: [index, ape, ape_full, ref_ape, abs_rel]
        self._val_terms: list[torch.Tensor] = []  # per batch: [batch size, STATS...]
        self._val_row: dict = {}
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
        self._train_acc, self._skipped = [], 0

    def _stats(self, out: dict, batch: dict) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(loss keeping the graph, detached STATS vector, skipped?) for one batch."""
        terms = loss_terms(out, batch, self.weights, self.geom, self.predicts_K)
        pred = out["depth"]
        if terms is None:  # no valid GT pixel in this rank's batch: a zero step, not a missing one
            loss = graph_zero(pred.float())
            return loss, torch.full((len(self.STATS),), float("nan"), device=pred.device), True
        loss = weighted_sum(terms, self.weights)
        nan = pred.new_tensor(float("nan"), dtype=torch.float32)
        vec = torch.stack([loss.detach().float()] + [terms[k].detach().float() if k in terms else nan
                                                     for k in TERM_NAMES])
        return loss, vec, False

    def _stop_if_not_finite(self, vec: torch.Tensor, skipped: bool, batch_idx: int) -> None:
        """All ranks see every rank's loss (all_gather) and raise the same error together, so
        no rank is left waiting in a collective."""
        flag = vec.new_tensor([0.0 if skipped else 1.0])
        everyone = self.all_gather(torch.cat([flag, vec])).reshape(-1, 1 + len(self.STATS))
        bad = [r for r, row in enumerate(everyone) if row[0] > 0 and not torch.isfinite(row[1])]
        if bad:
            on = {"loss"} | {k for k in TERM_NAMES if self.weights["w_" + k] > 0
                             and (k != "intrinsics" or self.predicts_K)}
            detail = "; ".join(f"rank {r}: " + ", ".join(f"{n}={float(x):.4g}" for n, x in
                                                        zip(self.STATS, everyone[r, 1:]) if n in on)
                               for r in bad)
            raise FloatingPointError(
                f"non-finite training loss on rank(s) {bad} at epoch {self.current_epoch}, batch "
                f"{batch_idx} (every rank stops): {detail}. Lower the learning rate or check the data.")

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        out = self(batch["image"], batch["K"])
        loss, vec, skipped = self._stats(out, batch)
        self._stop_if_not_finite(vec, skipped, batch_idx)
        if skipped:
            self._skipped += 1
        else:
            bs = float(batch["image"].shape[0])
            self._train_acc.append(torch.cat([vec.new_tensor([bs]), vec * bs]))
        return loss

    def _volumes(self, depth: torch.Tensor, mask: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        """Volumes (mL) through pipeline.geometry, in float32 even under bf16 autocast (the
        geometry's numpy steps reject bf16); NaN for a dish whose estimate fails."""
        from pipeline.geometry import estimate_volume_torch
        kw = dict(method=self.geom["method"], ring_px=int(self.geom["ring_px"]),
                  cell_mm=float(self.geom["cell_mm"]), seed=int(self.geom["seed"]))
        with torch.autocast(self.device.type, enabled=False):
            depth, K = depth.float(), K.float()
            try:
                return estimate_volume_torch(depth, mask, K, **kw).float()
            except ValueError:  # one odd dish must not hide the others: retry one at a time
                vols = []
                for i in range(len(depth)):
                    try:
                        vols.append(estimate_volume_torch(depth[i:i + 1], mask[i:i + 1], K[i:i + 1],
                                                          **kw).float().reshape(()))
                    except ValueError:
                        vols.append(depth.new_tensor(float("nan"), dtype=torch.float32))
                return torch.stack(vols)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self(batch["image"], batch["K"])
        _, vec, skipped = self._stats(out, batch)
        if not skipped:
            bs = float(batch["image"].shape[0])
            self._val_terms.append(torch.cat([vec.new_tensor([bs]), vec * bs]))
        pred = out["depth"].float()
        gt, mask, K = batch["depth"], batch["mask"], batch["K"]
        valid = valid_depth(gt)
        abs_rel = torch.stack([((pred[i] - gt[i]).abs() / gt[i])[valid[i]].mean() if valid[i].any()
                               else pred.new_tensor(float("nan")) for i in range(len(gt))])
        label = batch["volume_ml"].float()
        vol = self._volumes(pred, mask, K)
        # the reference: GT depth through the same geometry at this resolution, so a perfect
        # prediction scores 0 (the full-resolution label differs by the resampling alone)
        gt0 = torch.where(valid, gt.float(), torch.zeros_like(gt, dtype=torch.float32))
        ref = self._volumes(gt0, mask, K)
        ref = torch.where(torch.isfinite(ref) & (ref > 0), ref, label)

        def ape(v: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            e = (v - target).abs() / target
            return torch.where(torch.isfinite(e), e, torch.ones_like(e))  # a failed estimate counts 100 %

        k_err = (focal_rel_errors(out["K"], K).float() if self.predicts_K  # fx, fy relative error
                 else pred.new_full((len(gt), 2), float("nan")))
        idx = batch["index"].to(pred.device).float()
        self._val.append(torch.cat([torch.stack([idx, ape(vol, ref), ape(vol, label), ape(ref, label),
                                                 abs_rel], 1), k_err], 1))

    def on_validation_epoch_start(self) -> None:
        self._val, self._val_terms = [], []

    def _reduce_terms(self, acc: list[torch.Tensor]) -> dict[str, float]:
        """Batch-size-weighted means of STATS over all batches of all ranks."""
        width = 1 + len(self.STATS)
        local = torch.stack(acc).sum(0) if acc else torch.zeros(width, device=self.device)
        local = torch.cat([local[:1], torch.nan_to_num(local[1:], nan=0.0), torch.isnan(local[1:]).float()])
        tot = self.trainer.strategy.reduce(local, reduce_op="sum")
        n, sums, missing = tot[0], tot[1:width], tot[width:]
        return {k: float(s / n) for k, s, m in zip(self.STATS, sums, missing) if n > 0 and m == 0}

    def on_validation_epoch_end(self) -> None:
        local = torch.cat(self._val) if self._val else torch.zeros(0, 7, device=self.device)
        allv = self.all_gather(local).reshape(-1, 7)
        # DistributedSampler pads ranks with repeated dishes: count each dish once
        order = torch.argsort(allv[:, 0], stable=True)
        allv = allv[order]
        keep = torch.ones(len(allv), dtype=torch.bool, device=allv.device)
        keep[1:] = allv[1:, 0] != allv[:-1, 0]
        allv = allv[keep]
        ape, ape_full, ref_ape = allv[:, 1], allv[:, 2], allv[:, 3]
        abs_rel = allv[:, 4]
        nan = float("nan")
        row = {MONITOR: float(ape.median()) if len(ape) else nan,
               "val/volume_mape": float(ape.mean()) if len(ape) else nan,
               "val/volume_ape_fullres_label": float(ape_full.median()) if len(ape) else nan,
               "val/depth_abs_rel": float(abs_rel[~torch.isnan(abs_rel)].mean()) if len(ape) else nan}
        if self.predicts_K and len(ape):
            row["val/fx_rel_err"], row["val/fy_rel_err"] = (float(v) for v in allv[:, 5:7].mean(0))
        row.update({f"val/{k}": v for k, v in self._reduce_terms(self._val_terms).items()})
        for k, v in row.items():
            self.log(k, torch.tensor(v, dtype=torch.float32, device=self.device), sync_dist=True)
        if len(ref_ape):
            r = ref_ape.double().cpu().numpy()
            self.val_reference = {"n_dishes": int(len(r)), "median_ape": round(float(np.median(r)), 5),
                                  "p90_ape": round(float(np.quantile(r, 0.9)), 5),
                                  "mean_ape": round(float(r.mean()), 5)}
        self._val_row = {} if self.trainer.sanity_checking else row

    def on_train_epoch_end(self) -> None:
        """One curve row per epoch (validation ran already): train means reduced over ranks,
        the synced validation metrics; DVCLive written by global rank 0 only."""
        row = {"epoch": int(self.current_epoch), **self._val_row}
        row.update({f"train/{k}": v for k, v in self._reduce_terms(self._train_acc).items()})
        skipped = self.trainer.strategy.reduce(torch.tensor(float(self._skipped), device=self.device),
                                               reduce_op="sum")
        self.skipped += int(skipped)
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
        trainer.save_checkpoint(tmp, weights_only=False)  # full state: resume needs optimizer + loops
        if trainer.is_global_zero:
            os.replace(tmp, self.path)


def loss_term_summary(history: list[dict], weights: dict[str, float]) -> dict:
    """Each loss term (unweighted, and times its weight) in the first and the last epoch of
    this run, train and val: shows which terms actually pull on the model."""
    if not history:
        return {}
    out: dict = {}
    for tag, row in (("first_epoch", history[0]), ("last_epoch", history[-1])):
        entry: dict = {"epoch": row["epoch"]}
        for split in ("train", "val"):
            raw = {k: row[f"{split}/{k}"] for k in TERM_NAMES if f"{split}/{k}" in row}
            entry[split] = {k: round(v, 6) for k, v in raw.items()}
            entry[f"{split}_weighted"] = {k: round(weights["w_" + k] * v, 6) for k, v in raw.items()}
        out[tag] = entry
    return out


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


def geometry_params(params: Params | Mapping, size_hw: tuple[int, int], orig_width: float) -> dict:
    """`volume` params with ring_px rescaled from the labels' resolution to the training size."""
    params = as_params(params)
    vol = params.volume
    scale = size_hw[1] / orig_width
    return {"method": vol.method, "ring_px": max(2, int(round(vol.ring_px * scale))),
            "cell_mm": vol.cell_mm, "seed": params.train.seed}


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


def run_stage(name: str, stage: int, params: Params | Mapping, index_path: Path, weights_out: Path,
              ckpt_dir: Path, live_dir: Path, metrics_path: Path, init_weights: Path | None = None,
              max_dishes: int | None = None, allowed_roots: list[Path] | None = None) -> dict:
    """Train one stage end to end; write safetensors weights, stage metrics and DVCLive logs."""
    params = as_params(params)
    tp, tr = params.train, params.trainer
    sp = tp.stage(stage)
    seed = tp.seed
    if tr.threads:
        torch.set_num_threads(tr.threads)
    pl.seed_everything(seed, workers=True, verbose=False)
    model_cfg = config_for(params, name)
    size = check_size(model_cfg.size)
    if stage == 1:
        model = build_model(name, model_cfg, seed=seed)
    else:
        if init_weights is None:
            raise ValueError("stage 2 needs init_weights (the stage-1 weights folder)")
        model = load_model(init_weights).train()
    dm = DishDataModule(index_path, size, tp.batch_size, train_augment(params, name), seed=seed,
                        num_workers=tr.num_workers, work_scale=tp.work_scale,
                        max_dishes=max_dishes, allowed_roots=allowed_roots)
    geom = geometry_params(params, size, dm.original_width())
    key = config_hash({"name": name, "stage": stage, "model_cfg": asdict(model_cfg), "loss": asdict(params.loss),
                       "train": asdict(tp), "augment": params.augment and asdict(params.augment), "geom": geom, "trainer": asdict(tr),
                       "index": sha256_file(Path(index_path)), "max_dishes": max_dishes,
                       "init": sha256_file(Path(init_weights) / "model.safetensors") if init_weights else None,
                       "code": code_digest(), "data": data_digest(dm)})
    lit = DepthLitModule(model, stage, params.loss, geom, sp.lr_encoder, sp.lr_decoder,
                         tp.weight_decay, sp.epochs)
    ckpt_cb = ModelCheckpoint(dirpath=str(ckpt_dir), filename="best", monitor=MONITOR, mode="min",
                              save_top_k=1)
    stop_cb = EarlyStopping(monitor=MONITOR, mode="min", patience=tp.patience)
    trainer = pl.Trainer(max_epochs=sp.epochs, gradient_clip_val=tp.grad_clip,
                         callbacks=[ckpt_cb, stop_cb, LatestCheckpoint(ckpt_dir / "last.ckpt")],
                         logger=False, num_sanity_val_steps=0,
                         default_root_dir=str(ckpt_dir), enable_model_summary=False,
                         log_every_n_steps=1, **trainer_kwargs(tr))
    # ranks are known once the Trainer exists; only global rank 0 deletes or writes files
    resume = prepare_checkpoint_dir(Path(ckpt_dir), Path(live_dir), key, clean=trainer.is_global_zero)
    if trainer.is_global_zero:
        lit.live = open_live(live_dir, resume is not None)
    t0 = time.time()
    portable = tr.portable_cpu and trainer.strategy.root_device.type == "cpu"
    with onednn(enabled=not portable):  # oneDNN picks kernels and blocking per CPU model
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
    # no wall times in the file: it is a DVC metric, and its hash must repeat in a fresh clone
    curve = [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items() if k != "time_s"}
             for r in lit.history]
    best_score = ckpt_cb.best_model_score
    metrics = {"model": name, "stage": stage, "best_val_volume_ape": float(best_score) if best_score is not None else None,
               "epochs_run": int(trainer.current_epoch), "resumed": resume is not None,
               "skipped_batches": lit.skipped,
               "world_size": int(trainer.world_size),
               "n_train": len(dm.train_set), "n_val": len(dm.val_set),
               "val_label": "GT depth through the same geometry at the training size (val/volume_ape)",
               "val_reference_vs_fullres_label": lit.val_reference,
               "loss_terms": loss_term_summary(lit.history, lit.weights), "curve": curve}
    write_json(metrics_path, metrics)
    write_text(Path(ckpt_dir) / HASH_FILE, f"{key} finished\n")  # never resume a finished run
    return {**metrics, "train_seconds": round(seconds, 1)}
