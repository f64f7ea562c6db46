"""UniDepth v2 through the official `unidepth` package (optional: requirements-unidepth.txt).

`model_cfg.unidepth_v2.camera` decides what the model knows about the camera:
- `predict` (default): the camera head predicts K, which shapes the depth (through its rays)
  and trains through the intrinsics loss against the true K; the K error is reported.
- `given`: the true K is the camera prompt (UniDepth's `Pinhole` rays replace the predicted
  ones), so the camera head is unused and frozen; the true K is returned.
Volumes always use the true K (losses, evaluation), whatever the mode.

UniDepth puts pixel centres at 0.5 ... W-0.5; this project at 0 ... W-1 (cx = 319.5 at 640 px),
so cx, cy are converted both ways here and nowhere else.

Parameters that never receive a gradient are frozen (DDP requires it): the confidence head
(its own loss is not used), and the camera head in `given` mode. Freezing of the encoder goes
through `pixel_encoder.frozen_stages`, because the backbone's `.train()` re-sets
`requires_grad` from it; upstream keeps the patch embedding frozen (frozen_stages = 0) even
when it trains everything, and so does stage 2 here.
"""
from __future__ import annotations

import contextlib
import copy
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from pipeline.config import PixelSize
from pipeline.models.base import DepthModel, ModelConfig, checkpoint_source
from pipeline.models.registry import register

CAMERA_MODES = ("predict", "given")
# output_idx of the upstream v2 configs (configs/config_v2_<backbone>.json)
OUTPUT_IDX = {"vits14": [3, 6, 9, 12], "vitb14": [3, 6, 9, 12], "vitl14": [6, 12, 18, 24]}
# the input range UniDepth v2 was trained on (data.augmentations.shape_constraints upstream)
PIXELS_RANGE = (200_000, 600_000)
ASPECT_RANGE = (0.5, 2.5)
# decoder parts that feed only the confidence output (no loss here uses it)
_CONFIDENCE_PARTS = ("confidence_mlp", "to_confidence_lr", "to_confidence_hr")
TINY_DEFAULTS = {"hidden_dim": 64, "depths": [1, 1, 1], "out_dim": 16, "num_heads": 2, "expansion": 2}


@dataclass
class UniDepthV2Config(ModelConfig):
    """`model_cfg.unidepth_v2` (the checkpoint, if any, keeps its own architecture)."""
    backbone: Literal["vits14", "vitb14", "vitl14"] = "vits14"
    camera: Literal["predict", "given"] = "predict"
    mask_head: bool = False   # a food-mask head on the decoder's camera-conditioned latents (pipeline.models.mask_head)
    size: PixelSize = (420, 560)
    zoom: Literal["depth", "intrinsics", "off"] = "intrinsics"
    tiny: dict[str, Any] = field(default_factory=lambda: dict(TINY_DEFAULTS))


def _require_unidepth():
    """The package's model class. Only a missing `unidepth` reads as "not installed"; a
    broken install (e.g. a runtime import of the package missing) raises what it raised."""
    try:
        import unidepth  # noqa: F401
    except ModuleNotFoundError as e:
        if e.name != "unidepth":
            raise
        raise ValueError("unidepth_v2: the `unidepth` package is not installed "
                         "(see requirements-unidepth.txt)") from None
    try:
        from unidepth.models import UniDepthV2
    except ImportError as e:
        raise ImportError(f"unidepth_v2: the installed `unidepth` package fails to import "
                          f"({type(e).__name__}: {e}); its runtime imports are pinned in "
                          "requirements-unidepth.txt") from e
    return UniDepthV2


def to_unidepth_K(K: Tensor) -> Tensor:
    """Project K (pixel centres at integers) -> UniDepth K (centres at +0.5)."""
    K = K.clone()
    K[..., 0, 2] += 0.5
    K[..., 1, 2] += 0.5
    return K


def from_unidepth_K(K: Tensor) -> Tensor:
    """UniDepth K (pixel centres at +0.5) -> project K (pixel centres at integers)."""
    K = K.clone()
    K[..., 0, 2] -= 0.5
    K[..., 1, 2] -= 0.5
    return K


def prompt_camera(K: Tensor):
    """UniDepth camera prompt for a batch of project Ks: one `Pinhole` per image in a
    `BatchCamera` (a single batched `Pinhole` fails in `get_rays` for B > 1 upstream)."""
    from unidepth.utils.camera import BatchCamera, Pinhole
    Kud = to_unidepth_K(K.float())
    cams = [Pinhole(K=Kud[i:i + 1]) for i in range(len(Kud))]
    params = torch.cat([c.params for c in cams])
    return BatchCamera(params, Kud, ["Pinhole"] * len(cams), cams)


