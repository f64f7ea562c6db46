"""Food masks on the fixed Nutrition5k rig, where the rig plane (the surface around the scale
platform, pipeline.data.rig) is known. `rig_mask` runs named steps:

1. `dish_geometry`: the base (the surround, or the platform when it is seen), the dish standing
   on it (rails and cables cut off, nothing dropped for touching the border), its lowest level
   surface and whether a wall rises around it;
2. `vessel_floor`: how high a plate's or bowl's floor can lie above that base on this rig;
3. geometry first: a lowest level far above that height is food hiding a bowl's floor
   (pipeline.masks.bowls.food_filling_bowl, or `food_to_the_wall` when too little wall shows
   above it to fit a shape), whatever its colour;
4. otherwise a plate (a level floor with no wall, `food_on_plate`) or an open bowl
   (pipeline.masks.bowls.food_in_open_bowl); food with no vessel lies on the base
   (`food_on_platform`). Colour votes (pipeline.masks.colour) drop rims and walls at food height.
A dish that would hold no food standing on the release's glass-platform floor stands on the base
seen (a platform filling the frame): steps 3-4 run again with the floor FLOOR_M above it.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.config import MasksConfig, or_default
from pipeline.geometry import backproject, fit_plane
from pipeline.geometry.plane import LEVEL_BAND_M as _LEVEL_BAND_M
from pipeline.geometry.plane import levels
from pipeline.masks.bowls import (
    bowl_axis,
    food_filling_bowl,
    food_in_open_bowl,
    food_to_the_wall,
    level_like_vessel,
    rim_height,
)
from pipeline.masks.cleanup import clean_mask, fill_holes, hysteresis, image_border, largest_component, noise_floor
from pipeline.masks.colour import colour_like
from pipeline.masks.levelled import FLOOR_M
from pipeline.masks.support import Support

_SPLIT_PX = 15           # erosion radius that cuts rails and cables off the dish
_RIM_PX = 12             # band along a plate's outline where a low rise is rim, not food
_RIM_MAX_M = 0.02        # ... rims rise at most this much above the plate floor
_PLATE_MIN_INLIERS = 0.3  # of the dish's pixels on its floor plane: a plate, else a bowl
_SEED_M = 0.02           # pixels this high above the support are surely food (colour samples)
FLOOR_TOL_M = 0.010      # a plate's or bowl's floor lies at most this far above the rig's
                         # typical vessel floor (plates 4-15 mm thick, bowl bottoms 4-12 mm)
BOWL_TOL_M = 0.003       # ... a bowl's (walled) floor this far, unless coloured like its wall
_PLATE_FOOD_M = 0.008    # food on a plate stands at least this high above its floor ...
_PLATE_FOOD_SHARE = 0.02  # ... over at least this share of the dish
_TALL_EDGE_PX = 4        # the sloped edge round food that stands that high: food by height too
_PLATFORM_MAX_M = 0.12   # a platform seen beside the dish stands at most this high


def _disc(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


_DISH_MIN_M = 0.003      # a dish stands at least this high above its base ...
_MIN_DISH_PX = 1000      # ... over at least this many pixels (fewer: food lies on the base itself)
_MIN_LEVEL_PX = 1500     # a level surface covers at least this many pixels ...
_MIN_LEVEL_SHARE = 0.03  # ... and this share of the region searched
_BASE_BORDER_SHARE = 0.1  # the base covers at least this share of the image border
_MAX_NORMAL_DEG = 1.0    # the release-wide plane's normal fits a dish within this angle
_PLANE_FIT_PX = 20000
_MAX_FLOOR_M = 0.02      # a plate or bowl floor lies at most this high above the base


def dish_plane(X: np.ndarray, valid: np.ndarray, rig_plane: tuple[np.ndarray, float], seed: int = 0,
               own: bool = False) -> tuple[np.ndarray, float, str]:
    """(normal, d, 'release' | 'dish'): the release-wide rig plane, or this dish's own plane
    when the release's normal is more than _MAX_NORMAL_DEG off the dish's largest level surface
    (another camera pose: the release plane would slant every height). The largest level surface
    of a rig dish is the surround, the platform or a plate floor: all parallel to the rig."""
    n_rig, d_rig = np.asarray(rig_plane[0], float), float(rig_plane[1])
    fit = _largest_level_plane(X, valid, n_rig, d_rig, seed)
    if not own and fit is not None and _angle_deg(fit[0], n_rig) <= _MAX_NORMAL_DEG:
        return n_rig, d_rig, "release"
    pts = _subsample(X[valid], seed)
    if len(pts) < 100:
        return n_rig, d_rig, "release"
    n, d = fit_plane(pts, seed=seed)
    for _ in range(2):   # RANSAC over several level surfaces tilts a little: refit on the largest
        fit = _largest_level_plane(X, valid, n, d, seed)
        if fit is None:
            break
        n, d = fit
    return *lowest_level(X, valid, n, d), "dish"


_BELOW_M = 0.015           # a level surface this far below the fitted one is another surface ...
_LOW_BORDER_SHARE = 0.02   # ... reaching this share of the image border


def lowest_level(X: np.ndarray, valid: np.ndarray, n: np.ndarray, d: float) -> tuple[np.ndarray, float]:
    """The plane n.X + d = 0 moved down to the lowest level surface parallel to it that reaches
    the image border. The largest level surface a fit takes can be the food levelled in a bowl
    filling the frame, or the platform, with the surround only a strip at the border: the
    normal, fitted on the larger surface, holds; the height is the lowest surface's."""
    n, d = np.asarray(n, float), float(d)
    h = np.nan_to_num(X @ n + d, nan=np.inf)
    low = border_levels(h, valid, valid & (h < -_BELOW_M), max(500, int(0.005 * valid.sum())),
                        _LOW_BORDER_SHARE)
    return (n, d - min(low)) if low else (n, d)


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(min(1.0, abs(float(a @ b) / np.linalg.norm(a) / np.linalg.norm(b))))))


