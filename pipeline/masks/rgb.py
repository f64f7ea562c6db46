"""Depth-free food masks for the given-mask evaluation setting on Nutrition5k.

The measured depth must not reach the prediction side (issue 10), so these masks read only the
RGB image. The rule: on the rig's fixed overhead camera the dish sits near the image centre and
containers and the rig (white/grey plates, steel bowls, grey platform and rails) are nearly
colourless, while food mostly is not. Strongly coloured pixels away from the frame seed the
food, colourless ones and the frame band sample the container, and `colour_like` (the rig
masks' Lab-histogram vote) decides the rest; food regions are grown from the seeds, and regions
reaching the frame band (rig, surround, a coloured plate filling the view) are dropped.
Known misses: colourless food (rice, pale chicken on steel) and food on a coloured plate.

With a local SAM 2 checkpoint the rule's regions become box prompts (`sam2_box_mask`): SAM 2
gives the edges, the rule says where. Each mask is named by its source (`MASK_SOURCES`).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline.config import MasksConfig, or_default
from pipeline.masks.cleanup import clean_mask, drop_touching, hysteresis
from pipeline.masks.colour import colour_like

RGB_RULE, SAM2_RGB = "rgb_rule", "sam2_rgb"
MASK_SOURCES = (RGB_RULE, SAM2_RGB)
SEED_CHROMA = 30.0      # Lab chroma (a*, b* distance from grey) of surely-food pixels
CONTAINER_CHROMA = 12.0  # ... below this a pixel is taken as container / rig (colourless)
FRAME_FRACTION = 0.06   # band along the image border: rig and surround, never a seed


def chroma(rgb: np.ndarray) -> np.ndarray:
    """Lab chroma per pixel (0 for greys, whites, steel), after a small median blur."""
    lab = cv2.cvtColor(cv2.medianBlur(np.ascontiguousarray(rgb), 5), cv2.COLOR_RGB2LAB).astype(np.float32)
    return np.hypot(lab[..., 1] - 128.0, lab[..., 2] - 128.0)


def _frame(shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    b = max(2, int(round(FRAME_FRACTION * min(h, w))))
    f = np.ones(shape, dtype=bool)
    f[b:h - b, b:w - b] = False
    return f


def rgb_rule_mask(rgb: np.ndarray, min_area_px: int | None = None) -> np.ndarray:
    """HxW bool food mask from the colour rule alone (see the module doc); empty when nothing
    in the image is coloured enough to seed food. min_area_px None: params' default."""
    min_area_px = or_default(MasksConfig, min_area_px=min_area_px)
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb: expected HxWx3 uint8, got {rgb.shape} {rgb.dtype}")
    c = chroma(rgb)
    frame = _frame(c.shape)
    seeds = (c > SEED_CHROMA) & ~frame
    container = (c < CONTAINER_CHROMA) | frame
    like = colour_like(rgb, seeds, container) & ~(c < CONTAINER_CHROMA)
    food = hysteresis(seeds & like, like)
    return clean_mask(drop_touching(food, frame), min_area_px)  # the rig and surround reach the frame


def sam2_checkpoint_file(checkpoint: str | None) -> Path | None:
    """The SAM 2 checkpoint when it is a local file, else None (offline/CI: the rule alone).
    Hub ids are not fetched here: the given masks must not depend on network access."""
    if not checkpoint:
        return None
    p = Path(str(checkpoint)).expanduser()
    return p if p.is_file() else None


def depth_free_mask(rgb: np.ndarray, min_area_px: int, predictor=None) -> tuple[np.ndarray, str]:
    """(mask, source): SAM 2 prompted by the rule's regions when a predictor is given, else the
    rule's own mask. Reads the RGB image only."""
    from pipeline.masks.sam2 import regions_to_boxes, sam2_box_mask

    rule = rgb_rule_mask(rgb, min_area_px)
    if predictor is None:
        return rule, RGB_RULE
    return sam2_box_mask(predictor, rgb, regions_to_boxes(rule, min_area_px), min_area_px), SAM2_RGB
