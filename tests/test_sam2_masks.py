"""SAM 2 plumbing with a random-init sam2.1_hiera_t (offline, real sam2 classes)."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("SAM2_BUILD_CUDA", "0")
pytest.importorskip("sam2")

from pipeline.data.synthetic import generate_dish  # noqa: E402
from pipeline.masks.from_depth import geometry_mask  # noqa: E402
from pipeline.masks.sam2 import box_prompts, load_sam2_predictor, regions_to_boxes, sam2_food_mask  # noqa: E402

CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


@pytest.fixture(scope="module")
def dish():
    # index 13 is a near-overhead view in seed 0 (like Nutrition5k's camera)
    return generate_dish(0, 13, width=320, height=240, noise=True)


@pytest.fixture(scope="module")
def predictor():
    # 512 input instead of 1024: same classes and code path, ~4x less CPU
    return load_sam2_predictor(None, CONFIG, device="cpu", image_size=512)


def test_boxes_cover_depth_regions(dish):
    boxes = box_prompts(dish.depth, dish.K, 4.0, 50)
    geo = geometry_mask(dish.depth, dish.K, 4.0, 50)
    assert boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) >= 1
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert boxes.min() >= 0 and boxes[:, 2].max() <= 319 and boxes[:, 3].max() <= 239
    ys, xs = np.nonzero(geo)
    inside = np.zeros(len(ys), bool)
    for x0, y0, x1, y1 in boxes:
        inside |= (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
    assert inside.all()  # every food pixel found in depth lies in some box


def test_regions_to_boxes_pads_and_clips():
    m = np.zeros((50, 60), bool)
    m[0:10, 0:10] = True
    m[30:40, 40:55] = True
    boxes = regions_to_boxes(m)
    assert boxes.shape == (2, 4)
    assert boxes[0].tolist() == [0, 0, 13, 13]
    assert boxes[1, 2] <= 59 and boxes[1, 0] < 40
    assert regions_to_boxes(np.zeros((5, 5), bool)).shape == (0, 4)


@pytest.mark.slow
def test_sam2_food_mask_runs_with_depth_boxes(dish, predictor):
    mask = sam2_food_mask(predictor, dish.rgb, dish.depth, dish.K, 4.0, 50)
    assert mask.shape == dish.depth.shape and mask.dtype == bool
    assert predictor._is_image_set  # SAM saw the image, i.e. depth gave it at least one box
    assert predictor._orig_hw == [dish.depth.shape]
    boxes = box_prompts(dish.depth, dish.K, 4.0, 50)
    inside = np.zeros_like(mask)
    for x0, y0, x1, y1 in boxes.astype(int):
        inside[y0:y1 + 1, x0:x1 + 1] = True
    assert not (mask & ~inside).any()  # answers are clipped to their prompt boxes


@pytest.mark.slow
def test_no_food_gives_empty_mask(predictor):
    flat = np.full((120, 160), 0.36, np.float32)
    K = np.array([[150.0, 0, 79.5], [0, 150.0, 59.5], [0, 0, 1]])
    rgb = np.zeros((120, 160, 3), np.uint8)
    mask = sam2_food_mask(predictor, rgb, flat, K, 4.0, 50)
    assert mask.shape == (120, 160) and not mask.any()


@pytest.mark.slow
def test_bad_inputs_and_checkpoints(dish, predictor, tmp_path):
    with pytest.raises(ValueError, match="rgb"):
        sam2_food_mask(predictor, dish.rgb[:10], dish.depth, dish.K, 4.0, 50)
    with pytest.raises(ValueError, match="neither a local file"):
        load_sam2_predictor(str(tmp_path / "missing.pt"), CONFIG)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        load_sam2_predictor(str(bad), CONFIG)
    with pytest.raises(ValueError, match="image_size"):
        load_sam2_predictor(None, CONFIG, image_size=500)
    with pytest.raises(ValueError, match="sam2_config"):
        load_sam2_predictor(None, "configs/nope.yaml")