def _subsample(pts: np.ndarray, seed: int) -> np.ndarray:
    if len(pts) > _PLANE_FIT_PX:
        pts = pts[np.random.default_rng(seed).choice(len(pts), _PLANE_FIT_PX, replace=False)]
    return pts


def _largest_level_plane(X: np.ndarray, valid: np.ndarray, n: np.ndarray, d: float, seed: int
                         ) -> tuple[np.ndarray, float] | None:
    """Plane fitted on the largest level surface found along normal n (None: no level)."""
    h = X @ n + d
    lv = levels(h, valid, int(0.05 * valid.sum()), max_levels=1)
    if not lv:
        return None
    pts = _subsample(X[valid & (np.abs(h - lv[0]) < _LEVEL_BAND_M)], seed)
    return fit_plane(pts, seed=seed) if len(pts) >= 100 else None


def base_level(h: np.ndarray, valid: np.ndarray) -> tuple[float | None, np.ndarray]:
    """(the base, the dish standing on it): the highest level surface (heights `h`) that covers
    _BASE_BORDER_SHARE of the image border and has a dish (_MIN_DISH_PX) standing on it: the
    surround, or the scale platform when it runs out of the frame. A higher one with nothing on
    it is food levelled in a bowl running out of the frame (a close camera), seen inside its
    wall. None when no level surface reaches the border (a bowl filling the frame)."""
    found = sorted(border_levels(h, valid, valid, int(0.05 * valid.size), _BASE_BORDER_SHARE), reverse=True)
    first = None
    for lev in found:
        dish = find_dish(valid & (h - lev > _DISH_MIN_M))
        if dish.sum() >= _MIN_DISH_PX:
            return lev, dish
        first = first or (lev, dish)
    return first or (None, find_dish(valid & (h > _DISH_MIN_M)))


def border_levels(h: np.ndarray, valid: np.ndarray, region: np.ndarray, min_px: int,
                  share: float) -> list[float]:
    """The level surfaces of heights `h` in `region` (pipeline.geometry.plane.levels) whose
    valid pixels cover `share` of the image border."""
    border = image_border(valid.shape)
    return [lev for lev in levels(h, region, min_px)
            if (valid & border & (np.abs(h - lev) < _LEVEL_BAND_M)).sum() >= share * border.sum()]


def find_dish(above: np.ndarray) -> np.ndarray:
    """The dish (plate/bowl + food) among the things above the rig plane: close sensor holes,
    cut thin rails and cables off by an erosion, keep the largest piece, grow it back."""
    closed = cv2.morphologyEx(above.astype(np.uint8), cv2.MORPH_CLOSE, _disc(6)).astype(bool)
    filled = fill_holes(closed)
    core = largest_component(cv2.erode(filled.astype(np.uint8), _disc(_SPLIT_PX)).astype(bool))
    return cv2.dilate(core.astype(np.uint8), _disc(_SPLIT_PX + 2)).astype(bool) & filled


