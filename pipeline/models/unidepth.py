"""UniDepth v2 through the official `unidepth` package (optional: requirements-unidepth.txt).

We call `encode_decode` without the true camera, so the camera head predicts K and trains
through our intrinsics loss; the package's own losses (which need paired batches) are unused.
Freezing goes through `pixel_encoder.frozen_stages`, because the backbone's `.train()`
re-sets `requires_grad` from it.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor

from pipeline.models import DepthModel


def _require_unidepth():
    try:
        from unidepth.models import UniDepthV2
    except ImportError as e:  # optional dependency
        raise ValueError("unidepth_v2: the `unidepth` package is not installed "
                         f"(pip install -r requirements-unidepth.txt): {e}") from None
    return UniDepthV2


def _loss_cfg() -> dict:
    """The package builds its losses in __init__; these mirror its v2 configs (unused here)."""
    return {
        "depth": {"name": "SILog", "weight": 1.0, "output_fn": "sqrt", "input_fn": "log",
                  "dims": [-2, -1], "integrated": 0.15},
        "invariance": {"name": "SelfDistill", "weight": 0.1, "output_fn": "sqrt"},
        "camera": {"name": "Regression", "weight": 0.25, "gamma": 1.0, "alpha": 1.0, "fn": "l2",
                   "output_fn": "sqrt", "input_fn": "linear"},
        "ssi": {"name": "EdgeGuidedLocalSSI", "weight": 1.0, "output_fn": "sqrt",
                "input_fn": "log1i", "use_global": True, "min_samples": 6},
        "confidence": {"name": "Confidence", "weight": 0.1, "gamma": 1.0, "alpha": 1.0, "fn": "l1",
                       "output_fn": "sqrt", "input_fn": "linear"},
    }


def random_config(cfg: dict) -> dict:
    """A randomly initialised v2 config (vits14 encoder, small decoder), nothing downloaded."""
    t = {"hidden_dim": 64, "depths": [1, 1, 1], "out_dim": 16, "num_heads": 2, "expansion": 2,
         **(cfg.get("tiny") or {})}
    backbone = cfg.get("backbone", "vits14")
    return {
        "generic": {"seed": 0, "deterministic": True},
        "training": {"drop_path": 0.0, "use_checkpoint": False, "wd": 0.1, "ld": 1.0,
                     "lr": 1e-4, "losses": _loss_cfg()},
        "data": {"image_shape": [480, 640], "normalization": "imagenet",
                 "augmentations": {"shape_constraints": {
                     "ratio_bounds": [0.5, 2.5], "pixels_max": 600000, "pixels_min": 200000,
                     "height_min": 15, "width_min": 15, "shape_mult": 14, "sample": True}}},
        "model": {"name": "UniDepthV2", "num_heads": int(t["num_heads"]),
                  "expansion": int(t["expansion"]), "layer_scale": 1.0,
                  "pixel_decoder": {"name": "Decoder", "hidden_dim": int(t["hidden_dim"]),
                                    "dropout": 0.0, "depths": list(t["depths"]),
                                    "out_dim": int(t["out_dim"]), "kernel_size": 3},
                  "pixel_encoder": {"lr": 2e-6, "wd": 0.1, "name": f"dinov2_{backbone}",
                                    "frozen_stages": 0, "num_register_tokens": 0,
                                    "use_norm": True, "freeze_norm": True, "pretrained": None,
                                    "stacking_fn": "last", "output_idx": [3, 6, 9, 12]}},
    }


class UniDepthV2Model(DepthModel):
    name = "unidepth_v2"

    def __init__(self, net: torch.nn.Module, config: dict) -> None:
        super().__init__()
        self.net = net
        self._config = config

    @classmethod
    def from_cfg(cls, cfg: dict, seed: int = 0) -> "UniDepthV2Model":
        UniDepthV2 = _require_unidepth()
        src = cfg.get("pretrained")
        torch.manual_seed(seed)
        if src is None:
            config = random_config(cfg)
            return cls(UniDepthV2(copy.deepcopy(config)), config)
        net = UniDepthV2.from_pretrained(str(src))  # hub mixin: config.json + weights
        config = copy.deepcopy(getattr(net, "_hub_mixin_config", None) or {})
        if "config" in config:
            config = config["config"]
        if not config:
            raise ValueError(f"model_cfg.unidepth_v2.pretrained: {src} has no config.json")
        return cls(net, config)

    @classmethod
    def from_arch(cls, arch: dict) -> "UniDepthV2Model":
        UniDepthV2 = _require_unidepth()
        config = copy.deepcopy(arch["unidepth_config"])
        return cls(UniDepthV2(copy.deepcopy(config)), config)

    def arch_config(self) -> dict[str, Any]:
        config = copy.deepcopy(self._config)
        config["model"]["pixel_encoder"]["pretrained"] = None  # never fetch DINO weights on load
        return {"unidepth_config": config}

    def forward(self, images: Tensor, K: Tensor | None) -> dict[str, Tensor]:
        self.check_input(images, K)
        # No camera: the camera head predicts K (and trains); our K is never handed over
        # (the package edits camera objects in place).
        _, out = self.net.encode_decode({"image": self.normalise(images), "camera": None},
                                        image_metas=[])
        return {"depth": out["depth"][:, 0], "K": out["intrinsics"]}

    def encoder_parameters(self) -> list:
        return list(self.net.pixel_encoder.parameters())

    def decoder_parameters(self) -> list:
        return list(self.net.pixel_decoder.parameters())

    def set_encoder_frozen(self, frozen: bool) -> None:
        enc = self.net.pixel_encoder
        if frozen:
            enc.frozen_stages = len(enc.blocks) + 1
            for p in enc.parameters():
                p.requires_grad = False
        else:
            enc.frozen_stages = -1
            for name, p in enc.named_parameters():
                p.requires_grad = name not in ("mask_token", "register_tokens")
        enc.train(self.training)
