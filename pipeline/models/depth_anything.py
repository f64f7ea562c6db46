"""Depth-Anything V2 (metric head) through transformers' `DepthAnythingForDepthEstimation`.

`pretrained` may be a hub id / local path (a metric checkpoint is used as is; a relative one
keeps its encoder and gets a fresh metric neck+head, as the official metric recipe does) or
null: a tiny random config of the same classes, fast enough to train on two CPU cores.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config
from transformers.models.depth_anything.modeling_depth_anything import DepthAnythingDepthEstimationHead

from pipeline.config import PosInt
from pipeline.models.base import DepthModel, ModelConfig, checkpoint_source, strict_loading
from pipeline.models.registry import register

TINY_DEFAULTS = {"hidden_size": 48, "num_layers": 4, "num_heads": 3,
                 "neck_hidden_sizes": [16, 32, 48, 64], "fusion_hidden_size": 32,
                 "head_hidden_size": 16}


@dataclass
class DepthAnythingV2Config(ModelConfig):
    """`model_cfg.depth_anything_v2`: a metric head outputs sigmoid * max_depth."""
    max_depth: PosInt = 10              # m; a metric checkpoint keeps its own
    mask_head: bool = False             # a food-mask head on the last DPT fusion stage (pipeline.models.mask_head)
    tiny: dict[str, Any] = field(default_factory=lambda: dict(TINY_DEFAULTS))
    REFUSED_KEYS: ClassVar[dict[str, str]] = {
        "camera": "Depth-Anything takes no camera input (depth from the image alone)"}


def tiny_config(tiny: dict, max_depth: int) -> DepthAnythingConfig:
    """A small DINOv2 + DPT config (same classes as the real model)."""
    t = {**TINY_DEFAULTS, **(tiny or {})}
    n = int(t["num_layers"])
    if n < 4:
        raise ValueError(f"model_cfg.depth_anything_v2.tiny.num_layers: need >= 4, got {n}")
    step = n // 4
    backbone = Dinov2Config(image_size=518, patch_size=14, hidden_size=int(t["hidden_size"]),
                            num_hidden_layers=n, num_attention_heads=int(t["num_heads"]),
                            intermediate_size=2 * int(t["hidden_size"]),
                            out_indices=[step * (i + 1) for i in range(3)] + [n],
                            reshape_hidden_states=False)
    return DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=int(t["hidden_size"]),
                               neck_hidden_sizes=list(t["neck_hidden_sizes"]),
                               fusion_hidden_size=int(t["fusion_hidden_size"]),
                               head_hidden_size=int(t["head_hidden_size"]),
                               depth_estimation_type="metric", max_depth=int(max_depth))


class Float32Head(DepthAnythingDepthEstimationHead):
    """transformers' head run in float32 under any autocast. In bf16 its sigmoid * max_depth
    moves in 2**-8 relative steps (1.95 mm at 0.36 m with max_depth 2), coarser than the food
    heights the volume depends on. Same parameters and state-dict keys as the original."""

    def forward(self, hidden_states: list[Tensor], patch_height: int, patch_width: int) -> Tensor:
        device = hidden_states[0].device.type
        with torch.autocast(device_type=device, enabled=False):
            return super().forward([h.float() for h in hidden_states], patch_height, patch_width)


def float32_head(net: DepthAnythingForDepthEstimation) -> None:
    """Swap net.head for a Float32Head with the same weights (no-op if already swapped)."""
    old = net.head
    if isinstance(old, Float32Head):
        return
    p = old.conv1.weight
    new = Float32Head(net.config).to(device=p.device, dtype=p.dtype)
    new.load_state_dict(old.state_dict())
    new.train(old.training)
    net.head = new


@register("depth_anything_v2", DepthAnythingV2Config)
class DepthAnythingV2(DepthModel):
    lora_targets = ("q_proj", "k_proj", "v_proj")   # transformers' Dinov2 attention projections

    def __init__(self, net: DepthAnythingForDepthEstimation) -> None:
        super().__init__()
        if net.config.depth_estimation_type != "metric":
            raise ValueError("depth_anything_v2: the network must have a metric head")
        float32_head(net)
        self.net = net

    @classmethod
    def from_cfg(cls, cfg: DepthAnythingV2Config, seed: int = 0) -> DepthAnythingV2:
        max_depth = cfg.max_depth
        if max_depth <= 0:
            raise ValueError(f"model_cfg.depth_anything_v2.max_depth: positive int expected, got {max_depth!r}")
        src = checkpoint_source(cfg.pretrained) if cfg.pretrained else None
        if src is None:
            torch.manual_seed(seed)
            model = cls(DepthAnythingForDepthEstimation(tiny_config(cfg.tiny, max_depth)))
            model.reset_decoder(cfg.init_depth, seed)
        else:
            conf = DepthAnythingConfig.from_pretrained(str(src))
            metric = conf.depth_estimation_type == "metric"   # a metric head keeps the scale it was trained with
            if not metric:
                conf.depth_estimation_type, conf.max_depth = "metric", max_depth
            net, info = DepthAnythingForDepthEstimation.from_pretrained(str(src), config=conf, output_loading_info=True)
            strict_loading(info, str(cfg.pretrained))
            model = cls(net)
            if not metric:
                model.reset_decoder(cfg.init_depth, seed)
        if cfg.mask_head:
            model.attach_mask_head(model.net.config.fusion_hidden_size, seed, checkpoint=cfg.pretrained)
        return model

    @classmethod
    def from_arch(cls, arch: dict) -> DepthAnythingV2:
        from pipeline.models.mask_head import mask_head_from_arch
        model = cls(DepthAnythingForDepthEstimation(DepthAnythingConfig.from_dict(arch["hf_config"])))
        model.mask_head = mask_head_from_arch(arch)
        return model

    def arch_config(self) -> dict[str, Any]:
        return {"hf_config": self.net.config.to_dict(), **self.mask_head_arch()}

    def reset_decoder(self, init_depth: float, seed: int = 0) -> None:
        """Fresh neck + head: transformers' init zeroes biases and saturates the sigmoid, so a
        random model would output a constant max_depth; PyTorch's default init plus a head
        bias at `init_depth` gives a varying output near plausible depths."""
        torch.manual_seed(seed + 1)
        for mod in list(self.net.neck.modules()) + list(self.net.head.modules()):
            if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
                mod.reset_parameters()
        max_depth = float(self.net.config.max_depth)
        p = min(max(init_depth / max_depth, 1e-3), 1 - 1e-3)
        with torch.no_grad():
            self.net.head.conv3.bias.fill_(math.log(p / (1 - p)))

    def forward(self, images: Tensor, K: Tensor | None) -> dict[str, Tensor]:
        self.check_input(images, K)
        if K is None:
            raise ValueError("K: depth_anything_v2 passes K through; got None")
        pixels = self.normalise(images)
        if self.mask_head is None:
            return {"depth": self.net(pixel_values=pixels).predicted_depth,
                    "K": K.float()}  # float32 whatever the autocast (feeds geometry)
        # the network's own forward, step by step, to hand the last fusion stage to the mask head too
        net = self.net
        ph, pw = (s // net.config.patch_size for s in images.shape[-2:])
        fused = net.neck(net.backbone.forward_with_filtered_kwargs(pixels).feature_maps, ph, pw)
        return {"depth": net.head(fused, ph, pw), "K": K.float(),
                "mask_logits": self.mask_head(fused[net.head.head_in_index], images.shape[-2:])}

    def image_features(self, images: Tensor) -> Tensor:
        self.check_input(images, None)
        maps = self.net.backbone.forward_with_filtered_kwargs(self.normalise(images)).feature_maps
        ph, pw = images.shape[-2] // self.input_multiple, images.shape[-1] // self.input_multiple
        out = []
        for tokens in maps:   # the four layers the depth decoder reads: early ones keep colour and texture
            if tokens.ndim == 3:   # B x (1 + ph*pw) x C with the CLS token first
                tokens = tokens[:, -ph * pw:].transpose(1, 2).reshape(tokens.shape[0], -1, ph, pw)
            out.append(tokens)
        return torch.cat(out, dim=1)

    def encoder_parameters(self) -> list:
        return list(self.net.backbone.parameters())

    def decoder_parameters(self) -> list:
        return list(self.net.neck.parameters()) + list(self.net.head.parameters()) + self.mask_head_parameters()

    def encoder_module(self) -> nn.Module:
        return self.net.backbone

    def set_encoder_frozen(self, frozen: bool) -> None:
        # requires_grad survives .train(); with the input not requiring grad, autograd then
        # skips the whole backbone.
        for p in self.net.backbone.parameters():
            p.requires_grad = not frozen
