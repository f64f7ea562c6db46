"""DVC stage: fine-tune one model, one stage (1: frozen encoder from the stage-0 model, 2: all layers
from stage 1).

    python -m stages.train --model depth_anything_v2 --stage 1
"""
from __future__ import annotations

from pipeline.cli import model_parser, parse_model_args, run_stage  # (no torch yet)
from pipeline.config import PARAMS_FILE
from pipeline.paths import CHECKPOINTS_DIR, DVCLIVE_DIR, INDEX_CSV, TRAIN_METRICS_DIR, model_dir, repo_path
from pipeline.train.cpu import pin_cpu_numerics


def main(argv: list[str] | None = None) -> None:
    ap = model_parser(__doc__, option=True)
    ap.add_argument("--stage", required=True, type=int, choices=(1, 2))
    ap.add_argument("--params", default=str(PARAMS_FILE))
    args, params = parse_model_args(ap, argv)
    pin_cpu_numerics(params)
    from pipeline.train.fit import run_stage as fit_stage
    name, k = args.model, args.stage
    m = fit_stage(
        name, k, params,
        index_path=repo_path(INDEX_CSV),
        weights_out=model_dir(name, f"stage{k}"),
        ckpt_dir=repo_path(CHECKPOINTS_DIR / name / f"stage{k}"),
        live_dir=repo_path(DVCLIVE_DIR / name / f"stage{k}"),
        metrics_path=repo_path(TRAIN_METRICS_DIR / f"{name}_stage{k}.json"),
        init_weights=model_dir(name, "stage1") if k == 2 else None,
        allowed_roots=params.data_roots(),
    )
    if m:
        curve = ", ".join(f"{r['val/volume_ape']:.3f}" for r in m["curve"])
        print(f"{name} stage {k}: exported ({m['exported']['weights']}) val/volume_ape "
              f"{m['val_volume_ape']:.4f} {m['val_volume_ape_ci95']} after {m['epochs_run']} epochs "
              f"in {m['train_seconds']} s; curve [{curve}]")


if __name__ == "__main__":
    run_stage(main)
