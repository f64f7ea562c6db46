"""The food-mask head: a light head on a depth model's decoder features that predicts, per pixel,
the probability that the pixel is food (`model_cfg.<model>.mask_head: true`).

One implementation for every model: the module (`MaskHead`), its seeded initialisation, the loss
(`mask_loss`, trained with the depth in stages 1 and 2 on the masks stage's masks); the mask a
probability map gives is `pipeline.measure.food_mask` (torch-free). A wrapper feeds it the decoder feature map it reads
(Depth-Anything-V2: the last DPT fusion stage; UniDepth: its decoder's camera-conditioned latents)
and returns its logits as `mask_logits` beside the depth. End to end, the evaluation and `predict`
use its mask (`mask_source: mask_head`); the cut from the predicted depth stays the fallback.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class MaskHead(nn.Module):
    """conv 3x3 + ReLU at the features' resolution, bilinear upsampling to the input size, conv 3x3
    + ReLU, conv 1x1 -> one logit per pixel (the shape of Depth-Anything's depth head). Runs in
    float32 under any autocast: it is small, and the logits feed a float32 loss and a threshold."""

    def __init__(self, in_channels: int, hidden: int = 16) -> None:
        super().__init__()
        self.in_channels, self.hidden = int(in_channels), int(hidden)
        mid = max(self.hidden, self.in_channels // 2)
        self.conv1 = nn.Conv2d(self.in_channels, mid, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(mid, self.hidden, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(self.hidden, 1, kernel_size=1)
        self.act = nn.ReLU()

    def arch(self) -> dict:
        """What `arch_config()` records so `from_arch` rebuilds the same head."""
        return {"in_channels": self.in_channels, "hidden": self.hidden}

    def forward(self, features: Tensor, size: tuple[int, int]) -> Tensor:
        """B x C x h x w features -> B x H x W logits at the input size `size` (H, W)."""
        with torch.autocast(device_type=features.device.type, enabled=False):
            x = self.act(self.conv1(features.float()))
            x = nn.functional.interpolate(x, size=(int(size[0]), int(size[1])), mode="bilinear", align_corners=True)
            return self.conv3(self.act(self.conv2(x)))[:, 0]


def new_mask_head(in_channels: int, seed: int, hidden: int = 16) -> MaskHead:
    """A fresh head, initialised from `seed` alone: the global random state is left as it was, so
    adding a head changes no other draw of the run (the depth model, the data order)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed) + 2)
        return MaskHead(in_channels, hidden)


def mask_head_from_arch(arch: dict) -> MaskHead | None:
    """The head `MaskHead.arch()` described (its weights are loaded with the model's), or None."""
    spec = arch.get("mask_head")
    return MaskHead(int(spec["in_channels"]), int(spec.get("hidden", 16))) if spec else None


def mask_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Binary cross-entropy with logits plus a soft Dice (1 - 2 sum(p t) / (sum p + sum t), per image,
    batch mean), in float32. BCE alone is ruled by the many background pixels of a dish photo;
    Dice weighs the food region as a whole whatever its size."""
    z, t = logits.float(), target.float()
    bce = nn.functional.binary_cross_entropy_with_logits(z, t)
    p = torch.sigmoid(z)
    inter = (p * t).flatten(1).sum(1)
    denom = p.flatten(1).sum(1) + t.flatten(1).sum(1)
    dice = 1.0 - (2.0 * inter + 1.0) / (denom + 1.0)
    return bce + dice.mean()

