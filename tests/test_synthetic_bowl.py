"""Synthetic rig families have no release-wide rig plane: a deep bowl must still get the
rig's bowl-surface support (from the dish's own surround plane), and a floor that the food
hides must be flagged; other scenes keep the per-image plane."""
from __future__ import annotations

import pytest
import yaml

from pipeline import io, suspect
from pipeline.data.synthetic import generate_dish
from pipeline.masks.from_depth import food_mask


def _families() -> dict:
    return yaml.safe_load((io.REPO_ROOT / "params.yaml").read_text())["data"]["families"]


@pytest.mark.slow
def test_deep_bowl_with_hidden_floor_is_labelled_from_its_wall():
    """Food fills the deep bowl far above any vessel floor (geometry, not colour): the wall seen
    above it is fitted and the label carries an uncertainty that holds its error (issue 27;
    before, the floor was continued from the wall, flagged bowl_floor and the dish dropped)."""
    from pipeline.masks.support import volume_above_support

    d = generate_dish(seed=0, index=482, families=_families())   # a 24 mm layer under pieces
    assert d.meta["scene"] == "deep_bowl"
    mask, sup = food_mask(d.depth, d.K, rgb=d.rgb)
    assert sup.kind == "bowl_surface" and sup.uncertainty is not None
    err = volume_above_support(d.depth, mask, d.K, sup).volume_ml / d.volume_ml_true - 1
    assert abs(err) <= sup.uncertainty <= 0.15, (err, sup.uncertainty)
    assert suspect.mask_reasons(mask, float("nan"), sup.kind, sup.inlier_fraction, None, sup.floor_guess_m,
                                sup.floor_wall_colour, sup.uncertainty) == []


@pytest.mark.slow
def test_thin_layer_in_a_deep_bowl_states_the_floor_it_does_not_see():
    """An 8 mm layer over a floor known to +- 3 mm: the label's uncertainty holds its error, and
    it is about twice a thick layer's (0.10 for the 24 mm layer above; issue 27: a narrow one hid
    a guess)."""
    from pipeline.masks.support import volume_above_support

    d = generate_dish(seed=0, index=13, families=_families())
    assert d.meta["scene"] == "deep_bowl"
    mask, sup = food_mask(d.depth, d.K, rgb=d.rgb)
    err = volume_above_support(d.depth, mask, d.K, sup).volume_ml / d.volume_ml_true - 1
    assert sup.kind == "bowl_surface" and abs(err) <= sup.uncertainty and sup.uncertainty > 0.2, \
        (err, sup.uncertainty)


def test_table_dish_keeps_the_per_image_plane():
    d = generate_dish(seed=0, index=3, families=_families())
    assert d.meta["scene"] == "table"
    _, sup = food_mask(d.depth, d.K, rgb=d.rgb)
    assert sup.kind == "plane"


@pytest.mark.slow
def test_food_filling_a_deep_bowl_is_flagged_by_its_colour():
    """A deep bowl whose food layer fills it level (the fitted surface rises < 3 cm, so it was
    taken for a plane before): the level surface does not look like the steel wall."""
    d = generate_dish(seed=0, index=146, families=_families())
    assert d.meta["scene"] == "deep_bowl"
    mask, sup = food_mask(d.depth, d.K, rgb=d.rgb)
    assert sup.kind == "bowl_surface" and sup.floor_wall_colour < 0.65
    assert "bowl_floor" in suspect.mask_reasons(mask, float("nan"), sup.kind, sup.inlier_fraction,
                                                None, sup.floor_guess_m, sup.floor_wall_colour)


def test_colour_match_of_regions():
    import numpy as np

    from pipeline.masks.colour import colour_match
    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[:, :20] = (200, 40, 40)
    rgb[:, 20:] = (150, 150, 150)
    left = np.zeros((40, 40), bool)
    left[:, :20] = True
    assert colour_match(rgb, left, left) == 1.0 and colour_match(rgb, left, ~left) == 0.0
    assert colour_match(None, left, ~left) is None


@pytest.mark.slow
def test_deep_bowl_on_glass_platform_gets_the_release_floor():
    """A deep bowl on a glass platform (the depth sees the bench through it): without a vessel
    floor its food level was taken for a bare floor (-46 %, flagged). With the floor the other
    synthetic dishes' platforms show (pipeline.masks.vessel_floor) the level is food, labelled
    from the wall within its stated uncertainty (issue 27)."""
    from pipeline.data.scene import rig_platform_z
    from pipeline.masks.levelled import FLOOR_M
    from pipeline.masks.support import volume_above_support

    d = generate_dish(seed=0, index=238, families=_families())
    assert d.meta["scene"] == "deep_bowl" and d.meta["platform_glass"]
    assert d.meta["platform_z_m"] == rig_platform_z(0)   # one rig: the data set's platform
    mask, sup = food_mask(d.depth, d.K, rgb=d.rgb, rig_floor_m=rig_platform_z(0) + FLOOR_M)
    assert sup.kind == "bowl_surface" and sup.uncertainty is not None
    err = volume_above_support(d.depth, mask, d.K, sup).volume_ml / d.volume_ml_true - 1
    # the bowl's own floor may lie a few mm off the release's: that is in the stated
    # uncertainty, which holds the error
    assert abs(err) <= sup.uncertainty, (err, sup.uncertainty)
    assert suspect.mask_reasons(mask, float("nan"), sup.kind, sup.inlier_fraction, None, sup.floor_guess_m,
                                sup.floor_wall_colour, sup.uncertainty) == []