def check_camera_mode(mode: str) -> str:
    if mode not in CAMERA_MODES:
        raise ValueError(f"model_cfg.unidepth_v2.camera: expected one of {CAMERA_MODES}, got {mode!r}")
    return mode


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


def random_config(cfg: UniDepthV2Config) -> dict:
    """A randomly initialised v2 config (the real encoder, a small decoder), nothing downloaded."""
    t = {**TINY_DEFAULTS, **cfg.tiny}
    backbone = cfg.backbone
    if backbone not in OUTPUT_IDX:
        raise ValueError(f"model_cfg.unidepth_v2.backbone: expected one of {sorted(OUTPUT_IDX)}, "
                         f"got {backbone!r}")
    return {
        "generic": {"seed": 0, "deterministic": True},
        "training": {"drop_path": 0.0, "use_checkpoint": False, "wd": 0.1, "ld": 1.0,
                     "lr": 1e-4, "losses": _loss_cfg()},
        "data": {"image_shape": [480, 640], "normalization": "imagenet",
                 "augmentations": {"shape_constraints": {
                     "ratio_bounds": list(ASPECT_RANGE), "pixels_max": PIXELS_RANGE[1],
                     "pixels_min": PIXELS_RANGE[0], "height_min": 15, "width_min": 15,
                     "shape_mult": 14, "sample": True}}},
        "model": {"name": "UniDepthV2", "num_heads": int(t["num_heads"]),
                  "expansion": int(t["expansion"]), "layer_scale": 1.0,
                  "pixel_decoder": {"name": "Decoder", "hidden_dim": int(t["hidden_dim"]),
                                    "dropout": 0.0, "depths": list(t["depths"]),
                                    "out_dim": int(t["out_dim"]), "kernel_size": 3},
                  "pixel_encoder": {"lr": 2e-6, "wd": 0.1, "name": f"dinov2_{backbone}",
                                    "frozen_stages": 0, "num_register_tokens": 0,
                                    "use_norm": True, "freeze_norm": True, "pretrained": None,
                                    "stacking_fn": "last", "output_idx": list(OUTPUT_IDX[backbone])}},
    }


def set_initial_depth(net: torch.nn.Module, depth_m: float) -> None:
    """Start a random decoder near `depth_m` metres: upstream's radius is exp(logdepth + 2),
    i.e. ~7.4 m from a fresh head, 20x a tabletop, which a short fine-tune cannot undo."""
    if not depth_m > 0:
        raise ValueError(f"model_cfg.unidepth_v2.init_depth: must be > 0 m, got {depth_m}")
    with torch.no_grad():
        net.pixel_decoder.depth_layer.to_depth_hr[-1].bias.fill_(math.log(depth_m) - 2.0)


def check_input_range(h: int, w: int) -> str | None:
    """A warning text when HxW is outside the range UniDepth v2 was trained on, else None."""
    px, aspect = h * w, w / h
    if PIXELS_RANGE[0] <= px <= PIXELS_RANGE[1] and ASPECT_RANGE[0] <= aspect <= ASPECT_RANGE[1]:
        return None
    return (f"unidepth_v2: input {h}x{w} ({px} px, aspect {aspect:.2f}) is outside UniDepth's "
            f"trained range ({PIXELS_RANGE[0]}-{PIXELS_RANGE[1]} px, aspect "
            f"{ASPECT_RANGE[0]}-{ASPECT_RANGE[1]}); pretrained weights may degrade")


