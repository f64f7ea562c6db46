"""DVC stage `pretrain@<model>`: synthetic pretraining of the model's small random config on
other dishes (train.pretrain) -> models/<model>/pretrain, the checkpoint stage 0 starts from.

    python -m stages.pretrain --model depth_anything_v2

Its output is small and committed to git (a `cache: false` output), so a fresh clone's
`dvc repro` reuses it; it is rebuilt only when its code or params change (2,159 s on one loaded
core). It trains with its own loss and augmentation (`train.pretrain.loss/augment`), so trying
fine-tuning ideas on `loss` or `augment` never re-runs it.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from pipeline.config import REPO_ROOT, load_params
from pipeline.io import write_json, write_text
from pipeline.train.cpu import pin_cpu_numerics


def skip_pretraining(name: str, pretrained: str | None, out: Path) -> None:
    """Stage 0 is not ours (`model_cfg.<name>.pretrained` is a hub id, another folder or null):
    train nothing nobody starts from. A committed stage 0 stays as it is, so switching back costs
    nothing; missing outputs get a note saying why they hold no training."""
    why = f"model_cfg.{name}.pretrained is {pretrained!r}, not {out.relative_to(REPO_ROOT)}: not trained"
    if not out.is_dir():
        write_text(out / "NOT_TRAINED.txt", why + "\n")
    metrics = REPO_ROOT / f"metrics/train/{name}_pretrain.json"
    if not metrics.is_file():
        write_json(metrics, {"model": name, "stage": 0, "trained": False, "why": why})
    live = REPO_ROOT / f"dvclive/{name}/pretrain"
    if not (live / "metrics.json").is_file():
        write_json(live / "metrics.json", {"trained": False})
    (live / "plots/metrics").mkdir(parents=True, exist_ok=True)
    print(f"{name} pretrain: skipped ({why})")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, help="a name from params.yaml models:")
    args = ap.parse_args(argv)
    params = load_params()
    pin_cpu_numerics(params)
    name = args.model
    if name not in params.models:
        raise ValueError(f"--model: {name!r} is not in params.yaml models {params.models}")
    from pipeline.models import config_for
    from pipeline.train.fit import run_stage
    from pipeline.train.pretrain import pretrain_index
    from pipeline.train.recipe import synthetic_stage0
    out = REPO_ROOT / f"models/{name}/pretrain"
    pretrained = config_for(params, name).pretrained
    if not synthetic_stage0(pretrained, name):  # a real checkpoint (or random init) is stage 0
        skip_pretraining(name, pretrained, out)
        return
    work = REPO_ROOT / "data/pretrain" / name
    index = pretrain_index(params, work)
    try:
        m = run_stage(name, 0, params.for_stage0(), index_path=index,
                      weights_out=out,
                      ckpt_dir=REPO_ROOT / f"checkpoints/{name}/pretrain",
                      live_dir=REPO_ROOT / f"dvclive/{name}/pretrain",
                      metrics_path=REPO_ROOT / f"metrics/train/{name}_pretrain.json")
    finally:
        shutil.rmtree(work, ignore_errors=True)  # rendered dishes: only this stage reads them
    if m:
        curve = ", ".join(f"{r['val/volume_ape']:.3f}" for r in m["curve"])
        print(f"{name} pretrain: val/volume_ape {m['val_volume_ape']:.4f} {m['val_volume_ape_ci95']} "
              f"after {m['epochs_run']} epochs in {m['train_seconds']} s; curve [{curve}]")


if __name__ == "__main__":
    main()
