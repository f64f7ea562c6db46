"""Depth models behind one interface, so training, evaluation and prediction never
branch on the architecture.

Every wrapper takes un-normalised RGB in [0, 1] (it normalises itself) at a size that
is a multiple of 14 and returns metric z-depth plus the intrinsics it used: the given
K for Depth-Anything (which takes no camera input), for UniDepth its own prediction
(`camera: predict`) or the given K it was prompted with (`camera: given`).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

MODEL_NAMES = ("depth_anything_v2", "unidepth_v2")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DepthModel(torch.nn.Module):
    """Base of both wrappers: forward contract, encoder/decoder split, freezing, arch I/O."""

    input_multiple: int = 14
    name: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalise(self, images: Tensor) -> Tensor:
        """[0,1] RGB -> ImageNet-standardised (both backbones are DINOv2)."""
        return (images - self._mean.to(images.dtype)) / self._std.to(images.dtype)

    def check_input(self, images: Tensor, K: Tensor | None) -> None:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images: expected Bx3xHxW, got {tuple(images.shape)}")
        h, w = images.shape[-2:]
        m = self.input_multiple
        if h % m or w % m:
            raise ValueError(f"images: H and W must be multiples of {m}, got {h}x{w}")
        if K is not None and tuple(K.shape) != (images.shape[0], 3, 3):
            raise ValueError(f"K: expected {images.shape[0]}x3x3, got {tuple(K.shape)}")

    def forward(self, images: Tensor, K: Tensor | None) -> dict[str, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def encoder_parameters(self) -> list:
        raise NotImplementedError

    def decoder_parameters(self) -> list:
        raise NotImplementedError

    def set_encoder_frozen(self, frozen: bool) -> None:
        raise NotImplementedError

    def arch_config(self) -> dict[str, Any]:
        """JSON-able description that rebuilds the same architecture offline (no hub)."""
        raise NotImplementedError


def build_model(name: str, cfg: dict, seed: int = 0) -> DepthModel:
    """Build `name` from its `params.yaml` `model_cfg[name]` block.

    `cfg["pretrained"]` is a hub id or local path, or null for a tiny random config of the
    same library classes (CPU default, tests). `seed` fixes every random initialisation.
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"model name: unknown {name!r}, expected one of {MODEL_NAMES}")
    if not isinstance(cfg, dict):
        raise ValueError(f"model_cfg.{name}: expected a mapping, got {type(cfg).__name__}")
    torch.manual_seed(seed)
    if name == "depth_anything_v2":
        if "camera" in cfg:
            raise ValueError("model_cfg.depth_anything_v2.camera: Depth-Anything takes no camera "
                             "input (depth from the image alone); remove the key")
        from pipeline.models.depth_anything import DepthAnythingV2
        return DepthAnythingV2.from_cfg(cfg, seed=seed)
    from pipeline.models.unidepth import UniDepthV2Model
    return UniDepthV2Model.from_cfg(cfg, seed=seed)


def build_from_arch(name: str, arch: dict) -> DepthModel:
    """Rebuild an architecture saved by `arch_config()` (weights loaded separately)."""
    if name == "depth_anything_v2":
        from pipeline.models.depth_anything import DepthAnythingV2
        return DepthAnythingV2.from_arch(arch)
    if name == "unidepth_v2":
        from pipeline.models.unidepth import UniDepthV2Model
        return UniDepthV2Model.from_arch(arch)
    raise ValueError(f"model name: unknown {name!r}, expected one of {MODEL_NAMES}")
