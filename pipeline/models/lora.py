"""LoRA fine-tuning of a depth model's encoder with `peft`, and the stage-2 encoder modes.

`set_encoder_mode(model, mode, lora)` is the one hook a training stage calls to decide what the
encoder does: `frozen` (decoder only), `full` (every encoder weight trains) or `lora`: peft
injects low-rank adapters into the encoder's linear layers in place (the module tree and the
decoder stay as they are, so the Lightning checkpoint holds base weights plus adapters and a
resume rebuilds the same tree), the encoder's own weights are frozen and only the adapters train.
Why: a ViT-L encoder's full fine-tune needs its weights, gradients and two Adam moments in
memory; the adapters are ~1 % of that.

An exported model never needs peft: `save_model` writes `merged_state_dict`, every adapter folded
into its base weight (W + B·A·alpha/rank) under the architecture's own state-dict keys, so
`load_model` rebuilds the plain architecture without importing peft.
"""
from __future__ import annotations

import sys
from typing import Literal

import torch
from torch import Tensor, nn

from pipeline.config import LoraConfig

EncoderMode = Literal["full", "lora", "frozen"]
ENCODER_MODES: tuple[str, ...] = ("full", "lora", "frozen")


def has_lora(model: nn.Module) -> bool:
    """True when `model` holds peft adapter layers. Without peft imported it cannot hold any, and
    checking then imports nothing (inference stays peft-free)."""
    if "peft" not in sys.modules:
        return False
    from peft.tuners.tuners_utils import BaseTunerLayer
    return any(isinstance(m, BaseTunerLayer) for m in model.modules())


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The adapters' parameters (peft names them lora_A / lora_B / lora_embedding_*)."""
    return [p for n, p in model.named_parameters() if ".lora_" in n]


def only_adapters_trainable(module: nn.Module) -> None:
    """In `module`, adapters train and every other parameter is frozen. Re-applied after each
    `.train()`: some backbones (UniDepth's DINOv2) re-set `requires_grad` there."""
    for n, p in module.named_parameters():
        p.requires_grad = ".lora_" in n


def add_lora(model: nn.Module, cfg: LoraConfig) -> int:
    """Inject LoRA adapters into `model.encoder_module()` in place; returns the number of adapted
    layers. Target names are matched against the ends of module names (peft's rule); None takes
    the model's `lora_targets` (its attention projections)."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import inject_adapter_in_model

    if has_lora(model):
        raise ValueError("LoRA: the model already holds adapters")
    if cfg.rank < 1 or cfg.alpha <= 0 or not 0 <= cfg.dropout < 1:
        raise ValueError(f"train.stage2.lora: need rank >= 1, alpha > 0, 0 <= dropout < 1, got "
                         f"rank={cfg.rank}, alpha={cfg.alpha}, dropout={cfg.dropout}")
    targets = list(cfg.target_modules) if cfg.target_modules else list(model.lora_targets)
    if not targets:
        raise ValueError(f"train.stage2.lora.target_modules: {type(model).__name__} names no default "
                         "targets; list the encoder's linear layers to adapt")
    encoder = model.encoder_module()
    peft_cfg = PeftLoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                              target_modules=targets, bias="none")
    try:
        inject_adapter_in_model(peft_cfg, encoder)
    except ValueError as e:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in encoder.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"train.stage2.lora.target_modules: {targets} match no layer of "
                         f"{type(model).__name__}'s encoder (its linear layers: {linear}): {e}") from None
    from peft.tuners.tuners_utils import BaseTunerLayer
    return sum(isinstance(m, BaseTunerLayer) for m in encoder.modules())


def merged_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """`model.state_dict()` with every adapter folded into its base weight (peft's delta,
    B·A·alpha/rank) under the plain layer's key (`q_proj.base_layer.weight` -> `q_proj.weight`),
    adapters dropped: the state dict of the architecture without LoRA. The model keeps its
    adapters (no copy: UniDepth's scripted functions cannot be deep-copied)."""
    state = model.state_dict()
    if not has_lora(model):
        return state
    from peft.tuners.tuners_utils import BaseTunerLayer
    deltas: dict[str, Tensor] = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, BaseTunerLayer) and not module.merged:
                for adapter in module.active_adapters:
                    key = f"{name}.base_layer.weight"
                    deltas[key] = deltas.get(key, 0) + module.get_delta_weight(adapter)
    out = {}
    for key, value in state.items():
        if ".lora_" in key:
            continue
        if key in deltas:
            value = (value + deltas[key].to(value.dtype)).detach()
        out[key.replace(".base_layer.", ".")] = value
    return out


def set_encoder_mode(model: nn.Module, mode: str, lora: LoraConfig | None = None) -> None:
    """What the encoder does in a training stage (stage 1: `frozen`; stage 2: train.stage2.encoder)."""
    if mode not in ENCODER_MODES:
        raise ValueError(f"train.stage2.encoder: expected one of {ENCODER_MODES}, got {mode!r}")
    if mode != "lora":
        model.set_encoder_frozen(mode == "frozen")
        return
    # gradients must flow through the encoder's blocks (to the adapters) while its weights stay
    model.set_encoder_frozen(False)
    if not has_lora(model):
        add_lora(model, lora or LoraConfig())
    model.lora_active = True          # DepthModel.train() re-applies only_adapters_trainable
    only_adapters_trainable(model.encoder_module())
