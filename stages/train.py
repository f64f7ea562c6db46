"""DVC stage: fine-tune one model, one stage (1: frozen encoder from the stage-0 model, 2: all layers
from stage 1).

    python -m stages.train --model depth_anything_v2 --stage 1
"""
from __future__ import annotations

import argparse

from pipeline.config import REPO_ROOT, load_params  # (no torch yet)
from pipeline.train.cpu import pin_cpu_numerics


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, help="a name from params.yaml models:")
    ap.add_argument("--stage", required=True, type=int, choices=(1, 2))
    ap.add_argument("--params", default=str(REPO_ROOT / "params.yaml"))
    args = ap.parse_args(argv)
    params = load_params(args.params)
    pin_cpu_numerics(params)
    if args.model not in params.models:
        raise ValueError(f"--model: {args.model!r} is not in params.yaml models {params.models}")
    from pipeline.train.fit import run_stage
    name, k = args.model, args.stage
    m = run_stage(
        name, k, params,
        index_path=REPO_ROOT / "data/dishes/index.csv",
        weights_out=REPO_ROOT / f"models/{name}/stage{k}",
        ckpt_dir=REPO_ROOT / f"checkpoints/{name}/stage{k}",
        live_dir=REPO_ROOT / f"dvclive/{name}/stage{k}",
        metrics_path=REPO_ROOT / f"metrics/train/{name}_stage{k}.json",
        init_weights=REPO_ROOT / f"models/{name}/stage1" if k == 2 else None,
        allowed_roots=params.data_roots(),
    )
    if m:
        curve = ", ".join(f"{r['val/volume_ape']:.3f}" for r in m["curve"])
        print(f"{name} stage {k}: exported ({m['exported']['weights']}) val/volume_ape "
              f"{m['val_volume_ape']:.4f} {m['val_volume_ape_ci95']} after {m['epochs_run']} epochs "
              f"in {m['train_seconds']} s; curve [{curve}]")


if __name__ == "__main__":
    main()