@dataclass
class DishGeometry:
    """What the steps of `rig_mask` share: the back-projected points, heights above the base
    plane (normal . X + d), the dish and its lowest level surface, and the base's height above
    the rig plane (0 when no level surface reaches the border)."""
    X: np.ndarray
    K: np.ndarray
    valid: np.ndarray
    normal: np.ndarray
    d: float
    heights: np.ndarray
    plane_source: str
    base: float
    base_found: bool
    dish: np.ndarray
    inside: np.ndarray
    level: float | None = None      # the dish's lowest level surface above the base
    floor_h: float = 0.0            # ... or, without one, the median height of the dish
    edge: np.ndarray | None = None  # the band along the dish's outline
    rise: float = 0.0               # the outline's median height above the level
    walled: bool = False            # a wall rises around the level (a bowl)

    @property
    def platform_seen(self) -> bool:
        """The base is a platform standing above the rig plane, not the surround."""
        return self.base_found and self.base > _MAX_FLOOR_M

    @property
    def on_surround(self) -> bool:
        return self.base_found and abs(self.base) < _MAX_FLOOR_M


def dish_geometry(depth: np.ndarray, K: np.ndarray, rig_plane: tuple[np.ndarray, float], seed: int = 0,
                  own: bool = False, plane_is_dish: bool = False) -> DishGeometry:
    """Step 1: the base (the highest level surface running out of the frame: the surround, or
    the scale platform when it is in view), the dish standing on it, its lowest level and its
    outline's rise above that level. `own`: fit this dish's own plane (another camera pose).
    `plane_is_dish`: `rig_plane` is already this dish's own surround plane (synthetic rig
    families): kept as it is (a refit on the dish's largest level surface would take food
    levelled in a bowl for the surround)."""
    depth = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    X = backproject(depth, K)
    n, d, source = (np.asarray(rig_plane[0], float), float(rig_plane[1]), "release") if plane_is_dish \
        else dish_plane(X, valid, rig_plane, seed, own=own)
    h = np.nan_to_num(X @ n + d, nan=-1.0)
    base, dish = base_level(h, valid)
    g = DishGeometry(X, np.asarray(K, float), valid, np.asarray(n, float), float(d) - (base or 0.0),
                     h - (base or 0.0), source, float(base or 0.0), base is not None, dish, dish & valid)
    if g.dish.sum() < _MIN_DISH_PX:
        return g
    lv = levels(g.heights, g.inside & (g.heights > _DISH_MIN_M),
                max(_MIN_LEVEL_PX, int(_MIN_LEVEL_SHARE * g.inside.sum())))
    g.level = min(lv) if lv else None   # all food stands on the lowest level, whatever covers more
    g.edge = g.dish & ~cv2.erode(g.dish.astype(np.uint8), _disc(_RIM_PX)).astype(bool)
    band = g.inside & g.edge
    g.floor_h = g.level if g.level is not None else float(np.median(g.heights[g.inside]))
    g.rise = float(np.median(g.heights[band] - g.floor_h)) if band.any() else 0.0
    g.walled = g.rise > _RIM_MAX_M
    return g


def vessel_floor(g: DishGeometry, rig_floor_m: float | None) -> float | None:
    """Step 2: height above the base where a plate's or bowl's floor lies on this rig: the
    release's vessel floor (pipeline.masks.vessel_floor) when the dish stands on a glass
    platform the depth sees through (base = surround), else FLOOR_M above what it stands on
    (a platform seen as the base or beside the dish, or the surround when the release says
    its vessels stand there); None when nothing says it: no base, or (no release, e.g. a
    synthetic rig family) only the surround is seen, and a glass platform may hide between."""
    if rig_floor_m is not None and (g.on_surround or (not g.base_found and g.plane_source == "release")):
        floor = float(rig_floor_m) - g.base   # the platform's height above the surround holds in any pose
        if g.on_surround and g.level is not None and g.level < floor - FLOOR_TOL_M:
            return FLOOR_M   # a level inside lies below that floor: the base seen is a platform filling the frame
        return floor
    if not g.base_found:
        return None
    stand = platform_beside(g)
    if stand is not None:
        return stand + FLOOR_M
    if g.on_surround:   # (with a release floor it returned above)
        return None   # no release says what stands where: a glass platform is possible
    return FLOOR_M


