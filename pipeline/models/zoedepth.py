"""ZoeDepth through transformers' `ZoeDepthForDepthEstimation`: a zero-shot comparison row
(`eval.zero_shot: [zoedepth]`). It takes no camera: depth from the image alone, volumes with the
true K. transformers' image processor prepares the input (reflect padding, aspect-keeping resize
to multiples of 32, normalisation) and removes the padding from the output, as its authors run it.

Real runs: `pretrained: Intel/zoedepth-nyu-kitti`. `pretrained: null` builds a small random config
of the same classes (a BEiT backbone, one bin head) with a freshly initialised decoder, so its
output varies over the image (transformers' init makes the random head output a constant).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from transformers import ZoeDepthConfig, ZoeDepthForDepthEstimation, ZoeDepthImageProcessor

from pipeline.config import PixelSize
from pipeline.models.base import DepthModel, ModelConfig, processor_pixels, stacked_depth
from pipeline.models.registry import register

HUB_ID = "Intel/zoedepth-nyu-kitti"
TINY_DEFAULTS = {"hidden_size": 32, "num_layers": 4, "num_heads": 2, "vit_patch": 16, "image_size": 64,
                 "fusion_hidden_size": 16, "n_bins": 16, "max_depth": 10.0}


@dataclass
class ZoeDepthModelConfig(ModelConfig):
    """`model_cfg.zoedepth` (the checkpoint keeps its own architecture and processor)."""
    size: PixelSize = (480, 640)   # the image as stored; the processor resizes it
    tiny: dict[str, Any] = field(default_factory=lambda: dict(TINY_DEFAULTS))


def tiny_config(tiny: dict) -> ZoeDepthConfig:
    t = {**TINY_DEFAULTS, **(tiny or {})}
    hid, f = int(t["hidden_size"]), int(t["fusion_hidden_size"])
    beit = {"model_type": "beit", "image_size": int(t["image_size"]), "patch_size": int(t["vit_patch"]),
            "hidden_size": hid, "num_hidden_layers": int(t["num_layers"]), "num_attention_heads": int(t["num_heads"]),
            "intermediate_size": 2 * hid, "use_relative_position_bias": True, "reshape_hidden_states": False,
            "out_features": [f"stage{i}" for i in range(1, int(t["num_layers"]) + 1)][-4:]}
    return ZoeDepthConfig(backbone_config=beit, neck_hidden_sizes=[f // 2, f, hid, hid], fusion_hidden_size=f,
                          num_relative_features=f // 2, bottleneck_features=f, bin_embedding_dim=f,
                          num_attractors=[4, 4, 2, 1], bin_configurations=[
                              {"n_bins": int(t["n_bins"]), "min_depth": 1e-3, "max_depth": float(t["max_depth"])}])


@register("zoedepth", ZoeDepthModelConfig)
class ZoeDepth(DepthModel):
    input_multiple = 1   # any size: the processor pads and resizes
    lora_targets = ("query", "key", "value")   # transformers' BEiT attention projections

    def __init__(self, net: ZoeDepthForDepthEstimation, processor: ZoeDepthImageProcessor) -> None:
        super().__init__()
        self.net, self.processor = net, processor

    @classmethod
    def from_cfg(cls, cfg: ZoeDepthModelConfig, seed: int = 0) -> ZoeDepth:
        if cfg.pretrained:
            src = str(cfg.pretrained)
            return cls(ZoeDepthForDepthEstimation.from_pretrained(src), ZoeDepthImageProcessor.from_pretrained(src))
        torch.manual_seed(seed)
        t = {**TINY_DEFAULTS, **cfg.tiny}
        side = int(t["image_size"])
        model = cls(ZoeDepthForDepthEstimation(tiny_config(cfg.tiny)),
                    ZoeDepthImageProcessor(size={"height": side, "width": side}))
        torch.manual_seed(seed + 1)
        for part in model.decoder_modules():
            for mod in part.modules():
                if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                    mod.reset_parameters()
        return model

    @classmethod
    def from_arch(cls, arch: dict) -> ZoeDepth:
        return cls(ZoeDepthForDepthEstimation(ZoeDepthConfig.from_dict(arch["hf_config"])),
                   ZoeDepthImageProcessor(**arch["processor"]))

    def arch_config(self) -> dict[str, Any]:
        proc = {k: v for k, v in self.processor.to_dict().items()
                if k in ("size", "image_mean", "image_std", "keep_aspect_ratio", "ensure_multiple_of", "do_pad")}
        return {"hf_config": self.net.config.to_dict(), "processor": proc}

    def forward(self, images: Tensor, K: Tensor | None) -> dict[str, Tensor]:
        self.check_input(images, K)
        if K is None:
            raise ValueError("K: zoedepth passes K through; got None")
        h, w = images.shape[-2:]
        out = self.net(pixel_values=processor_pixels(self.processor, images))
        res = self.processor.post_process_depth_estimation(out, source_sizes=[(h, w)] * len(images),
                                                           target_sizes=[(h, w)] * len(images))
        depth = stacked_depth(res, h, w)
        return {"depth": depth, "K": K.float()}

    def decoder_modules(self) -> list[nn.Module]:
        return [self.net.neck, self.net.relative_head, self.net.metric_head]

    def encoder_module(self) -> nn.Module:
        return self.net.backbone

    def encoder_parameters(self) -> list:
        return list(self.net.backbone.parameters())

    def decoder_parameters(self) -> list:
        return [p for m in self.decoder_modules() for p in m.parameters()]

    def set_encoder_frozen(self, frozen: bool) -> None:
        for p in self.net.backbone.parameters():
            p.requires_grad = not frozen
