"""The LightningModule of one training stage: our loss terms, the validation volume error against a
reference computed the same way at the training size, per-term DVCLive curves.

Correct under DDP: every rank takes a step on every batch, a non-finite loss on any rank stops all
ranks with the same error, and epoch metrics are reduced over all ranks."""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from pipeline.config import LoraConfig, LossConfig, RecipeConfig
from pipeline.io import write_text
from pipeline.models import DepthModel
from pipeline.models.lora import set_encoder_mode
from pipeline.train.losses import (
    TERM_NAMES,
    check_weights,
    focal_rel_errors,
    graph_zero,
    loss_settings,
    loss_terms,
    valid_depth,
    weighted_sum,
)
from pipeline.train.recipe import lr_lambda

MONITOR = "val/volume_ape"


class DepthLitModule(pl.LightningModule):
    """One training stage of one model: our losses, our validation volume error.

    Correct under DDP: every rank takes a step on every batch (a batch without valid depth
    gives a zero loss that keeps the graph), a non-finite loss on any rank stops all ranks
    with the same error, and epoch metrics are reduced over all ranks (validation gathers
    per-dish errors, de-duplicated, so the median is over all validation dishes)."""

    STATS = ("loss",) + TERM_NAMES  # per-batch vector: total loss, then each term (NaN = off)

    def __init__(self, model: DepthModel, stage: int, loss: LossConfig | dict, geom: dict,
                 recipe: RecipeConfig, grad_norm_every: int = 0, encoder: str | None = None,
                 lora: LoraConfig | None = None) -> None:
        """stage 0 (pretraining from random init) and 2 train every layer, stage 1 the decoder
        on a frozen encoder; `recipe`: LRs and per-iteration schedule of this starting point;
        `encoder`/`lora`: stage 2's train.stage2.encoder (full | lora | frozen) and its adapters."""
        super().__init__()
        self.model = model
        self.stage = int(stage)
        self.weights = check_weights(loss)
        self.settings = loss_settings(loss)
        self.geom = dict(geom)
        self.recipe = recipe
        self.grad_norm_every = int(grad_norm_every)
        self.predicts_K = bool(getattr(model, "predicts_K", False))  # UniDepth, camera: predict
        # the encoder: frozen in stage 1; stage 2 `full`, `lora` (adapters at lora.lr) or `frozen`
        self.encoder_mode = encoder or ("frozen" if self.stage == 1 else "full")
        set_encoder_mode(self.model, self.encoder_mode, lora)
        # LoRA adapters start at zero like a fresh head: they train at lora.lr (default: the decoder's LR)
        self.lr_encoder = float(recipe.lr_encoder)
        if self.encoder_mode == "lora":
            self.lr_encoder = float(lora.lr if lora and lora.lr is not None else recipe.lr_decoder)
        self.live = None  # dvclive.Live, attached by run_stage on global rank 0 only
        self.history: list[dict] = []
        self.val_reference: dict = {}
        self.val_apes = np.zeros(0)
        self.skipped = 0       # batches without valid GT, all ranks, this run
        self._skipped = 0      # this rank, this epoch
        self._train_acc: list[torch.Tensor] = []  # per batch: [batch size, STATS...]
        self._grad_acc: list[torch.Tensor] = []   # per measured step: |grad| of w_k * term_k (NaN = off)
        self._clip_acc: list[float] = []          # per step: total gradient norm before clipping
        self._val: list[torch.Tensor] = []        # per dish: [index, ape, ape_full, ref_ape, abs_rel]
        self._val_terms: list[torch.Tensor] = []  # per batch: [batch size, STATS...]
        self._val_row: dict = {}
        self._t0 = time.time()

    def __getstate__(self) -> dict:
        """Pickled / deep-copied state without the DVCLive logger (the EMA callback deep-copies
        the module; a Live holds repository handles that neither copy nor belong to the
        average) and, as Lightning's own, without the trainer."""
        state = super().__getstate__()
        state["live"] = None
        return state

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
        self._train_acc, self._grad_acc, self._clip_acc, self._skipped = [], [], [], 0

    def _stats(self, out: dict, batch: dict, grad_norms: bool = False) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(loss keeping the graph, detached STATS vector, skipped?) for one batch; with
        `grad_norms`, also records each weighted term's gradient norm on the trainable weights."""
        terms = self.batch_terms(out, batch)
        pred = out["depth"]
        if terms is None:  # no valid GT pixel in this rank's batch: a zero step, not a missing one
            loss = graph_zero(pred.float())
            return loss, torch.full((len(self.STATS),), float("nan"), device=pred.device), True
        loss = weighted_sum(terms, self.weights)
        if grad_norms:
            self._grad_acc.append(self._term_grad_norms(terms))
        nan = pred.new_tensor(float("nan"), dtype=torch.float32)
        vec = torch.stack([loss.detach().float()] + [terms[k].detach().float() if k in terms else nan
                                                     for k in self.STATS[1:]])
        return loss, vec, False

    def batch_terms(self, out: dict, batch: dict) -> dict[str, torch.Tensor] | None:
        """The loss terms of one batch (term k weighs `self.weights["w_" + k]`), None without valid GT
        depth. Distillation adds its teacher term here (pipeline.train.distill)."""
        return loss_terms(out, batch, self.weights, self.geom, self.predicts_K, self.settings)

    def _term_grad_norms(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """|d (w_k term_k) / d theta| over the trainable weights, per term (NaN = term off):
        what each term pulls with, which its value does not show."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        out = torch.full((len(TERM_NAMES),), float("nan"))
        for i, k in enumerate(TERM_NAMES):
            if k not in terms or not terms[k].requires_grad:
                continue
            grads = torch.autograd.grad(self.weights["w_" + k] * terms[k], params, retain_graph=True,
                                        allow_unused=True)
            out[i] = torch.sqrt(sum((g.detach().float() ** 2).sum() for g in grads if g is not None)
                                + torch.zeros(()))
        return out

    def on_before_optimizer_step(self, optimizer) -> None:
        from pytorch_lightning.utilities import grad_norm
        norms = grad_norm(self.model, norm_type=2)
        self._clip_acc.append(float(norms.get("grad_2.0_norm_total", 0.0)))

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
        measure = (self.grad_norm_every > 0 and self.trainer.world_size == 1
                   and (batch_idx == 0 or self.global_step % self.grad_norm_every == 0))  # not under DDP
        loss, vec, skipped = self._stats(out, batch, grad_norms=measure)
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
        from pipeline.geometry.volume_torch import estimate_volume_torch
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
        apes = torch.stack([ape(vol, ref), ape(vol, label), ape(ref, label)], 1)
        if "bowl_label" in batch:   # as in the volume term: the ring plane does not see a bowl's
            # surface, so its reference is a sliver of the food (0.7 mL of a 272 mL label) and one
            # such dish rules the mean: its volume is not compared (NaN), its depth is
            bowl = torch.as_tensor(batch["bowl_label"], device=pred.device).bool()
            apes = torch.where(bowl[:, None], torch.full_like(apes, float("nan")), apes)
        self._val.append(torch.cat([idx[:, None], apes, abs_rel[:, None], k_err], 1))

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
        compared = ~torch.isnan(allv[:, 1])   # bowl-label dishes: depth only (validation_step)
        ape, ape_full, ref_ape = allv[compared, 1], allv[compared, 2], allv[compared, 3]
        self.val_apes = ape.double().cpu().numpy()  # per dish, this validation (for the interval)
        abs_rel = allv[:, 4]
        nan = float("nan")
        row = {MONITOR: float(ape.median()) if len(ape) else nan,
               "val/volume_mape": float(ape.mean()) if len(ape) else nan,
               "val/volume_ape_fullres_label": float(ape_full.median()) if len(ape) else nan,
               "val/depth_abs_rel": float(abs_rel[~torch.isnan(abs_rel)].mean()) if len(allv) else nan}
        if self.predicts_K and len(allv):
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

    def last_validation(self) -> dict:
        """The last validation's synced metrics (its per-dish APEs are `val_apes`)."""
        return dict(self._val_row)

    def on_train_epoch_end(self) -> None:
        """One curve row per epoch (validation ran already): train means reduced over ranks,
        the synced validation metrics; DVCLive written by global rank 0 only."""
        row = {"epoch": int(self.current_epoch), **self._val_row}
        row.update({f"train/{k}": v for k, v in self._reduce_terms(self._train_acc).items()})
        if self._grad_acc:  # mean over the measured steps of this epoch (rank 0's batches)
            g = torch.stack(self._grad_acc)
            for i, k in enumerate(TERM_NAMES):
                if not torch.isnan(g[:, i]).all():
                    row[f"train/gradnorm_{k}"] = float(g[:, i].nanmean())
        if self._clip_acc and self.trainer.gradient_clip_val:  # share of steps the clip shortened
            row["train/clipped_frac"] = float(np.mean(np.array(self._clip_acc) > float(self.trainer.gradient_clip_val)))
        if self.trainer.optimizers:
            for g in self.trainer.optimizers[0].param_groups:
                row[f"train/lr_{g.get('name', 'group')}"] = float(g["lr"])
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
        """AdamW with the recipe's encoder / decoder LRs, stepped every iteration (warmup, then
        poly or cosine decay over the stage's iterations, as the official recipes do)."""
        r = self.recipe
        groups = []
        enc = [p for p in self.model.encoder_parameters() if p.requires_grad]
        dec = [p for p in self.model.decoder_parameters() if p.requires_grad]
        if enc:
            groups.append({"params": enc, "lr": self.lr_encoder, "name": "encoder"})
        if dec:
            groups.append({"params": dec, "lr": r.lr_decoder, "name": "decoder"})
        if not groups:
            raise ValueError("training: no trainable parameters (everything frozen?)")
        opt = torch.optim.AdamW(groups, weight_decay=r.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(r, total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def loss_term_summary(history: list[dict], weights: dict[str, float]) -> dict:
    """Each loss term (unweighted, and times its weight) in the first and the last epoch of
    this run, train and val, and each weighted term's gradient norm with its share of their
    sum (`train_gradnorm`): shows which terms actually pull on the model."""
    if not history:
        return {}
    out: dict = {}
    for tag, row in (("first_epoch", history[0]), ("last_epoch", history[-1])):
        entry: dict = {"epoch": row["epoch"]}
        for split in ("train", "val"):
            raw = {k: row[f"{split}/{k}"] for k in TERM_NAMES if f"{split}/{k}" in row}
            entry[split] = {k: round(v, 6) for k, v in raw.items()}
            entry[f"{split}_weighted"] = {k: round(weights["w_" + k] * v, 6) for k, v in raw.items()}
        gn = {k: row[f"train/gradnorm_{k}"] for k in TERM_NAMES if f"train/gradnorm_{k}" in row}
        if gn:
            tot = sum(gn.values()) or 1.0
            entry["train_gradnorm"] = {k: {"norm": round(v, 6), "share": round(v / tot, 4)} for k, v in gn.items()}
        out[tag] = entry
    return out


def truncate_live(live_dir: Path, from_step: int) -> None:
    """Remove DVCLive .tsv rows with step >= from_step (written before a kill)."""
    for tsv in (live_dir / "plots" / "metrics").rglob("*.tsv"):
        lines = tsv.read_text().splitlines()
        keep = lines[:1] + [ln for ln in lines[1:] if int(float(ln.split("\t")[0])) < from_step]
        write_text(tsv, "\n".join(keep) + "\n")