def platform_beside(g: DishGeometry) -> float | None:
    """Height above the base of a level surface seen beside the dish (not reaching the image
    border, so not the base): the platform a big bowl stands on when only a rim of it shows."""
    near = cv2.dilate(g.dish.astype(np.uint8), _disc(_SPLIT_PX)).astype(bool)
    region = g.valid & ~near & (g.heights > _MAX_FLOOR_M) & (g.heights < _PLATFORM_MAX_M)
    lv = levels(g.heights, region, _MIN_LEVEL_PX, max_levels=1)
    return lv[0] if lv else None


def floor_hidden(g: DishGeometry, floor: float | None, rgb: np.ndarray | None = None) -> bool:
    """Step 3, geometry first: the dish's lowest level lies higher above its base than any
    vessel floor can (`floor` + FLOOR_TOL_M, how much the floor varies between dishes): food
    fills the vessel and hides its floor. Inside
    a wall (a bowl) a level only BOWL_TOL_M above the floor is food too when its colours are
    unlike the rim's (a bare floor is the bowl's material): a thin layer of food lies as low as
    a thick plate's floor, so here colour decides."""
    if floor is None or g.level is None:
        return False
    if g.level > floor + FLOOR_TOL_M:
        return True
    if not (g.walled and g.level > floor + BOWL_TOL_M):
        return False
    # the rim band is the bowl's own material (food heaped on a bare floor is not compared)
    return level_like_vessel(rgb, g.inside, g.heights, g.level, g.inside & g.edge) is False


def plate_like(g: DishGeometry, thr: float = 0.004) -> bool:
    """A plate: its lowest level carries a good share of the dish, no wall rises around it, and
    food stands on it (food levelled in a bowl has nothing standing on its level)."""
    if g.level is None or g.walled:
        return False
    h_f = g.heights - g.level
    on_floor = g.inside & (np.abs(h_f) < thr)
    if on_floor.sum() <= _PLATE_MIN_INLIERS * g.inside.sum():
        return False
    # the food stands ON the floor, inside its hull (a bowl's wall rises outside its level)
    on_it = g.inside & ~g.edge & _hull(on_floor) & (h_f > _PLATE_FOOD_M)
    return float(on_it.sum() / max(g.inside.sum(), 1)) >= _PLATE_FOOD_SHARE


def food_on_platform(g: DishGeometry, thr: float, min_area_px: int) -> tuple[np.ndarray, Support]:
    """Nothing stands on the base: food lies on the platform itself."""
    h, valid = g.heights, g.valid
    food = hysteresis(valid & (h > thr), valid & (h > noise_floor(h, valid)))
    return clean_mask(food, min_area_px), Support("platform", list(map(float, g.normal)), float(g.d),
                                                  plane_source=g.plane_source)


def food_on_plate(g: DishGeometry, thr: float, min_area_px: int, rgb: np.ndarray | None
                  ) -> tuple[np.ndarray, Support]:
    """Food rising above a plate's level floor; the rim (the outline band, and everything
    outside the hull of the floor) rises less than _RIM_MAX_M and is not food. Colour votes
    only on the low rises: what stands _PLATE_FOOD_M above the floor off the rim, and its
    edge, is food by its height (a white piece on a white plate)."""
    inside, floor = g.inside, g.floor_h
    h_f = g.heights - floor
    on_floor = inside & (np.abs(h_f) < thr)
    rim = (g.edge | ~_hull(on_floor)) & (h_f < _RIM_MAX_M)
    strong = inside & (h_f > thr) & ~rim
    weak = inside & (h_f > noise_floor(h_f, on_floor)) & ~rim
    tall = cv2.dilate((inside & (h_f > _PLATE_FOOD_M) & ~rim).astype(np.uint8), _disc(_TALL_EDGE_PX)).astype(bool)
    like = colour_like(rgb, inside & (h_f > _SEED_M) & ~rim, on_floor | (inside & rim)) | tall
    food = clean_mask(hysteresis(strong & like, weak & like), min_area_px)
    bare = inside & ~food     # the support's inliers among the dish pixels food does not cover
    inl = float((on_floor & bare).sum() / max(bare.sum(), 1))
    return food, Support("plate_floor", list(map(float, g.normal)), float(g.d) - floor,
                         inlier_fraction=round(inl, 4), plane_source=g.plane_source)


