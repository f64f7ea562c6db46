"""SAM 2 food masks prompted by boxes found in depth.

Depth knows *where* food stands (the offline mask of `pipeline.masks.food_mask`: rig-aware on
Nutrition5k, so plate floors, bowl surfaces, rails and cables are not food) but its edges are
blurred by sensor noise; SAM 2 knows *edges* in the
RGB but not what is food. One box per depth region gives SAM the where, SAM gives the edges.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

# The sam2 package tries to build its CUDA extension unless told not to (CPU machines).
os.environ.setdefault("SAM2_BUILD_CUDA", "0")

BOX_PAD_FRACTION = 0.08   # of the box side: depth regions stop short of the true food edge
BOX_PAD_MIN_PX = 4


def _config_name(config: str) -> str:
    """Hydra config name inside the sam2 package ('configs/sam2.1/sam2.1_hiera_t.yaml')."""
    import sam2
    name = config if config.endswith(".yaml") else f"{config}.yaml"
    pkg = Path(sam2.__file__).parent
    if not (pkg / name).is_file():
        if (pkg / "configs" / "sam2.1" / Path(name).name).is_file():
            return f"configs/sam2.1/{Path(name).name}"
        raise ValueError(f"masks.sam2_config={config!r}: no such config in the sam2 package "
                         f"(e.g. configs/sam2.1/sam2.1_hiera_t.yaml)")
    return name


def load_sam2_predictor(checkpoint: str | None, config: str, device: str = "cpu", seed: int = 0,
                        image_size: int | None = None):
    """A SAM2ImagePredictor.

    checkpoint None -> random init of `config` (offline tests, real classes);
    an existing local file -> weights via torch.load(weights_only=True) (in sam2's loader);
    otherwise a hub id -> SAM2ImagePredictor.from_pretrained (needs network or the HF cache).
    `image_size` (multiple of 64) replaces the config's 1024 input: ~4x faster on CPU for
    plumbing tests and benches; released weights are trained at 1024, keep None for them."""
    import torch
    from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES, build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    overrides = []
    if image_size is not None:
        if image_size <= 0 or image_size % 64:
            raise ValueError(f"image_size: must be a positive multiple of 64, got {image_size}")
        overrides = [f"++model.image_size={int(image_size)}"]
    if checkpoint is None or str(checkpoint).strip().lower() in ("", "none", "null", "random"):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_sam2(_config_name(config), ckpt_path=None, device=device,
                               hydra_overrides_extra=overrides)
        return _predictor(model, image_size)
    path = Path(checkpoint).expanduser()
    if path.is_file():
        try:
            model = build_sam2(_config_name(config), ckpt_path=str(path), device=device,
                               hydra_overrides_extra=overrides)
        except Exception as e:  # torch.load / load_state_dict raise many types for a bad file
            raise ValueError(f"masks.sam2_checkpoint={path}: not a SAM 2 checkpoint for "
                             f"{config} ({type(e).__name__}: {e})") from None
        return _predictor(model, image_size)
    if checkpoint not in HF_MODEL_ID_TO_FILENAMES:
        raise ValueError(f"masks.sam2_checkpoint={checkpoint!r}: neither a local file nor a known "
                         f"hub id ({', '.join(sorted(HF_MODEL_ID_TO_FILENAMES))})")
    try:
        return SAM2ImagePredictor.from_pretrained(checkpoint, device=device)
    except Exception as e:  # huggingface_hub raises many types when offline
        raise ValueError(f"masks.sam2_checkpoint={checkpoint!r}: could not load from the hub or "
                         f"its cache ({type(e).__name__}: {e}); download the .pt and give its "
                         f"local path, or use masks.method=geometry") from None


def _predictor(model, image_size: int | None):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    pred = SAM2ImagePredictor(model)
    if image_size is not None:  # the predictor hard-codes the 1024-input feature sizes
        pred._bb_feat_sizes = [(image_size // s, image_size // s) for s in (4, 8, 16)]
    return pred


def regions_to_boxes(mask: np.ndarray, min_area_px: int = 1) -> np.ndarray:
    """One padded xyxy box per 8-connected region of `mask` (Nx4 float32)."""
    h, w = mask.shape
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    boxes = []
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        if area < min_area_px:
            continue
        pad = max(BOX_PAD_MIN_PX, int(round(BOX_PAD_FRACTION * max(bw, bh))))
        boxes.append([max(0, x - pad), max(0, y - pad),
                      min(w - 1, x + bw - 1 + pad), min(h - 1, y + bh - 1 + pad)])
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


def box_prompts(depth: np.ndarray, K: np.ndarray, min_height_mm: float, min_area_px: int,
                rig_plane: tuple[np.ndarray, float] | None = None,
                rgb: np.ndarray | None = None) -> np.ndarray:
    """Nx4 xyxy boxes around the connected regions of the offline food mask."""
    from pipeline.masks.from_depth import food_mask

    mask, _ = food_mask(depth, K, min_height_mm, min_area_px, rig_plane, rgb)
    return regions_to_boxes(mask, min_area_px)


def sam2_food_mask(predictor, rgb: np.ndarray, depth: np.ndarray, K: np.ndarray,
                   min_height_mm: float, min_area_px: int,
                   prompt_mask: np.ndarray | None = None) -> np.ndarray:
    """HxW bool food mask: SAM 2's answers to the depth boxes (`sam2_box_mask`).
    No box -> empty mask (the caller counts it).
    `prompt_mask`: the offline mask to draw boxes from (default: food_mask without a rig)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb: expected HxWx3 uint8, got {rgb.shape} {rgb.dtype}")
    if rgb.shape[:2] != np.shape(depth):
        raise ValueError(f"rgb {rgb.shape[:2]} and depth {np.shape(depth)} differ in size")
    boxes = (box_prompts(depth, K, min_height_mm, min_area_px) if prompt_mask is None
             else regions_to_boxes(prompt_mask, min_area_px))
    return sam2_box_mask(predictor, rgb, boxes, min_area_px)


def sam2_box_mask(predictor, rgb: np.ndarray, boxes: np.ndarray, min_area_px: int) -> np.ndarray:
    """Union of SAM 2's single-mask answers to xyxy `boxes`, each clipped to its box (a box
    prompt means 'the object in here'), cleaned like the other masks. No box -> empty."""
    out = np.zeros(rgb.shape[:2], dtype=bool)
    if len(boxes) == 0:
        return out
    import torch

    from pipeline.masks.cleanup import clean_mask
    with torch.inference_mode():
        predictor.set_image(rgb)
        masks, _, _ = predictor.predict(box=boxes, multimask_output=False)
    masks = np.asarray(masks).reshape(len(boxes), *rgb.shape[:2]) > 0
    in_boxes = np.zeros_like(out)
    for m, (x0, y0, x1, y1) in zip(masks, boxes.astype(int)):
        out[y0:y1 + 1, x0:x1 + 1] |= m[y0:y1 + 1, x0:x1 + 1]
        in_boxes[y0:y1 + 1, x0:x1 + 1] = True
    return clean_mask(out, min_area_px) & in_boxes  # closing/hole filling may bridge between boxes
