"""Apple's Depth Pro through transformers' `DepthProForDepthEstimation`: a zero-shot comparison
row (`eval.zero_shot: [depth_pro]`), the general-purpose metric model a user may come from.

Depth Pro predicts an inverse depth in a canonical camera plus its own horizontal field of view;
metric depth = focal / (width * inverse depth). transformers' own image processor prepares the
input (normalise, resize to the network's square input) and turns the output into depth, so the
row scores the model as its authors ship it. `camera` decides which focal scales that depth:
- `predict` (default): its own field of view, as the model runs out of the box; the K it returns
  carries that focal (cx, cy from the true K), so the evaluation reports its focal error;
- `given`: the true focal (Apple's `f_px` argument); the true K is returned.
Volumes always use the true K, as for every model.

Real runs: `pretrained: apple/DepthPro-hf`. `pretrained: null` builds a small random config of the
same classes, its head started near `init_depth` and its field-of-view head near `init_fov_deg`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import torch
from torch import Tensor, nn
from transformers import DepthProConfig, DepthProForDepthEstimation, DepthProImageProcessor
from transformers.models.depth_pro.modeling_depth_pro import DepthProDepthEstimatorOutput

from pipeline.config import PixelSize
from pipeline.models.base import DepthModel, ModelConfig, processor_pixels, stacked_depth
from pipeline.models.registry import register
from pipeline.typed import Range

HUB_ID = "apple/DepthPro-hf"
TINY_DEFAULTS = {"hidden_size": 32, "num_layers": 4, "num_heads": 2, "vit_patch": 8, "patch_size": 64,
                 "fusion_hidden_size": 16}


@dataclass
class DepthProModelConfig(ModelConfig):
    """`model_cfg.depth_pro` (the checkpoint keeps its own architecture and processor)."""
    size: PixelSize = (480, 640)   # the image as stored; the processor resizes to the square input
    camera: Literal["predict", "given"] = "predict"
    # a fresh (random) field-of-view head starts here
    init_fov_deg: Annotated[float, Range(0, 180, lo_open=True, hi_open=True)] = 55.0
    tiny: dict[str, Any] = field(default_factory=lambda: dict(TINY_DEFAULTS))


def tiny_config(tiny: dict) -> DepthProConfig:
    """Small DINOv2 encoders (image, patch, field of view) and fusion: the real classes."""
    t = {**TINY_DEFAULTS, **(tiny or {})}
    vit = {"model_type": "dinov2", "hidden_size": int(t["hidden_size"]), "num_hidden_layers": int(t["num_layers"]),
           "num_attention_heads": int(t["num_heads"]), "intermediate_size": 2 * int(t["hidden_size"]),
           "patch_size": int(t["vit_patch"]), "image_size": int(t["patch_size"])}
    f = int(t["fusion_hidden_size"])
    return DepthProConfig(patch_size=int(t["patch_size"]), fusion_hidden_size=f,
                          intermediate_hook_ids=[1, 0], intermediate_feature_dims=[f // 2, f // 2],
                          scaled_images_ratios=[0.25, 0.5, 1.0], scaled_images_overlap_ratios=[0.0, 0.5, 0.25],
                          scaled_images_feature_dims=[f, f, f // 2], use_fov_model=True, num_fov_head_layers=1,
                          image_model_config=dict(vit), patch_model_config=dict(vit), fov_model_config=dict(vit))


def input_side(config: DepthProConfig) -> int:
    """The network's square input: its smallest image scale must be one patch."""
    return int(round(config.patch_size / min(config.scaled_images_ratios)))


def fov_deg(K: Tensor, width: int) -> Tensor:
    """Horizontal field of view (degrees) of each K for an image `width` pixels wide."""
    return torch.rad2deg(2 * torch.atan(0.5 * width / K[:, 0, 0].float()))


