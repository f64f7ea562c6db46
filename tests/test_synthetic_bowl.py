"""Synthetic rig families have no release-wide rig plane: a deep bowl must still get the
rig's bowl-surface support (from the dish's own surround plane), and a floor that the food
hides must be flagged; other scenes keep the per-image plane."""
from __future__ import annotations

import yaml

from pipeline import io, suspect
from pipeline.masks import food_mask
from pipeline.synthetic import generate_dish


def _families() -> dict:
    return yaml.safe_load((io.REPO_ROOT / "params.yaml").read_text())["data"]["families"]


def test_deep_bowl_gets_bowl_surface_and_hidden_floor_flag():
    d = generate_dish(seed=0, index=13, families=_families())
    assert d.meta["scene"] == "deep_bowl"
    mask, sup = food_mask(d.depth, d.K, rgb=d.rgb)
    assert sup.kind == "bowl_surface"
    assert sup.floor_guess_m > 0.002          # food fills the bowl: its floor was continued
    assert "bowl_floor" in suspect.mask_reasons(mask, float("nan"), sup.kind,
                                                sup.inlier_fraction, None, sup.floor_guess_m)


def test_table_dish_keeps_the_per_image_plane():
    d = generate_dish(seed=0, index=3, families=_families())
    assert d.meta["scene"] == "table"
    _, sup = food_mask(d.depth, d.K, rgb=d.rgb)
    assert sup.kind == "plane"
