"""The repository's file layout, named once: what each stage reads and writes (dvc.yaml spells the
same paths; tests/test_paths.py checks they agree). Relative to the repository root; `repo_path`
joins them to `io.REPO_ROOT` when called, so a test that points the root at a project folder
moves every path with it."""
from __future__ import annotations

from pathlib import Path

from pipeline import io

RAW_DIR = Path("data/raw")                      # ingest: manifest.csv, rig_plane.json
SPLIT_CSV = Path("data/interim/split.csv")      # split
MASKS_DIR = Path("data/masks")                  # masks: masks.csv, given/
MASKS_CSV = MASKS_DIR / "masks.csv"
INDEX_CSV = Path("data/dishes/index.csv")       # labels: one row per dish
SKIPPED_CSV = Path("data/dishes/skipped.csv")
MODELS_DIR = Path("models")                     # models/<model>/{pretrain,stage1,stage2,mass_head}
PRETRAIN_WORK_DIR = Path("data/pretrain")       # pretrain@<model>: its rendered dishes, removed after
DISTILL_WORK_DIR = Path("data/distill")         # distill@<student>: its unlabelled dishes, removed after
CHECKPOINTS_DIR = Path("checkpoints")           # Lightning's resume checkpoints (not DVC outputs)
DVCLIVE_DIR = Path("dvclive")                   # dvclive/<model>/<stage>: per-epoch curves
PREFLIGHT_JSON = Path("metrics/preflight.json")
INGEST_JSON = Path("metrics/ingest.json")
SPLIT_JSON = Path("metrics/split.json")
MASKS_JSON = Path("metrics/masks.json")
LABELS_JSON = Path("metrics/labels.json")
TRAIN_METRICS_DIR = Path("metrics/train")
EVAL_METRICS_DIR = Path("metrics/eval")         # metrics/eval/<row>.{json,csv}
EVAL_PLOTS_DIR = Path("plots/eval")             # plots/eval/<row>/
EVAL_TIMING_DIR = Path("logs/eval")            # logs/eval/<row>_infer_s.csv: inference seconds (a log, untracked)
COMPARE_JSON = Path("metrics/compare.json")
REPORT_MD = Path("metrics/report.md")
REPORT_PLOTS_DIR = Path("plots/report")
MASS_VS_VOLUME_PNG = Path("plots/labels/mass_vs_volume.png")


def repo_path(rel: str | Path) -> Path:
    """`rel` under the repository root (read at call time)."""
    return io.REPO_ROOT / rel


def model_dir(name: str, stage: str) -> Path:
    """models/<name>/<stage> under the repository root (stage: pretrain, stage1, stage2, mass_head)."""
    return repo_path(MODELS_DIR / name / stage)
