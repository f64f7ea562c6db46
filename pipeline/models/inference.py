"""Saving, loading and running a fine-tuned depth model (evaluation and prediction use these).

Weights are safetensors; `model.json` holds the architecture, so loading needs no hub access.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from safetensors.torch import load_file, save_file

from pipeline.geometry.camera import resize_K
from pipeline.io import atomic_write, read_json, write_json
from pipeline.models import DepthModel, build_from_arch, model_names

WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"


def _portable(obj: Any) -> Any:
    """The architecture without transformers' `_name_or_path` (the folder a checkpoint was read
    from): model.json, and so its DVC hash, must not depend on where the checkout lies."""
    if isinstance(obj, dict):
        return {k: _portable(v) for k, v in obj.items() if k != "_name_or_path"}
    if isinstance(obj, list):
        return [_portable(v) for v in obj]
    return obj


def save_model(model: DepthModel, out_dir: Path, name: str, cfg: Any, trained_on: dict | None = None) -> None:
    """Write out_dir/model.safetensors then out_dir/model.json (each atomically); `cfg` is the
    model's config (typed, or a params mapping), kept in model.json for predict. `trained_on`
    (the training data source, dish count, stage) goes to model.json's `trained_on` so predict can
    say what the checkpoint saw; model.json without it (older exports) still loads. LoRA adapters
    are merged into a copy first, so loading never needs peft."""
    from pipeline.models.lora import merged_state_dict
    out_dir = Path(out_dir)
    cfg = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
    state = {k: v.detach().cpu().contiguous() for k, v in merged_state_dict(model).items()}
    with atomic_write(out_dir / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp))
    meta = {"name": name, "cfg": cfg, "arch": _portable(model.arch_config()), "input_multiple": model.input_multiple}
    if trained_on is not None:
        meta["trained_on"] = dict(trained_on)
    write_json(out_dir / META_FILE, meta)


def load_model(weights_dir: Path) -> DepthModel:
    """Rebuild the architecture from model.json and load model.safetensors (strict)."""
    weights_dir = Path(weights_dir)
    meta = read_json(weights_dir / META_FILE)
    if not isinstance(meta, dict) or meta.get("name") not in model_names() or "arch" not in meta:
        raise ValueError(f"{weights_dir / META_FILE}: not a model description (name/arch missing)")
    wpath = weights_dir / WEIGHTS_FILE
    if not wpath.is_file():
        raise ValueError(f"{wpath}: file not found")
    model = build_from_arch(meta["name"], meta["arch"])
    try:
        state = load_file(str(wpath))
    except Exception as e:
        raise ValueError(f"{wpath}: not readable safetensors ({e})") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{wpath}: weights do not match {meta['name']} "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval()


def model_input(model: DepthModel, rgb: np.ndarray, K: np.ndarray, size: tuple[int, int]
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(1x3xHxW image in [0, 1], 1x3x3 K) of an HxWx3 uint8 photo resized to `size` = (H, W), K scaled
    with it, on the model's device: what the model is given."""
    h0, w0 = rgb.shape[:2]
    h, w = int(size[0]), int(size[1])
    m = model.input_multiple
    if h % m or w % m or h <= 0 or w <= 0:
        raise ValueError(f"size: {h}x{w} is not a positive multiple of {m}")
    small = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if h < h0 else cv2.INTER_LINEAR)
    K_small = resize_K(np.asarray(K, dtype=np.float64), (h0, w0), (h, w))
    device = next(model.parameters()).device
    x = torch.from_numpy(small).to(device).permute(2, 0, 1)[None].float() / 255.0
    return x, torch.from_numpy(K_small).float().to(device)[None]


def predict_arrays(model: DepthModel, rgb: np.ndarray, K: np.ndarray,
                   size: tuple[int, int]) -> dict[str, np.ndarray]:
    """What the model predicts for one photo, at the ORIGINAL resolution of `rgb`: `depth` (HxW
    float32 m), `K` (3x3) and, for a model with a food-mask head, `food_prob` (HxW float32 in [0, 1]).

    The image is resized to `size` = (H, W) (multiples of the model's input multiple), K
    scaled with it; depth and probability are resized back bilinearly and K scaled back.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb: expected HxWx3 uint8, got {rgb.shape} {rgb.dtype}")
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"K: expected 3x3, got {K.shape}")
    h0, w0 = rgb.shape[:2]
    h, w = int(size[0]), int(size[1])
    x, kt = model_input(model, rgb, K, (h, w))
    was_training = model.training
    model.eval()

    def back(t: torch.Tensor) -> np.ndarray:   # B x h x w -> h0 x w0 at the photo's resolution
        up = torch.nn.functional.interpolate(t[:, None].float(), size=(h0, w0), mode="bilinear", align_corners=False)
        return up[0, 0].cpu().numpy().astype(np.float32)

    with torch.no_grad():
        out = model(x, kt.clone())
        res = {"depth": back(out["depth"])}
        if "mask_logits" in out:
            res["food_prob"] = back(torch.sigmoid(out["mask_logits"].float()))
    model.train(was_training)
    res["K"] = resize_K(out["K"][0].double().cpu().numpy(), (h, w), (h0, w0))
    return res


def predict_depth_array(model: DepthModel, rgb: np.ndarray, K: np.ndarray,
                        size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Depth (HxW float32 m) and K (3x3) at the ORIGINAL resolution of `rgb` (`predict_arrays`)."""
    res = predict_arrays(model, rgb, K, size)
    return res["depth"], res["K"]
