"""DVC stage `pretrain@<model>`: synthetic pretraining of the model's small random config on
other dishes (train.pretrain) -> models/<model>/pretrain, the checkpoint stage 0 starts from.

    python -m stages.pretrain --model depth_anything_v2

Its output is small and committed to git (a `cache: false` output), so a fresh clone's
`dvc repro` reuses it; it is rebuilt only when its code or params change (2,159 s on one loaded
core). It trains with its own loss and augmentation (`train.pretrain.loss/augment`), so trying
fine-tuning ideas on `loss` or `augment` never re-runs it.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from pipeline.cli import model_parser, parse_model_args, run_stage  # (no torch yet)
from pipeline.config import REPO_ROOT
from pipeline.io import write_json, write_text
from pipeline.paths import (
    CHECKPOINTS_DIR,
    DVCLIVE_DIR,
    PRETRAIN_WORK_DIR,
    TRAIN_METRICS_DIR,
    model_dir,
    repo_path,
)
from pipeline.train.cpu import pin_cpu_numerics


def skip_pretraining(name: str, pretrained: str | None, out: Path, metrics: Path, live: Path) -> None:
    """Stage 0 is not ours (`model_cfg.<name>.pretrained` is a hub id, another folder or null):
    train nothing nobody starts from. A committed stage 0 stays as it is, so switching back costs
    nothing; missing outputs get a note saying why they hold no training."""
    why = f"model_cfg.{name}.pretrained is {pretrained!r}, not {out.relative_to(REPO_ROOT)}: not trained"
    if not out.is_dir():
        write_text(out / "NOT_TRAINED.txt", why + "\n")
    if not metrics.is_file():
        write_json(metrics, {"model": name, "stage": 0, "trained": False, "why": why})
    if not (live / "metrics.json").is_file():
        write_json(live / "metrics.json", {"trained": False})
    (live / "plots/metrics").mkdir(parents=True, exist_ok=True)
    print(f"{name} pretrain: skipped ({why})")


def main(argv: list[str] | None = None) -> None:
    args, params = parse_model_args(model_parser(__doc__, option=True), argv)
    pin_cpu_numerics(params)
    name = args.model
    from pipeline.models import config_for
    from pipeline.train.fit import run_stage as fit_stage
    from pipeline.train.pretrain import pretrain_index
    from pipeline.train.recipe import synthetic_stage0
    out, live = model_dir(name, "pretrain"), repo_path(DVCLIVE_DIR / name / "pretrain")
    metrics = repo_path(TRAIN_METRICS_DIR / f"{name}_pretrain.json")
    pretrained = config_for(params, name).pretrained
    if not synthetic_stage0(pretrained, name):  # a real checkpoint (or random init) is stage 0
        skip_pretraining(name, pretrained, out, metrics, live)
        return
    work = repo_path(PRETRAIN_WORK_DIR / name)
    index = pretrain_index(params, work)
    try:
        m = fit_stage(name, 0, params.for_stage0(), index_path=index, weights_out=out,
                      ckpt_dir=repo_path(CHECKPOINTS_DIR / name / "pretrain"), live_dir=live,
                      metrics_path=metrics)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # rendered dishes: only this stage reads them
    if m:
        curve = ", ".join(f"{r['val/volume_ape']:.3f}" for r in m["curve"])
        print(f"{name} pretrain: val/volume_ape {m['val_volume_ape']:.4f} {m['val_volume_ape_ci95']} "
              f"after {m['epochs_run']} epochs in {m['train_seconds']} s; curve [{curve}]")


if __name__ == "__main__":
    run_stage(main)
