"""DVC stage `distill@<student>`: a student of `distill.students` trained twice from the same start and
schedule, with the labels only and with its fine-tuned teacher's depth added (pipeline.train.distill).

    python -m stages.distill da2_small
"""
from __future__ import annotations

from pipeline.cli import run_stage, student_args  # (no torch yet)
from pipeline.io import write_json
from pipeline.paths import INDEX_CSV, TRAIN_METRICS_DIR, repo_path
from pipeline.train.cpu import pin_cpu_numerics


def main(argv: list[str] | None = None) -> None:
    args, params = student_args(__doc__, argv)
    pin_cpu_numerics(params)
    from pipeline.train.distill import run_distill
    m = run_distill(args.student, params, repo_path(INDEX_CSV), allowed_roots=params.data_roots())
    if m:
        seconds = m.pop("train_seconds")
        write_json(repo_path(TRAIN_METRICS_DIR / f"{args.student}_distill.json"), m)
        for v in ("direct", "distilled"):
            print(f"{args.student} {v}: val/volume_ape {m[v]['val_volume_ape']:.4f} {m[v]['val_volume_ape_ci95']} "
                  f"({m[v]['n_train']} train dishes)")
        print(f"{args.student}: train seconds {seconds}")


if __name__ == "__main__":
    run_stage(main)
