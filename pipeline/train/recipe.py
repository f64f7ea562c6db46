"""Which optimiser recipe a training run uses, and its per-iteration learning-rate schedule.

A pretrained checkpoint and a random network need different rates: a metric checkpoint's
decoder is already trained, and 2e-3 (a random decoder's rate) undoes it in a few steps. The
starting point of every stage is the stage-0 model (`model_cfg.<model>.pretrained`: a
checkpoint, the synthetic pretraining's output, or null = random), so stages 1 and 2 share its
recipe; the synthetic pretraining itself starts from random init. A real checkpoint keeps its
authors' recipe (`train.recipe_pretrained.<model>`). The small copy's synthetic stage 0 has its own
(`train.recipe_stage0`): a tiny network that has never seen the rig's scale needs larger steps to
close that gap within the default's few hundred iterations (measured in docs/results/training.md)."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from pipeline.config import Params, RecipeConfig
from pipeline.paths import model_dir, repo_path

Source = Literal["random", "stage0", "pretrained"]


def synthetic_stage0(pretrained: str | None, name: str) -> bool:
    """Is `pretrained` the synthetic pretraining's output for `name` (models/<name>/pretrain)?"""
    return bool(pretrained) and repo_path(str(pretrained)).resolve() == model_dir(name, "pretrain").resolve()


def recipe_for(params: Params, name: str, source: Source | None = None) -> tuple[Source, RecipeConfig]:
    """(source, recipe) for model `name`: `train.recipe_stage0` from the synthetic stage 0,
    `train.recipe_pretrained.<name>` from another checkpoint, `train.recipe_random` from random
    init. `source` None: from the model's `pretrained` setting."""
    from pipeline.models.registry import config_for
    if source is None:
        pretrained = config_for(params, name).pretrained
        source = "random" if not pretrained else "stage0" if synthetic_stage0(pretrained, name) else "pretrained"
    if source == "random":
        return source, params.train.recipe_random
    if source == "stage0":
        return source, params.train.recipe_stage0
    recipes = params.train.recipe_pretrained
    if name not in recipes:
        raise ValueError(f"{params.source}: train.recipe_pretrained.{name}: missing (model_cfg.{name}."
                         f"pretrained is set, so {name} needs a recipe for a pretrained start)")
    return source, recipes[name]


def lr_factor(step: int, total: int, r: RecipeConfig) -> float:
    """Multiplier of the peak LR at optimiser step `step` of `total`: linear warmup over
    `warmup_frac` of the steps, then `poly` ((1 - t)^power, Depth-Anything-V2 metric),
    `cosine` (down to `final_lr_frac`, UniDepth) or `constant`."""
    total = max(1, int(total))
    warm = int(round(r.warmup_frac * total))
    if step < warm:
        return (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, total - warm))
    if r.schedule == "poly":
        return (1.0 - t) ** r.poly_power
    if r.schedule == "cosine":
        return r.final_lr_frac + (1.0 - r.final_lr_frac) * 0.5 * (1.0 + math.cos(math.pi * t))
    return 1.0


def lr_lambda(r: RecipeConfig, total: int) -> Callable[[int], float]:
    """`LambdaLR` function for one stage of `total` optimiser steps."""
    return lambda step: lr_factor(step, total, r)
