"""Densities of the synthetic food kinds, so synthetic dishes weigh something, as real ones do.

Why: Nutrition5k's ground truth is mass, and a mass head can only learn what the images show.
Each synthetic look (colour and texture class, `pipeline.data.food_items.FOOD_LOOKS`) stands for
one kind of real food and takes that food's BULK density as served (air gaps included, as a
heap of rice or leaves has them): light foods look light, dense ones dense, as on a real plate.
Values are rounded household-measure densities (grams per level US cup of 236.6 mL, USDA
FoodData Central portion weights, or the usual kitchen conversion tables where noted).
Within a kind every item draws its own density (log-normal, `SPREAD`), since two servings of
the same food are packed differently.

The draws come from their own random stream (`[seed, index, STREAM]`), never from the
generator's: adding masses leaves every rendered image, depth map and mask unchanged.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

STREAM = 2   # family_of uses [seed, index, 1]; the scene itself [seed, index]

# look -> (median bulk density g/mL, the real food it stands for)
FOOD_DENSITY_G_ML: dict[str, tuple[float, str]] = {
    "rice": (0.67, "white rice, cooked (~158 g per cup)"),
    "greens": (0.33, "leafy / chopped green vegetables, e.g. broccoli florets raw (~91 g per cup), salad lighter"),
    "meat": (0.95, "cooked meat pieces / patty (diced chicken ~0.6, a solid steak ~1.05)"),
    "tomato": (0.76, "tomato, raw, chopped (~180 g per cup)"),
    "egg": (0.93, "scrambled egg (~220 g per cup)"),
    "carrot": (0.55, "carrot, raw, chopped (~128 g per cup)"),
    "bread": (0.30, "bread, sliced or torn (crumb with large air gaps)"),
    "potato": (0.89, "mashed potato (~210 g per cup)"),
    "beans": (1.05, "baked beans in sauce (~254 g per cup)"),
}
SPREAD = 0.12          # log-normal sigma of one item's density around its kind's median
LIMITS = (0.25, 1.15)  # g/mL: no draw outside the range of real bulk food densities


def item_densities(seed: int, index: int, looks: Sequence[str]) -> np.ndarray:
    """Density (g/mL) of each item of dish (seed, index), from the items' looks; own stream."""
    unknown = [k for k in looks if k not in FOOD_DENSITY_G_ML]
    if unknown:
        raise ValueError(f"looks: no density for {unknown} (known: {list(FOOD_DENSITY_G_ML)})")
    rng = np.random.default_rng([int(seed), int(index), STREAM])
    median = np.array([FOOD_DENSITY_G_ML[k][0] for k in looks], dtype=np.float64)
    return np.clip(median * np.exp(SPREAD * rng.standard_normal(len(looks))), *LIMITS)


def dish_mass(seed: int, index: int, looks: Sequence[str], volumes_ml: Sequence[float]) -> tuple[float, np.ndarray]:
    """(total mass g, item densities g/mL) of a dish whose items have these looks and volumes."""
    vols = np.asarray(volumes_ml, dtype=np.float64)
    if vols.shape != (len(looks),):
        raise ValueError(f"volumes_ml: {vols.shape[0] if vols.ndim else 0} volumes for {len(looks)} items")
    dens = item_densities(seed, index, looks)
    return float(np.sum(dens * vols)), dens