@register("unidepth_v2", UniDepthV2Config)
class UniDepthV2Model(DepthModel):
    lora_targets = ("qkv",)   # the DINOv2 blocks' fused attention projection

    def __init__(self, net: torch.nn.Module, config: dict, camera: str = "predict") -> None:
        super().__init__()
        # the package's own training losses (a plain dict, no weights): we train with
        # pipeline.train.losses, and one of them holds a TorchScript function that cannot be
        # deep-copied, which Lightning's EMA (AveragedModel) does to the model (real-size rehearsal)
        if isinstance(getattr(net, "losses", None), dict):
            net.losses = {}
        self.net = net
        self._config = config
        self.camera = check_camera_mode(camera)
        self.predicts_K = self.camera == "predict"  # the training adds the intrinsics loss
        for p in self.unused_parameters():
            p.requires_grad = False

    @classmethod
    def from_cfg(cls, cfg: UniDepthV2Config, seed: int = 0) -> UniDepthV2Model:
        camera = check_camera_mode(cfg.camera)
        UniDepthV2 = _require_unidepth()
        src = checkpoint_source(cfg.pretrained) if cfg.pretrained else None
        torch.manual_seed(seed)
        if src is None:
            config = random_config(cfg)
            net = UniDepthV2(copy.deepcopy(config))
            set_initial_depth(net, cfg.init_depth)
            model = cls(net, config, camera)
        else:
            net = UniDepthV2.from_pretrained(str(src))  # hub mixin: config.json + weights
            config = copy.deepcopy(getattr(net, "_hub_mixin_config", None) or {})
            if "config" in config:
                config = config["config"]
            if not config:
                raise ValueError(f"model_cfg.unidepth_v2.pretrained: {src} has no config.json")
            model = cls(net, config, camera)
        if cfg.mask_head:
            model.attach_mask_head(model.decoder_width(), seed, checkpoint=cfg.pretrained)
        return model

    @classmethod
    def from_arch(cls, arch: dict) -> UniDepthV2Model:
        from pipeline.models.mask_head import mask_head_from_arch
        UniDepthV2 = _require_unidepth()
        config = copy.deepcopy(arch["unidepth_config"])
        model = cls(UniDepthV2(copy.deepcopy(config)), config, arch.get("camera", "predict"))
        model.mask_head = mask_head_from_arch(arch)
        return model

    def arch_config(self) -> dict[str, Any]:
        config = copy.deepcopy(self._config)
        config["model"]["pixel_encoder"]["pretrained"] = None  # never fetch DINO weights on load
        return {"unidepth_config": config, "camera": self.camera, **self.mask_head_arch()}

    def decoder_width(self) -> int:
        """Channels of the decoder's `depth_features` (its camera-conditioned latents): the mask head's input."""
        return int(self._config["model"]["pixel_decoder"]["hidden_dim"])

    def unused_parameters(self) -> list:
        """Parameters no output we use depends on: frozen, so DDP never waits for them."""
        dec = self.net.pixel_decoder
        mods = [getattr(dec.depth_layer, n) for n in _CONFIDENCE_PARTS]
        if self.camera == "given":
            mods += [dec.camera_layer, dec.camera_token_adapter]
        return [p for m in mods for p in m.parameters()]

    def forward(self, images: Tensor, K: Tensor | None) -> dict[str, Tensor]:
        self.check_input(images, K)
        msg = check_input_range(*images.shape[-2:])
        if msg:  # Python shows each distinct message once per run
            warnings.warn(msg, stacklevel=2)
        inputs: dict[str, Any] = {"image": self.normalise(images), "camera": None}
        if self.camera == "given":
            if K is None:
                raise ValueError("K: unidepth_v2 with camera: given needs the true K; got None")
            inputs["camera"] = prompt_camera(K)
        # CPU bf16 autocast: UniDepth's ray embedding resizes with antialias, which PyTorch's CPU
        # kernels do not implement for bfloat16 (found by the real-size rehearsal), so on the CPU
        # the network runs in float32; CUDA keeps the autocast precision
        cpu_bf16 = images.device.type == "cpu" and torch.is_autocast_enabled("cpu")
        with torch.autocast("cpu", enabled=False) if cpu_bf16 else contextlib.nullcontext():
            if cpu_bf16:
                inputs["image"] = inputs["image"].float()
            _, out = self.net.encode_decode(inputs, image_metas=[])
        K_out = K if self.camera == "given" else from_unidepth_K(out["intrinsics"])
        res = {"depth": out["depth"][:, 0], "K": K_out}
        if self.mask_head is not None:
            res["mask_logits"] = self.mask_head(out["depth_features"], images.shape[-2:])
        return res

    def encoder_parameters(self) -> list:
        return list(self.net.pixel_encoder.parameters())

    def decoder_parameters(self) -> list:
        return list(self.net.pixel_decoder.parameters()) + self.mask_head_parameters()

    def encoder_module(self) -> torch.nn.Module:
        return self.net.pixel_encoder

    def set_encoder_frozen(self, frozen: bool) -> None:
        enc = self.net.pixel_encoder
        # upstream: frozen_stages > len(blocks) freezes every block and the final norm;
        # 0 trains everything but the patch embedding (and mask/register tokens)
        enc.frozen_stages = len(enc.blocks) + 1 if frozen else 0
        for p in enc.parameters():
            p.requires_grad = not frozen
        enc.train(enc.training)  # applies upstream's per-part requires_grad rules
