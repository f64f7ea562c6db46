"""The interface every depth model implements, so training, evaluation and prediction never
branch on the architecture.

Every wrapper takes un-normalised RGB in [0, 1] (it normalises itself) at a size that is a
multiple of 14 and returns metric z-depth plus the intrinsics it used: the given K for
Depth-Anything (which takes no camera input), for UniDepth its own prediction
(`camera: predict`) or the given K it was prompted with (`camera: given`). A wrapper with a
food-mask head (`model_cfg.<model>.mask_head: true`, pipeline.models.mask_head) also returns
`mask_logits` (B x H x W, food where sigmoid > 0.5).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from pipeline.config import PixelSize, PosFloat

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def checkpoint_source(pretrained: str) -> str:
    """`model_cfg.<model>.pretrained` as from_pretrained takes it: a folder relative to the
    repository (the synthetic pretraining's models/<model>/pretrain) resolved against it, so a
    stage runs from any working directory; anything else (a hub id, an absolute path) as is."""
    from pipeline.config import REPO_ROOT
    local = REPO_ROOT / pretrained
    return str(local) if not Path(pretrained).is_absolute() and local.is_dir() else str(pretrained)


class DepthModel(torch.nn.Module):
    """Base of both wrappers: forward contract, encoder/decoder split, freezing, arch I/O."""

    input_multiple: int = 14
    name: str = ""
    predicts_K: bool = False   # True: the K it returns is its own prediction (UniDepth, camera: predict)
    lora_targets: tuple[str, ...] = ()   # encoder linear layers LoRA adapts by default (pipeline.models.lora)
    lora_active: bool = False  # set by lora.set_encoder_mode: only the encoder's adapters train there

    def __init__(self) -> None:
        super().__init__()
        self.mask_head = None   # a MaskHead (pipeline.models.mask_head) when the model predicts food masks
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

    def image_features(self, images: Tensor) -> Tensor:
        """B x C x h x w: the encoder's feature maps the depth decoder reads, stacked on C (what
        small heads on the depth model, e.g. the mass head, read). Others: NotImplementedError."""
        raise NotImplementedError(f"{self.name or type(self).__name__}: no image_features")

    def encoder_parameters(self) -> list:
        raise NotImplementedError

    @property
    def has_mask_head(self) -> bool:
        return self.mask_head is not None

    def attach_mask_head(self, in_channels: int, seed: int, checkpoint: str | None = None) -> None:
        """A fresh food-mask head on this model (seeded, global random state untouched). Built on a
        checkpoint that has none (the stage-0 model), it is the only part not loaded, and this says so."""
        from pipeline.models.mask_head import new_mask_head
        self.mask_head = new_mask_head(in_channels, seed)
        if checkpoint is not None:
            print(f"{self.name}: {checkpoint} has no food-mask head: the head alone is initialised fresh "
                  f"(seed {seed}); every other weight is loaded from it")

    def mask_head_parameters(self) -> list:
        """The head's parameters (trained with the decoder, in stages 1 and 2); [] without a head."""
        return list(self.mask_head.parameters()) if self.mask_head is not None else []

    def mask_head_arch(self) -> dict:
        """`arch_config()`'s entry for the head ({} without one: older exports load unchanged)."""
        return {"mask_head": self.mask_head.arch()} if self.mask_head is not None else {}

    def decoder_parameters(self) -> list:
        raise NotImplementedError

    def set_encoder_frozen(self, frozen: bool) -> None:
        raise NotImplementedError

    def encoder_module(self) -> torch.nn.Module:
        """The module holding the encoder (LoRA adapters are injected there)."""
        raise NotImplementedError

    def train(self, mode: bool = True) -> DepthModel:
        super().train(mode)
        if self.lora_active:  # a backbone's own train() may re-set requires_grad (UniDepth's does)
            from pipeline.models.lora import only_adapters_trainable
            only_adapters_trainable(self.encoder_module())
        return self

    @classmethod
    def from_cfg(cls, cfg: Any, seed: int = 0) -> DepthModel:  # pragma: no cover
        """Build from the model's typed config (a checkpoint, or a small random config)."""
        raise NotImplementedError

    @classmethod
    def from_arch(cls, arch: dict) -> DepthModel:  # pragma: no cover
        """Rebuild the architecture `arch_config()` saved (weights are loaded separately)."""
        raise NotImplementedError

    def save_pretrained(self, out_dir: Path) -> None:
        """Write a checkpoint that `model_cfg.<name>.pretrained: <out_dir>` loads like a hub one
        (config.json + model.safetensors, the network's own format), replacing out_dir atomically."""
        from pipeline.io import atomic_dir
        with atomic_dir(Path(out_dir)) as tmp:
            self.net.save_pretrained(str(tmp), safe_serialization=True)

    def arch_config(self) -> dict[str, Any]:
        """JSON-able description that rebuilds the same architecture offline (no hub)."""
        raise NotImplementedError


def processor_pixels(processor: Any, images: Tensor) -> Tensor:
    """A transformers image processor on a [0, 1] RGB batch: the model's own normalisation and
    resizing (zero-shot rows score a model as its authors ship it)."""
    pixels = processor(images=list(images), do_rescale=False, return_tensors="pt")["pixel_values"]
    return pixels.to(images.device, images.dtype)


def stacked_depth(results: list[dict], h: int, w: int) -> Tensor:
    """BxHxW float32 depth from a processor's `post_process_depth_estimation` results."""
    return torch.stack([r["predicted_depth"].reshape(h, w) for r in results]).float()


@dataclass
class ModelConfig:
    """What every `model_cfg.<name>` block has; a model's own config class adds to it."""
    pretrained: str | None = None    # hub id or local path; null = small random config (offline)
    size: PixelSize = (126, 168)     # [H, W] training and inference input, multiples of 14
    zoom: Literal["depth", "intrinsics", "off"] = "depth"   # how a zoom augmentation is labelled
    init_depth: PosFloat = 0.5       # m, initial output of a fresh (random) head


def depth_only(cfg: Any) -> Any:
    """A model's typed config without its food-mask head (`mask_head` false where the config has the
    key): the stage-0 network, which never has one (stage `pretrain@`, the evaluation's stage-0 rows)."""
    import dataclasses
    return dataclasses.replace(cfg, mask_head=False) if getattr(cfg, "mask_head", False) else cfg


def strict_loading(info: dict, source: str) -> None:
    """A checkpoint loaded by `from_pretrained(..., output_loading_info=True)` must fit the network
    exactly: a missing, unexpected or mismatched key is an error naming them, never a silent fresh
    layer (the food-mask head lives outside the network and is attached separately)."""
    bad = {k: sorted(map(str, info.get(k) or ())) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if any(bad.values()):
        raise ValueError(f"{source}: the checkpoint does not fit the network: " +
                         "; ".join(f"{k} {v[:3]}" for k, v in bad.items() if v))
