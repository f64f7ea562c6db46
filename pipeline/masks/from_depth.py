"""Food masks from the measured depth, no model needed: the table is the dominant plane of the
scene, the plate (or bowl floor) the dominant plane of what stands on it, and food what rises above
the plate. Plate rims and bowl walls also rise above the floor, but they run round the vessel's
outer edge, so regions touching that edge are dropped. Seeds higher than `min_height_mm` grow down
to the support's noise floor (hysteresis), so thin food keeps its low margins. On the fixed
Nutrition5k rig the support is found differently (`pipeline.masks.rig`); with no release-wide rig
plane (synthetic data) a deep bowl on the dish's own surround plane gets that path's bowl surface."""
from __future__ import annotations

import cv2
import numpy as np

from pipeline import suspect
from pipeline.config import MasksConfig, SuspectConfig, build, or_default
from pipeline.geometry import backproject, fit_plane, height_above_plane
from pipeline.geometry.plane import LEVEL_BAND_M
from pipeline.masks.cleanup import (
    clean_mask,
    drop_touching,
    fill_holes,
    grow_seeds,
    image_border,
    largest_component,
    noise_floor,
    ring_fraction,
)
from pipeline.masks.support import Support

_MAX_FIT_POINTS = 20000
_MAX_FLOOR_HEIGHT_M = 0.08  # a plate top / bowl floor sits at most this high above the table
                            # (a scale platform like Nutrition5k's raises it ~5 cm)
_DEEP_BOWL_M = 0.03         # a bowl surface rising more than this is a deep vessel


