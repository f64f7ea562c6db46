"""Knowledge distillation: a smaller student trained from a fine-tuned teacher's depth.

Stage `distill@<student>` trains the student (`distill.students.<student>`: a registry model with a
smaller configuration over its `model_cfg` block, e.g. the same network at a smaller input) twice, from
the same start (its `model_cfg` stage 0) with the same seed and the same two-stage schedule
(`distill.stage1/stage2`, the fine-tuning's stages): once with the labels only (`<student>_direct`, the
student fine-tuned directly) and once with the teacher term added (`<student>`). So the two differ only
by what the teacher adds: its depth on every pixel and, optionally, unlabelled dishes that only it can
label (`distill.n_unlabelled`; they also add optimiser steps, which the report says).

The teacher (models/<teacher>/stage2, eval mode, no gradient) sees each training batch resized to its
own input size, with K scaled to it (UniDepth takes K as the evaluation gives it); its depth is resized
back to the student's. The teacher term is the fine-tuning's depth-map terms (`loss.w_depth`, `w_grad`,
`w_silog`: `pipeline.train.losses.loss_terms`) against the teacher's depth instead of the measured one,
weighted by `distill.w_teacher`; the labelled terms stay as they are, on the labelled dishes of the batch."""
from __future__ import annotations

import functools
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from pipeline import io
from pipeline.config import Params, as_params
from pipeline.geometry.camera import resize_K
from pipeline.models import DepthModel, config_for
from pipeline.models.inference import WEIGHTS_FILE, load_model
from pipeline.paths import CHECKPOINTS_DIR, DISTILL_WORK_DIR, DVCLIVE_DIR, TRAIN_METRICS_DIR, model_dir, repo_path
from pipeline.students import VARIANTS, student_config, student_dir, student_params
from pipeline.train.datamodule import TRAIN_COLUMNS, check_size
from pipeline.train.fit import run_stage, sha256_file
from pipeline.train.losses import LOSS_KEYS, loss_terms, weighted_sum
from pipeline.train.module import DepthLitModule

TEACHER_TERMS = ("w_depth", "w_grad", "w_silog")   # depth-map terms that also score against the teacher


