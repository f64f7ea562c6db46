"""DVC stage: fine-tune one model, one stage (1: frozen encoder, 2: all layers from stage 1).

    python -m stages.train --model depth_anything_v2 --stage 1
"""
from __future__ import annotations

import argparse
import os

from pipeline.config import REPO_ROOT, Params, load_params  # (no torch yet)

# Same weights on any x86-64 CPU with AVX2 (trainer.portable_cpu): the kernels' instruction set
# and MKL's code path are fixed before torch loads; run_stage turns oneDNN off and uses
# trainer.threads. Without this, a run on another CPU type drifts in the last bits and Adam
# turns that into a different curve within the first epoch.
PORTABLE_CPU_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}


def pin_cpu_numerics(params: Params) -> None:
    if params.trainer.portable_cpu:
        for k, v in PORTABLE_CPU_ENV.items():
            os.environ.setdefault(k, v)


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
        print(f"{name} stage {k}: best val/volume_ape {m['best_val_volume_ape']:.4f} "
              f"after {m['epochs_run']} epochs in {m['train_seconds']} s; curve [{curve}]")


if __name__ == "__main__":
    main()