@pytest.mark.slow
def test_synthetic_platform_dish_is_floor_evidence():
    """With no release plane a dish's own surround plane is used: an opaque platform seen in
    depth gives its height + a vessel's floor (pipeline.masks.vessel_floor)."""
    from pipeline.masks.levelled import FLOOR_M
    from pipeline.masks.vessel_floor import dish_view

    d = next(d for i in range(40) for d in [generate_dish(seed=0, index=i, families=_families())]
             if d.meta["scene"] == "platform" and not d.meta["platform_glass"])
    view = dish_view(d.depth, d.K, None, max_tilt_deg=15.0)
    assert view is not None and view.kind == "platform"
    assert abs(view.floor - (d.meta["platform_z_m"] + FLOOR_M)) < 0.004, (view, d.meta["platform_z_m"])



@pytest.mark.slow
@pytest.mark.parametrize("index", [110, 331, 575])
def test_deep_bowl_filling_the_frame_is_flagged_or_within_its_uncertainty(index):
    """The default data set's deep bowls that fill the frame (syn_00331, syn_00575: the farthest
    level surface is the food itself, enclosed by the wall; syn_00110: food levelled in the bowl,
    whose largest level once replaced the dish's own surround plane) were labelled -74 to -85 %
    with no flag (issue 27). Now the label lies within its stated uncertainty or is flagged.
    syn_00331: the wall fit stands the bowl on the lowest of its floor heights, 4 mm under the
    true floor, and its 8 mm food layer reads +21 %; the uncertainty, measured from that pick to
    the far end of the floor's range, flags it (it once took half the range: 15 %, unflagged).
    syn_00575 (on the data set's one platform, 54.6 mm) shows almost none of the surround
    (about 100 valid pixels): flagged."""
    from pipeline.data.scene import rig_platform_z
    from pipeline.masks.levelled import FLOOR_M
    from pipeline.masks.support import volume_above_support

    d = generate_dish(seed=0, index=index, families=_families())
    assert d.meta["scene"] == "deep_bowl"
    mask, sup = food_mask(d.depth, d.K, rgb=d.rgb, rig_floor_m=rig_platform_z(0) + FLOOR_M)   # the release floor
    reasons = suspect.mask_reasons(mask, 100.0, sup.kind, sup.inlier_fraction, None, sup.floor_guess_m,
                                   sup.floor_wall_colour, sup.uncertainty)
    err = volume_above_support(d.depth, mask, d.K, sup).volume_ml / d.volume_ml_true - 1
    assert "bowl_floor" in reasons or abs(err) <= max(sup.uncertainty or 0.0, 0.1), (err, sup)


@pytest.mark.slow
def test_deep_bowl_filling_the_frame_stands_on_the_surround_strip():
    """syn_00331: the farthest level surface fitted is the food, enclosed by the wall; the strip
    of surround at the image border places the dish's plane below it, and the bowl is fitted."""
    from pipeline.data.scene import rig_platform_z
    from pipeline.masks.from_depth import dish_surround_plane, inside_vessel
    from pipeline.masks.levelled import FLOOR_M

    d = generate_dish(seed=0, index=331, families=_families())
    n, dd = dish_surround_plane(d.depth, d.K)
    assert not inside_vessel(d.depth, d.K, (n, dd))
    _, sup = food_mask(d.depth, d.K, rgb=d.rgb, rig_floor_m=rig_platform_z(0) + FLOOR_M)
    assert sup.kind == "bowl_surface" and sup.uncertainty is not None


@pytest.mark.slow
def test_surround_plane_fitted_once_gives_the_same_mask():
    """The masks stage reuses the surround planes release_floor fitted (one fit per dish):
    the mask and support are those of a fresh fit."""
    import numpy as np

    from pipeline.masks.from_depth import dish_surround_plane

    d = generate_dish(seed=0, index=13, families=_families())
    plane = dish_surround_plane(d.depth, d.K)
    (m1, s1), (m2, s2) = food_mask(d.depth, d.K, rgb=d.rgb), food_mask(d.depth, d.K, rgb=d.rgb, surround_plane=plane)
    assert np.array_equal(m1, m2) and s1 == s2