def resize_K_batch(K: torch.Tensor, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> torch.Tensor:
    """`pipeline.geometry.camera.resize_K` on every K of a B x 3 x 3 batch."""
    return torch.stack([torch.from_numpy(resize_K(k.detach().cpu().double().numpy(), src_hw, dst_hw))
                        for k in K]).to(K)


class DistillLitModule(DepthLitModule):
    """The fine-tuning's LightningModule with a teacher: the labelled terms on the batch's labelled
    dishes, plus `w_teacher` x the depth-map terms against the teacher's depth on every dish (logged as
    `teacher`). The teacher is frozen and in eval mode throughout."""

    STATS = DepthLitModule.STATS + ("teacher",)

    def __init__(self, *args, teacher: DepthModel, teacher_size: tuple[int, int], w_teacher: float,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        teacher.requires_grad_(False)
        self.teacher = teacher.eval()
        self.teacher_size = (int(teacher_size[0]), int(teacher_size[1]))
        self.weights = {**self.weights, "w_teacher": float(w_teacher)}
        self.teacher_weights = {k: (self.weights[k] if k in TEACHER_TERMS else 0.0) for k in LOSS_KEYS}

    @torch.no_grad()
    def teacher_depth(self, images: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        """The teacher's depth (B x h x w, m) of a batch at the student's size: run at its own size."""
        self.teacher.eval()   # Lightning's train() reaches every submodule
        hw, size = tuple(images.shape[-2:]), self.teacher_size
        x, Kt = images, K
        if size != hw:
            x = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
            Kt = resize_K_batch(K, hw, size)
        depth = self.teacher(x, Kt.clone())["depth"].float()
        if size != hw:
            depth = F.interpolate(depth[:, None], size=hw, mode="bilinear", align_corners=False)[:, 0]
        return depth

    def batch_terms(self, out: dict, batch: dict) -> dict[str, torch.Tensor] | None:
        terms: dict[str, torch.Tensor] = {}
        lab = torch.as_tensor(batch["labelled"], device=out["depth"].device).bool()
        if lab.any():   # unlabelled dishes never reach a labelled term, whatever their files hold
            sub = {k: batch[k][lab] for k in ("depth", "mask", "K", "volume_ml", "bowl_label") if k in batch}
            out_lab = {k: v[lab] for k, v in out.items()}   # depth, K and any head's output (mask_logits)
            terms.update(loss_terms(out_lab, sub, self.weights, self.geom, self.predicts_K, self.settings) or {})
        if self.weights["w_teacher"] > 0:
            target = {"depth": self.teacher_depth(batch["image"], batch["K"]), "mask": batch["mask"],
                      "K": batch["K"], "volume_ml": batch["volume_ml"]}
            t = loss_terms(out, target, self.teacher_weights, self.geom, False, self.settings)
            if t:
                terms["teacher"] = weighted_sum(t, self.teacher_weights)
        return terms or None


def unlabelled_index(params: Params, index_path: Path, work_dir: Path) -> tuple[Path, int]:
    """(index, count): the experiment's index plus `distill.n_unlabelled` synthetic dishes of another
    seed, train split, `labelled` False (no volume; their depth files are never read by a loss).
    With none, and on Nutrition5k (whose dishes without a mass are not used yet: said, and counted 0),
    the experiment's index as it is."""
    d, data = params.distill, params.data
    if d.n_unlabelled and data.source != "synthetic":
        print(f"WARNING: distill.n_unlabelled = {d.n_unlabelled}: unlabelled dishes are rendered synthetic "
              f"ones, none on data.source = {data.source}: the distilled student trains on the labelled dishes")
    if d.n_unlabelled == 0 or data.source != "synthetic":
        return Path(index_path), 0
    from pipeline.data.ingest import ingest_synthetic
    manifest, _ = ingest_synthetic(Path(work_dir) / "raw", d.unlabelled_seed, d.n_unlabelled, data.width,
                                   data.height, data.noise, data.workers, data.families, params.volume.ring_px)
    extra = pd.DataFrame({"dish_id": "unlabelled_" + manifest["dish_id"].astype(str), "split": "train",
                          "scene": manifest["scene"], "rgb_path": manifest["rgb_path"],
                          "depth_path": manifest["depth_path"], "mask_path": manifest["gt_mask_path"],
                          **{k: manifest[k] for k in ("fx", "fy", "cx", "cy", "width", "height")},
                          "volume_ml": np.nan, "suspect": "", "labelled": False})
    index = io.read_index(Path(index_path), required=TRAIN_COLUMNS).assign(labelled=True)
    path = Path(work_dir) / "index.csv"
    io.write_csv(path, pd.concat([index, extra], ignore_index=True))
    return path, len(extra)


def barrier() -> None:
    """Every rank waits here (DDP): a rank reads the weights rank 0 has just written only after it."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def run_distill(student: str, params: Params, index_path: Path,
                allowed_roots: list[Path] | None = None) -> dict:
    """Both student runs (direct, distilled), stage 1 then stage 2 each -> models/<student>/<variant>_stage<k>,
    metrics/train/<student>_<variant>_stage<k>.json, dvclive/<student>/<variant>_stage<k>, and the summary
    metrics/train/<student>_distill.json (global rank 0); {} on other ranks."""
    params = as_params(params)
    s, d = student_config(params, student), params.distill
    sp = student_params(params, student)
    teacher_weights = model_dir(s.teacher, "stage2")
    if not (teacher_weights / WEIGHTS_FILE).is_file():
        raise ValueError(f"{teacher_weights}: the teacher's fine-tuned weights are missing "
                         f"(run train_stage2@{s.teacher})")
    teacher_size = check_size(config_for(params, s.teacher).size)
    work = repo_path(DISTILL_WORK_DIR / student)
    runs: dict[str, dict] = {}
    try:
        distill_index, n_unlabelled = unlabelled_index(params, index_path, work)
        teacher_note = {"student": student, "teacher": s.teacher, "teacher_size": list(teacher_size),
                        "teacher_weights_sha256": sha256_file(teacher_weights / WEIGHTS_FILE),
                        "w_teacher": d.w_teacher, "n_unlabelled": n_unlabelled,
                        "unlabelled_seed": d.unlabelled_seed if n_unlabelled else None}
        for variant in VARIANTS:
            direct = variant == "direct"
            extra = {"student": student, "variant": variant} if direct else {"variant": variant, **teacher_note}
            for k in (1, 2):
                lit = DepthLitModule if direct else functools.partial(
                    DistillLitModule, teacher=load_model(teacher_weights), teacher_size=teacher_size,
                    w_teacher=d.w_teacher)
                tag = f"{variant}_stage{k}"
                runs[tag] = run_stage(
                    s.model, k, sp, index_path if direct else distill_index,
                    weights_out=student_dir(student, variant, k),
                    ckpt_dir=repo_path(CHECKPOINTS_DIR / student / tag),
                    live_dir=repo_path(DVCLIVE_DIR / student / tag),
                    metrics_path=repo_path(TRAIN_METRICS_DIR / f"{student}_{tag}.json"),
                    init_weights=student_dir(student, variant, 1) if k == 2 else None,
                    allowed_roots=allowed_roots, lit_class=lit, extra=extra)
                barrier()
    finally:
        shutil.rmtree(work, ignore_errors=True)   # rendered dishes: only this stage reads them
    if not runs.get("distilled_stage2"):
        return {}
    summary = {"student": student, "model": s.model, "model_cfg": config_for(sp, s.model).__dict__,
               **teacher_note, "epochs": {"stage1": d.stage1.epochs, "stage2": d.stage2.epochs},
               "val_note": "median volume APE of the exported stage-2 weights on the validation dishes, "
                           "bootstrap 95 % interval; the test-split rows are evaluate_distill@<student>'s",
               **{v: {"val_volume_ape": runs[f"{v}_stage2"]["val_volume_ape"],
                      "val_volume_ape_ci95": runs[f"{v}_stage2"]["val_volume_ape_ci95"],
                      "n_train": runs[f"{v}_stage2"]["n_train"]} for v in VARIANTS}}
    seconds = {f"{v}_stage{k}": runs[f"{v}_stage{k}"]["train_seconds"] for v in VARIANTS for k in (1, 2)}
    return {**summary, "train_seconds": seconds}   # wall times: printed, never in the metrics file