@register("depth_pro", DepthProModelConfig)
class DepthPro(DepthModel):
    input_multiple = 1   # any size: the processor resizes to the network's own square input
    lora_targets = ("q_proj", "k_proj", "v_proj")

    def __init__(self, net: DepthProForDepthEstimation, processor: DepthProImageProcessor,
                 camera: str = "predict") -> None:
        super().__init__()
        if camera not in ("predict", "given"):
            raise ValueError(f"model_cfg.depth_pro.camera: expected 'predict' or 'given', got {camera!r}")
        if camera == "predict" and net.fov_model is None:
            raise ValueError("model_cfg.depth_pro.camera: predict needs a checkpoint with its field-of-view "
                             "head (use_fov_model); use camera: given")
        self.net, self.processor, self.camera = net, processor, camera
        self.predicts_K = camera == "predict"

    @classmethod
    def from_cfg(cls, cfg: DepthProModelConfig, seed: int = 0) -> DepthPro:
        if cfg.pretrained:
            src = str(cfg.pretrained)
            return cls(DepthProForDepthEstimation.from_pretrained(src),
                       DepthProImageProcessor.from_pretrained(src), cfg.camera)
        torch.manual_seed(seed)
        net = DepthProForDepthEstimation(tiny_config(cfg.tiny))
        side = input_side(net.config)
        model = cls(net, DepthProImageProcessor(size={"height": side, "width": side}), cfg.camera)
        model.start_near(cfg.init_depth, cfg.init_fov_deg)
        return model

    @classmethod
    def from_arch(cls, arch: dict) -> DepthPro:
        return cls(DepthProForDepthEstimation(DepthProConfig.from_dict(arch["hf_config"])),
                   DepthProImageProcessor(**arch["processor"]), arch.get("camera", "predict"))

    def arch_config(self) -> dict[str, Any]:
        proc = {k: v for k, v in self.processor.to_dict().items() if k in ("size", "image_mean", "image_std")}
        return {"hf_config": self.net.config.to_dict(), "processor": proc, "camera": self.camera}

    def start_near(self, depth_m: float, fov: float) -> None:
        """A random head outputs ~0 inverse depth (1e4 m after the processor's clamp): start its
        last layers near `depth_m` at `fov` degrees, small weights keeping the output varying."""
        if not (depth_m > 0 and 0 < fov < 180):
            raise ValueError(f"model_cfg.depth_pro: init_depth > 0 and 0 < init_fov_deg < 180, got {depth_m}, {fov}")
        last, fov_last = self.net.head.layers[-2], self.net.fov_model.head.layers[-1]
        with torch.no_grad():
            last.weight.mul_(0.01)
            last.bias.fill_(0.5 / math.tan(math.radians(fov) / 2) / depth_m)   # focal / width / depth
            fov_last.weight.mul_(0.01)
            fov_last.bias.fill_(fov)

    def forward(self, images: Tensor, K: Tensor | None) -> dict[str, Tensor]:
        self.check_input(images, K)
        if K is None:
            raise ValueError("K: depth_pro needs the true K (its principal point; the focal with camera: given)")
        h, w = images.shape[-2:]
        out = self.net(pixel_values=processor_pixels(self.processor, images))
        fov = out.field_of_view if self.camera == "predict" else fov_deg(K, w).to(out.predicted_depth)
        res = self.processor.post_process_depth_estimation(
            DepthProDepthEstimatorOutput(predicted_depth=out.predicted_depth, field_of_view=fov),
            target_sizes=[(h, w)] * len(images))
        depth = stacked_depth(res, h, w)
        K_out = K.float().clone()
        if self.camera == "predict":
            focal = torch.stack([r["focal_length"].reshape(()) for r in res]).float()
            K_out[:, 0, 0] = K_out[:, 1, 1] = focal
        return {"depth": depth, "K": K_out}

    def encoder_module(self) -> nn.Module:
        return self.net.depth_pro.encoder

    def encoder_parameters(self) -> list:
        return list(self.net.depth_pro.encoder.parameters())

    def decoder_parameters(self) -> list:
        enc = {id(p) for p in self.encoder_parameters()}
        return [p for p in self.net.parameters() if id(p) not in enc]

    def set_encoder_frozen(self, frozen: bool) -> None:
        for p in self.encoder_parameters():
            p.requires_grad = not frozen
