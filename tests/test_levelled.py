"""The hidden cavity of food levelled in a bowl, from the wall seen above it
(pipeline.masks.levelled): exact walls of the three bowl families, with sensor-like noise."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.masks.levelled import cavity_ml, levelled_bowl

FLOOR, RIM_R, DEPTH = 0.056, 0.09, 0.06      # floor height above the base, rim radius, depth (m)


def _cap(z):
    R = (RIM_R ** 2 + DEPTH ** 2) / (2 * DEPTH)
    return np.sqrt(np.maximum(2 * R * (z - FLOOR) - (z - FLOOR) ** 2, 0.0))


def _cone(z):
    return 0.01 + (RIM_R - 0.01) * (z - FLOOR) / DEPTH


def _flat_floored(z):
    return 0.04 + (RIM_R - 0.04) * np.clip((z - FLOOR) / DEPTH, 0, 1) ** 0.6


def _wall(radius, level: float, n: int = 20000, seed: int = 0, above: float = 0.005, top: float | None = None):
    """Wall pixels (r, z) drawn from `above` over the food's level up to `top` (default 3 mm under
    the rim), with 0.5 mm of noise."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(level + above, FLOOR + DEPTH - 0.003 if top is None else top, n)
    return radius(z) + rng.normal(0, 0.0005, n), z


def _true_ml(radius, level: float) -> float:
    zs = np.linspace(FLOOR, level, 4000)
    return float(np.trapezoid(np.pi * radius(zs) ** 2, zs) * 1e6)


@pytest.mark.parametrize("radius, exponent", [(_cap, 0.5), (_cone, 1.0), (_flat_floored, 0.6)])
def test_a_wall_seen_above_half_the_bowl_gives_its_cavity(radius, exponent) -> None:
    level = FLOOR + 0.5 * DEPTH
    r, z = _wall(radius, level)
    sup = levelled_bowl(r, z, level, FLOOR + DEPTH, [0, 0, 1], 0.0, [0, 0], FLOOR)
    err = cavity_ml(sup, level) / _true_ml(radius, level) - 1
    assert abs(err) <= 0.05 and abs(err) <= sup.uncertainty <= 0.2, (err, sup.uncertainty)
    assert abs(sup.wall_exponent - exponent) <= 0.15, sup.wall_exponent


def test_a_band_too_short_to_tell_the_shapes_apart_states_it() -> None:
    """4 mm of wall over a 52 mm fill: a cap and flat floors up to half the rim radius fit it
    alike; the uncertainty says so."""
    level = FLOOR + 0.052
    r, z = _wall(_cap, level, 3000, 1, 0.0045, level + 0.0085)
    sup = levelled_bowl(r, z, level, level + 0.0105, [0, 0, 1], 0.0, [0, 0], FLOOR)
    assert sup.uncertainty > 0.2, sup.uncertainty


def test_a_floor_deeper_than_a_bowl_can_be_is_not_its_floor() -> None:
    """The surround's floor under a bowl standing on a glass platform 5 cm up: the cavity would
    be deeper than the bowl is wide (MAX_DEPTH_RATIO), so the floor cannot be placed: the
    uncertainty is 1 (flagged bowl_floor), not a label 5 cm of cavity too deep."""
    level = FLOOR + 0.5 * DEPTH
    r, z = _wall(_cap, level)
    sup = levelled_bowl(r, z, level, FLOOR + DEPTH, [0, 0, 1], 0.0, [0, 0], FLOOR - 0.05)
    assert sup.uncertainty == 1.0


def test_a_band_near_the_rim_with_the_food_s_contact_reads_a_round_bowl_as_round() -> None:
    """A round bowl filled to 87 %: 5 mm of wall and the ring where the food meets it fit a
    cap and power laws alike (the uncertainty says so); the cap is taken, not the cone that
    read it 36 % high, and the cones cut flat wider than half the rim (pots) that flagged it
    are not bowls."""
    level = FLOOR + 0.87 * DEPTH
    r, z = _wall(_cap, level, 3000, 1, 0.0045, FLOOR + DEPTH - 0.002)
    sup = levelled_bowl(r, z, level, FLOOR + DEPTH, [0, 0, 1], 0.0, [0, 0], FLOOR,
                        contact_r=float(_cap(np.array([level]))[0]))
    err = cavity_ml(sup, level) / _true_ml(_cap, level) - 1
    assert abs(err) <= 0.02 and sup.wall_exponent == 0.5, (err, sup.wall_exponent)
    assert 0.1 < sup.uncertainty <= 0.3, sup.uncertainty


@pytest.mark.parametrize("radius", [_cap, _cone, _flat_floored])
@pytest.mark.parametrize("fill, contact, rim_gap", [(0.75, False, None), (0.8, True, None), (0.87, True, None),
                                                    (0.52 / 0.6, False, 0.0105)])
def test_a_narrow_band_of_wall_states_an_uncertainty_that_covers_the_error(
        radius, fill: float, contact: bool, rim_gap: float | None) -> None:
    """Food filled high shows a band of wall near the rim: whichever of the three bowls it is
    drawn from (a wide flat floor reads as a cap ~20 % low), the stated uncertainty covers the
    error (the last case: 4 mm of wall under a rim 10.5 mm above the food)."""
    level = FLOOR + fill * DEPTH
    rim = FLOOR + DEPTH if rim_gap is None else level + rim_gap
    r, z = _wall(radius, level, 3000, 1, 0.0045, rim - 0.002)
    sup = levelled_bowl(r, z, level, rim, [0, 0, 1], 0.0, [0, 0], FLOOR,
                        contact_r=float(radius(np.array([level]))[0]) if contact else None)
    err = cavity_ml(sup, level) / _true_ml(radius, level) - 1
    assert abs(err) <= sup.uncertainty, (err, sup.uncertainty)
