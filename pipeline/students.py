"""The students of stage `distill@<student>` (params `distill.students`): what each one is, the params it
trains with and where its weights lie. No torch here: evaluation and reports read these too."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from pipeline.config import Params, StudentConfig
from pipeline.models.registry import config_for
from pipeline.paths import model_dir

VARIANTS = ("direct", "distilled")      # labels only | labels + teacher: the pair the report compares


def student_config(params: Params, student: str) -> StudentConfig:
    """`distill.students.<student>`, or ValueError naming the ones there are."""
    students = params.distill.students
    if student not in students:
        raise ValueError(f"{params.source}: distill.students: no student {student!r} (have {list(students)})")
    return students[student]


def student_params(params: Params, student: str) -> Params:
    """The params the student trains with: `model_cfg.<model>` with the student's keys over it (`tiny`
    merged key by key) and the distillation's two-stage schedule in place of the fine-tuning's."""
    s = student_config(params, student)
    base = dict(params.model_cfg.get(s.model) or {})
    cfg = {**base, **s.model_cfg}
    if isinstance(base.get("tiny"), dict) and isinstance(s.model_cfg.get("tiny"), dict):
        cfg["tiny"] = {**base["tiny"], **s.model_cfg["tiny"]}
    if "tiny" in s.model_cfg and cfg.get("pretrained"):
        raise ValueError(f"{params.source}: distill.students.{student}.model_cfg.tiny: a checkpoint "
                         f"({cfg['pretrained']}) keeps its own architecture; set pretrained: null there "
                         "for a smaller random network")
    d, tp = params.distill, params.train
    train = dataclasses.replace(tp, stage1=dataclasses.replace(tp.stage1, epochs=d.stage1.epochs),
                                stage2=dataclasses.replace(tp.stage2, epochs=d.stage2.epochs))
    out = dataclasses.replace(params, model_cfg={**params.model_cfg, s.model: cfg}, train=train)
    out.source = params.source
    config_for(out, s.model)   # the merged block is checked by its model's config class now
    return out


def student_dir(student: str, variant: str, stage: int) -> Path:
    """models/<student>/<variant>_stage<k>: a student's weights (save_model format)."""
    return model_dir(student, f"{variant}_stage{stage}")