def _hull(region: np.ndarray) -> np.ndarray:
    """Convex hull of a plate's floor (food on it included): outside it is the rim, however wide
    (a sensor shadow beside the plate can hide the outline band)."""
    m = cv2.morphologyEx(region.astype(np.uint8), cv2.MORPH_OPEN, _disc(2))
    pts = cv2.findNonZero(m)
    out = np.zeros(region.shape, np.uint8)
    if pts is None:
        return out.astype(bool) | True
    cv2.fillConvexPoly(out, cv2.convexHull(pts), 1)
    return out.astype(bool)


def rig_mask(depth: np.ndarray, K: np.ndarray, rig_plane: tuple[np.ndarray, float],
             min_height_mm: float | None = None, min_area_px: int | None = None, seed: int = 0,
             rgb: np.ndarray | None = None, rig_floor_m: float | None = None,
             rig_fits: bool = True, plane_is_dish: bool = False) -> tuple[np.ndarray, Support]:
    """Food mask and its support on the fixed rig (the steps in the module docstring).
    `rig_floor_m`: the release's vessel floor above the rig plane (pipeline.masks.vessel_floor;
    a vessel stands there when the platform under it is not seen in depth). `rig_fits` False:
    the release's dishes share no plane, this dish gets its own. min_height_mm, min_area_px:
    params `masks:` (None: its default)."""
    min_height_mm, min_area_px = or_default(MasksConfig, min_height_mm=min_height_mm, min_area_px=min_area_px)
    thr = min_height_mm * 1e-3
    g = dish_geometry(depth, K, rig_plane, seed, own=not rig_fits, plane_is_dish=plane_is_dish)
    if g.dish.sum() < _MIN_DISH_PX:
        return food_on_platform(g, thr, min_area_px)
    floor = vessel_floor(g, rig_floor_m)
    # the release's floor under a glass platform, not this dish's own base
    glass = rig_floor_m is not None and floor is not None and floor > _MAX_FLOOR_M
    food, support = food_in_vessel(g, K, floor, thr, min_area_px, rgb, glass)
    if glass and food.sum() < min_area_px:
        # standing on a glass platform, the dish would hold no food: it stands on the base seen
        # (a platform filling the frame, taken for the surround), its floor FLOOR_M above it
        food, support = food_in_vessel(g, K, FLOOR_M, thr, min_area_px, rgb, False)
    elif floor is None and g.on_surround and g.level is not None and g.level > FLOOR_TOL_M:
        # the vessels' floor is unknown (the release's dishes ruled it out, or a synthetic family
        # shows none: pipeline.masks.vessel_floor) and
        # this dish's lowest level stands high above the surround: the vessel's floor or food hiding
        # it, which geometry cannot tell (colour would have to): the floor may lie that far lower
        support.floor_guess_m = max(support.floor_guess_m or 0.0, round(g.level - FLOOR_M, 5))
    return food, support


def food_in_vessel(g: DishGeometry, K: np.ndarray, floor: float | None, thr: float, min_area_px: int,
                   rgb: np.ndarray | None, glass: bool) -> tuple[np.ndarray, Support]:
    """Steps 3-4 for a dish whose vessel floor lies `floor` above its base (`glass`: the
    release's floor under a glass platform)."""
    if floor_hidden(g, floor, rgb):
        axis = bowl_axis(g, K, rim_height(g))
        out = food_filling_bowl(g, axis, floor, thr, min_area_px, rgb) or \
            food_to_the_wall(g, axis, min_area_px)
        if out is not None:
            return out
    if not g.walled and \
            (g.inside & (np.abs(g.heights - g.floor_h) < thr)).sum() > _PLATE_MIN_INLIERS * g.inside.sum():
        return food_on_plate(g, thr, min_area_px, rgb)
    # an open bowl: a bare floor is looked for near the release's vessel floor only when the
    # dish stands on a glass platform (the floor height is the release's, not the base's)
    return food_in_open_bowl(g, bowl_axis(g, K), thr, min_area_px, rgb, floor if glass else None)