def _plane_on(points: np.ndarray, region: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
    """Robust plane through the back-projected `points` (HxWx3) of `region` (subsampled)."""
    pts = points[region]
    if len(pts) > _MAX_FIT_POINTS:
        pts = pts[np.random.default_rng(seed).choice(len(pts), _MAX_FIT_POINTS, replace=False)]
    return fit_plane(pts, seed=seed)


def geometry_mask(depth: np.ndarray, K: np.ndarray, min_height_mm: float | None = None,
                  min_area_px: int | None = None, seed: int = 0, grow: bool = True) -> np.ndarray:
    """Food = connected regions higher than `min_height_mm` above the local support plane,
    grown (`grow`) down to the support's noise floor so thin and spreading food keeps its
    low margins (hysteresis). min_height_mm, min_area_px: params `masks:` (None: its default)."""
    min_height_mm, min_area_px = or_default(MasksConfig, min_height_mm=min_height_mm, min_area_px=min_area_px)
    depth = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    if valid.sum() < 100:
        raise ValueError("depth has fewer than 100 valid pixels: cannot find the table")
    thr = min_height_mm * 1e-3
    points = backproject(depth, K)
    table_n, table_d = _plane_on(points, valid, seed)
    h_table = height_above_plane(depth, K, table_n, table_d)
    ht = np.nan_to_num(h_table, nan=-1.0)
    above = valid & (ht > thr)
    border = image_border(valid.shape)
    vessel = fill_holes(largest_component(above))
    # Default: the dominant plane is the support; rims/walls show up as rings or reach the frame.
    low = noise_floor(ht, valid & (np.abs(ht) < thr)) if grow else thr
    food = drop_touching(clean_mask(grow_seeds(above, valid & (ht > low), border), min_area_px), border)
    if vessel.sum() > 0.02 * depth.size:
        # Is the biggest thing above it a plate/bowl? Then its floor is the dominant plane
        # inside it and the food stands on that floor, surrounded by it.
        floor_n, floor_d = _plane_on(points, vessel & valid, seed)
        h_floor = np.nan_to_num(height_above_plane(depth, K, floor_n, floor_d), nan=-1.0)
        on_floor = (np.abs(h_floor) < thr) & vessel & valid
        eroded = cv2.erode(vessel.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        edge = (vessel & ~eroded) | border
        low_f = noise_floor(h_floor, on_floor) if grow else thr
        on_vessel = clean_mask(grow_seeds(vessel & valid & (h_floor > thr),
                                      vessel & valid & (h_floor > low_f), edge), min_area_px)
        floor_h = np.nanmedian(h_table[on_floor]) if on_floor.any() else np.inf
        level = abs(float(np.dot(floor_n, table_n))) > np.cos(np.deg2rad(15))
        if (level and floor_h < _MAX_FLOOR_HEIGHT_M and on_vessel.any()
                and on_floor.sum() > 0.25 * (vessel & valid).sum()
                and ring_fraction(on_vessel, on_floor) > 0.4):
            food = on_vessel
    return food


_UNFITTED = object()   # food_mask: the dish's own surround plane is not fitted yet


def food_mask(depth: np.ndarray, K: np.ndarray, min_height_mm: float | None = None,
              min_area_px: int | None = None, rig_plane: tuple[np.ndarray, float] | None = None,
              rgb: np.ndarray | None = None, seed: int = 0,
              suspect_cfg: SuspectConfig | None = None, rig_floor_m: float | None = None,
              rig_fits: bool = True, surround_plane: object = _UNFITTED) -> tuple[np.ndarray, Support]:
    """The offline food mask and its support: rig-aware when the rig plane is known
    (Nutrition5k), else the per-image geometry mask (support: plane fitted around the food).
    `suspect_cfg`: params `suspect:` (a bowl whose floor is hidden keeps its bowl support);
    `rig_floor_m`: the release's typical vessel floor above its rig plane (ingest); `rig_fits`
    False: the release's dishes do not share one plane, each dish gets its own.
    `surround_plane`: with no rig plane, this dish's own surround plane when the caller has
    already fitted it (`dish_surround_plane`, None: none usable), so it is fitted once.
    min_height_mm, min_area_px: params `masks:` (None: its default)."""
    from pipeline.masks.rig import rig_mask
    min_height_mm, min_area_px = or_default(MasksConfig, min_height_mm=min_height_mm, min_area_px=min_area_px)
    if rig_plane is not None:
        return rig_mask(depth, K, rig_plane, min_height_mm, min_area_px, seed, rgb, rig_floor_m, rig_fits)
    # no release-wide rig plane (synthetic): a deep vessel standing on a level surround seen
    # in this image gets the rig's bowl-surface support; anything else the per-image geometry
    plane = dish_surround_plane(depth, K, seed, build(SuspectConfig, suspect_cfg, "suspect").max_rig_tilt_deg) \
        if surround_plane is _UNFITTED else surround_plane
    if plane is not None and inside_vessel(depth, K, plane):
        # the farthest level surface is enclosed by the vessel (a bowl filling the frame: it is
        # the food or the bowl's floor): nothing seen gives the heights, the label is a guess
        return geometry_mask(depth, K, min_height_mm, min_area_px, seed), Support("plane", uncertainty=1.0)
    if plane is not None:
        food, support = rig_mask(depth, K, plane, min_height_mm, min_area_px, seed, rgb, rig_floor_m,
                                 plane_is_dish=True)
        # a deep bowl, or food filling a bowl (kept so that it is flagged bowl_floor)
        if support.kind == "bowl_surface" and (_bowl_depth(support) > _DEEP_BOWL_M
                                               or suspect.floor_hidden(support.floor_wall_colour, suspect_cfg)):
            return food, support
    return geometry_mask(depth, K, min_height_mm, min_area_px, seed), Support("plane")


def dish_surround_plane(depth: np.ndarray, K: np.ndarray, seed: int = 0,
                        max_tilt_deg: float | None = None) -> tuple[np.ndarray, float] | None:
    """This dish's own surround plane (no release-wide rig plane: synthetic rig families), or
    None when too little level surround shows (pipeline.data.rig.dish_rig_plane; max_tilt_deg:
    params `suspect.max_rig_tilt_deg`, None: its default)."""
    from pipeline.data.rig import dish_rig_plane
    from pipeline.masks.rig import lowest_level
    plane = dish_rig_plane(depth, K, seed, max_tilt_deg)
    if plane is None:
        return None
    return lowest_level(backproject(depth, K), np.isfinite(depth) & (depth > 0), *plane)


_SURROUND_BORDER_SHARE = 0.05   # a surround plane's surface covers this share of the image border


def inside_vessel(depth: np.ndarray, K: np.ndarray, plane: tuple[np.ndarray, float]) -> bool:
    """The fitted far plane lies inside a vessel filling the frame (it is the food or the
    vessel's floor), not on a surround: its surface barely reaches the image border and the
    border stands a deep vessel's wall (_DEEP_BOWL_M) above it, at the median."""
    valid = np.isfinite(depth) & (depth > 0)
    h = np.nan_to_num(backproject(depth, K) @ np.asarray(plane[0], float) + float(plane[1]), nan=np.inf)
    border = image_border(valid.shape)
    on_border = valid & border
    if (on_border & (np.abs(h) < LEVEL_BAND_M)).sum() >= _SURROUND_BORDER_SHARE * border.sum():
        return False
    return bool(on_border.any() and np.median(h[on_border]) > _DEEP_BOWL_M)


def _bowl_depth(support: Support) -> float:
    """Rise (m) of a fitted bowl surface from its lowest point to the highest wall fitted."""
    return float(max(support.heights) - min(support.heights)) if support.heights else 0.0
