"""The evaluation's names: the two mask settings and the suffixes of their metrics/eval files, the
stage-0 and zero-shot rows and what they are, the baselines, the oracle, the ring-rescaled diagnostic,
the mass rows, and the scene-family groups the comparisons are split by.

Light on purpose (no numpy, no torch, no other pipeline module): the compare and report stages find
metrics/eval/*.json by these names alone, so they must not load, nor (through their dvc.yaml deps)
re-run when someone edits, the data, masks, model, geometry or scoring code."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# The two settings -> suffix of their metrics/eval/<name><suffix>.json.
GIVEN, END_TO_END = "given", "end_to_end"
SETTINGS: dict[str, str] = {GIVEN: "", END_TO_END: "_e2e"}
# A fine-tuned model with a food-mask head (model_cfg.<m>.mask_head) adds a third row: end to end with the
# head's mask (mask_source `mask_head`), beside the end-to-end cut from its predicted depth (`_e2e`).
END_TO_END_HEAD = "end_to_end_mask_head"
HEAD_SUFFIX = "_e2e_head"
MODEL_SETTINGS: dict[str, str] = {**SETTINGS, END_TO_END_HEAD: HEAD_SUFFIX}   # a fine-tuned model's rows
STAGE0_SUFFIX = "_stage0"   # metrics/eval/<model>_stage0*: the model before fine-tuning
ZERO_SHOT_KIND = "pretrained, not fine-tuned"   # rows of eval.zero_shot: metrics/eval/<model>[_e2e]

# Distillation (distill.students): metrics/eval/<student>[_e2e] is the distilled student,
# <student>_direct[_e2e] the same student fine-tuned directly, <student>_speed.json the inference
# ms and peak memory of its teacher and both students, measured in one run.
DIRECT_SUFFIX = "_direct"
SPEED_SUFFIX = "_speed"


def distilled_kind(teacher: str) -> str:
    """What a distilled student's row is."""
    return f"distilled from `{teacher}` (student)"


DIRECT_KIND = "student fine-tuned directly (labels only)"

BASELINE_NAMES = ("baseline_mean", "baseline_area_height")
# Not a baseline to beat but the ceiling: GT depth through the same masks and geometry.
ORACLE_NAME = "oracle_gt_depth"

# Not a model row either: a model's predicted depth divided by its per-dish median ratio to the measured
# depth on the support ring, then the same geometry (given masks). It reads the measured depth, so it never
# enters a verdict; it tells "does not know the distance" (this row much better) from "does not see the food".
DIAG_SUFFIX = "_diag_ring_rescaled"   # metrics/eval/<model>[_stage0]_diag_ring_rescaled
DIAG_KIND = "diagnostic: rescaled to measured ring depth (reads measured depth)"

# Scene-family groups (synthetic index.csv `scene`): `table` (camera distance and focal length drawn per
# dish), and `rig`: every other family pooled (one overhead camera as on Nutrition5k, the copy of the real
# experiment). A dish without a scene (Nutrition5k) has no group: everything is one group then.
RIG, TABLE = "rig", "table"
FAMILY_GROUPS = (RIG, TABLE)

# Mass rows written by the baselines stage (model-free); the per-model rows are model_rows(model).
MASS_BASELINE_MEAN = "mass_baseline_mean"
MASS_ORACLE_GLOBAL = "mass_oracle_measured_global"


def model_rows(model: str) -> list[str]:
    """The mass rows stage mass@<model> writes."""
    return ([f"mass_{model}_{d}{s}" for d in ("global", "learned") for s in SETTINGS.values()]
            + [f"mass_{model}_oracle_measured"])


def mass_names(models: Sequence[str]) -> list[str]:
    """Every mass row of the report, models first."""
    return [r for m in models for r in model_rows(m)] + [MASS_ORACLE_GLOBAL, MASS_BASELINE_MEAN]


def _pretrained(model_cfg: Any) -> Any:
    """`pretrained` of a `model_cfg` block (typed, or the raw params mapping)."""
    return (model_cfg.get("pretrained") if isinstance(model_cfg, Mapping)
            else getattr(model_cfg, "pretrained", None))


def stage0_kind(model_cfg: Any) -> str:
    """What the stage-0 row is: the checkpoint before fine-tuning, or a random network."""
    return ZERO_SHOT_KIND if _pretrained(model_cfg) else "random init"


def zero_shot_kind(model_cfg: Any) -> str:
    """The kind of a row from `eval.zero_shot` (a model only evaluated, never trained)."""
    return ZERO_SHOT_KIND if _pretrained(model_cfg) else f"{ZERO_SHOT_KIND} (tiny random config: pretrained null)"


def family_group(scene: object) -> str:
    """`table` for the table family, `rig` for any other scene family, '' without a scene (None, NaN, '')."""
    if scene is None or (isinstance(scene, float) and scene != scene):
        return ""
    scene = str(scene).strip()
    return "" if not scene or scene.lower() == "nan" else (TABLE if scene == TABLE else RIG)


def family_labels(scenes: Sequence[object]) -> list[str] | None:
    """The group of every dish (`family_group`), or None when no dish has a scene (one group)."""
    out = [family_group(s) for s in scenes]
    return out if any(out) else None


def is_diagnostic(name: str) -> bool:
    """A ring-rescaled diagnostic row (reads the measured depth: never a model row, never in a verdict)."""
    return name.endswith(DIAG_SUFFIX)
