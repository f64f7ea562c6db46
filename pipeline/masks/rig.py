"""Food masks on the fixed Nutrition5k rig, where the rig plane (the surface around the scale
platform, pipeline.data.rig) is known: the dish is what stands on that plane (rails and cables cut
off, nothing dropped for touching the border); a plate has a level floor and food rises above
it; in a bowl the food rises above the bowl's surface fitted from its visible inner wall
(pipeline.masks.support). A colour check (food seeds vs container) drops rims and walls at food height.
"""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.config import MasksConfig, or_default
from pipeline.geometry import backproject, fit_plane, plane_basis
from pipeline.geometry.plane import LEVEL_BAND_M as _LEVEL_BAND_M
from pipeline.geometry.plane import levels
from pipeline.masks.cleanup import _fill_holes, _largest_component, _noise_floor, clean_mask, hysteresis
from pipeline.masks.levelled import levelled_bowl, radius_at
from pipeline.masks.support import WALL_RISE_M, Support, fit_bowl, surface_height

_OBJ_MIN_M = 0.02        # dish, rails, cables: higher than this above the rig plane
_SPLIT_PX = 15           # erosion radius that cuts rails and cables off the dish
_RIM_PX = 12             # band along a plate's outline where a low rise is rim, not food
_RIM_MAX_M = 0.02        # ... rims rise at most this much above the plate floor
_PLATE_MIN_INLIERS = 0.3  # of the dish's pixels on its floor plane: a plate, else a bowl
_BOWL_INNER = 0.85       # bowl food lies within this fraction of the rim radius
_BOWL_MIN_M = 0.008      # food stands this far above the fitted bowl surface (fit is rough)
_SUPPORT_BAND_M = 0.006  # a bare support pixel lies this close to the fitted support


def _disc(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


_DISH_MIN_M = 0.003      # a dish stands at least this high above its base
_MIN_LEVEL_PX = 1500     # a level surface covers at least this many pixels ...
_MIN_LEVEL_SHARE = 0.03  # ... and this share of the region searched
_BASE_BORDER_SHARE = 0.1  # the base covers at least this share of the image border
_MAX_NORMAL_DEG = 1.0    # the release-wide plane's normal fits a dish within this angle
_PLANE_FIT_PX = 20000
_MAX_FLOOR_M = 0.02      # a plate or bowl floor lies at most this high above the base
_LEVEL_FILL = 0.5        # food levelled in a bowl: its level covers this share of the bowl there
_LEVEL_WALL_M = 0.005    # a bowl wall shows at least this far above food levelled in it
_BARE_FLOOR_M = 0.012    # a bowl's bare floor lies this close to what it stands on
_BARE_FLOOR_MATCH = 0.65  # ... and matches the wall's colours less than this (Bhattacharyya)


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
    return n, d, "dish"


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


def base_level(h: np.ndarray, valid: np.ndarray) -> float | None:
    """The highest level surface (heights `h`) that covers _BASE_BORDER_SHARE of the image
    border: the surround, or the scale platform when it runs out of the frame. None when
    no level surface reaches the border (a bowl filling the frame)."""
    border = np.zeros_like(valid)
    border[[0, -1], :] = border[:, [0, -1]] = True
    need = _BASE_BORDER_SHARE * border.sum()
    for lev in sorted(levels(h, valid, int(0.05 * valid.size)), reverse=True):
        if (valid & border & (np.abs(h - lev) < _LEVEL_BAND_M)).sum() >= need:
            return lev
    return None


def find_dish(above: np.ndarray) -> np.ndarray:
    """The dish (plate/bowl + food) among the things above the rig plane: close sensor holes,
    cut thin rails and cables off by an erosion, keep the largest piece, grow it back."""
    closed = cv2.morphologyEx(above.astype(np.uint8), cv2.MORPH_CLOSE, _disc(6)).astype(bool)
    filled = _fill_holes(closed)
    core = _largest_component(cv2.erode(filled.astype(np.uint8), _disc(_SPLIT_PX)).astype(bool))
    return cv2.dilate(core.astype(np.uint8), _disc(_SPLIT_PX + 2)).astype(bool) & filled


def _circle(points: np.ndarray, iters: int = 4, tol: float = 0.03) -> tuple[np.ndarray, float]:
    """Circle through 2-D points (Kasa least squares), refitted on the points within
    `tol` x radius of it (rails and cables that join the outline are not the rim)."""
    keep = np.ones(len(points), dtype=bool)
    for _ in range(iters):
        P = points[keep]
        A = np.c_[2 * P, np.ones(len(P))]
        sol, *_ = np.linalg.lstsq(A, (P ** 2).sum(axis=1), rcond=None)
        c = sol[:2]
        rad = float(np.sqrt(max(sol[2] + c @ c, 0.0)))
        new = np.abs(np.linalg.norm(points - c, axis=1) - rad) < tol * rad
        if new.sum() < 20:
            break
        keep = new
    return c, rad


_COLOUR_BINS = 12        # per Lab channel, for the food / container colour histograms
_FOOD_PRIOR = 3.0        # a colour counts as food unless it is this much more typical of the container
_SEED_M = 0.02           # pixels this high above the support are surely food (colour samples)


def colour_like(rgb: np.ndarray | None, food: np.ndarray, container: np.ndarray) -> np.ndarray:
    """Pixels whose colour is at least as typical of `food` samples as of `container` samples
    (Lab histograms): a plate rim or bowl wall at food height keeps the container's colour.
    All True without an image or without enough samples of either."""
    if rgb is None or food.sum() < 200 or container.sum() < 200:
        return np.ones(food.shape, dtype=bool)
    idx = _colour_bins(rgb)
    pf, pc = _histogram(idx, food), _histogram(idx, container)
    return _FOOD_PRIOR * pf[idx] >= pc[idx]


def _colour_bins(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel Lab histogram bin (_COLOUR_BINS per channel)."""
    lab = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2LAB).astype(np.int32)
    q = lab * _COLOUR_BINS // 256
    return (q[..., 0] * _COLOUR_BINS + q[..., 1]) * _COLOUR_BINS + q[..., 2]


def _histogram(idx: np.ndarray, region: np.ndarray) -> np.ndarray:
    return np.bincount(idx[region], minlength=_COLOUR_BINS ** 3) / max(int(region.sum()), 1)


def colour_match(rgb: np.ndarray | None, a: np.ndarray, b: np.ndarray) -> float | None:
    """Bhattacharyya coefficient of the Lab colour histograms of regions a and b (1: the
    same colours); None without an image or with under 200 pixels in either."""
    if rgb is None or a.sum() < 200 or b.sum() < 200:
        return None
    idx = _colour_bins(rgb)
    return round(float(np.sum(np.sqrt(_histogram(idx, a) * _histogram(idx, b)))), 4)


def _bowl_axis(dish: np.ndarray, inside: np.ndarray, h_rig: np.ndarray, K: np.ndarray,
               n_rig: np.ndarray, d_rig: float) -> tuple[np.ndarray, float, float, np.ndarray, np.ndarray]:
    """A bowl's axis (centre in the plane basis e1, e2), rim radius and rim height: a circle
    through the dish outline, back-projected to the rim's height."""
    e1, e2 = plane_basis(np.asarray(n_rig, float))
    cs, _ = cv2.findContours(dish.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    outline = max(cs, key=cv2.contourArea)[:, 0, :]
    H, W = dish.shape
    c = outline[(outline[:, 0] > 2) & (outline[:, 0] < W - 3) & (outline[:, 1] > 2) & (outline[:, 1] < H - 3)]
    if len(c) < 20:        # the bowl runs out of the frame all round: use the whole outline
        c = outline
    rim_h = float(np.percentile(h_rig[inside], 95))
    rays = np.linalg.solve(K, np.c_[c, np.ones(len(c))].T).T       # rays of outline pixels
    t = -(d_rig - rim_h) / (rays @ n_rig)                          # meet the rim's level
    P = rays * t[:, None]
    centre, radius = _circle(np.c_[P @ e1, P @ e2])
    return centre, radius, rim_h, e1, e2


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


def _bare_floor(rgb: np.ndarray | None, inside: np.ndarray, h: np.ndarray, level: float) -> bool:
    """The level surface at `level` has the colours of the wall above it: a bowl's bare floor."""
    m = colour_match(rgb, inside & (np.abs(h - level) < _LEVEL_BAND_M), inside & (h > level + 0.005))
    return m is not None and m >= _BARE_FLOOR_MATCH


def _levelled(X: np.ndarray, inside: np.ndarray, h: np.ndarray, level: float, n: np.ndarray,
              d: float, axis: tuple, min_area_px: int, rgb: np.ndarray | None = None,
              floor_m: float | None = None) -> tuple[np.ndarray, Support] | None:
    """Food levelled in a bowl at height `level` (pipeline.masks.levelled): the mask is the
    level surface and what stands on it inside the wall (wall pixels add ~0 volume: the fitted
    surface runs through them)."""
    centre, radius, _, e1, e2 = axis
    r = np.hypot(X @ e1 - centre[0], X @ e2 - centre[1])
    rim_top = float(np.percentile(h[inside], 99.5))    # the rim's top, not the wall below it
    sup = levelled_bowl(r[inside], h[inside], level, rim_top, n, d, centre, floor_m)
    if sup is None:
        return None
    disc = inside & (np.nan_to_num(r, nan=np.inf) < radius_at(sup, level) - 0.005)
    if (disc & (np.abs(h - level) < _LEVEL_BAND_M)).sum() < _LEVEL_FILL * disc.sum():
        return None   # not a level surface from wall to wall (heaped food, a bowl's bare floor)
    if _bare_floor(rgb, inside, h, level):
        return None   # the level looks like the bowl's wall: its bare floor
    food = inside & (np.nan_to_num(r, nan=np.inf) < radius_at(sup, level) + 0.003) & (h > level - _LEVEL_BAND_M)
    return clean_mask(food, min_area_px), sup


def rig_mask(depth: np.ndarray, K: np.ndarray, rig_plane: tuple[np.ndarray, float],
             min_height_mm: float | None = None, min_area_px: int | None = None, seed: int = 0,
             rgb: np.ndarray | None = None, rig_floor_m: float | None = None,
             rig_fits: bool = True) -> tuple[np.ndarray, Support]:
    """Food mask and its support on the fixed rig: the dish is what stands on the rig plane;
    a plate has a flat floor (most of the dish on one level plane), food rises above it; in a
    bowl the food rises above the bowl's fitted inner surface. Nothing is dropped for
    touching the image border (rails and cables do, food on a big plate may). `rig_floor_m`:
    the release's typical vessel floor above the rig plane (a bowl whose floor is hidden stands
    there when the platform under it is not seen in depth). min_height_mm, min_area_px: params
    `masks:` (None: its default)."""
    min_height_mm, min_area_px = or_default(MasksConfig, min_height_mm=min_height_mm, min_area_px=min_area_px)
    depth = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    thr = min_height_mm * 1e-3
    X = backproject(depth, K)
    n_rig, d_rig, plane_source = dish_plane(X, valid, rig_plane, seed, own=not rig_fits)
    h_rig = np.nan_to_num(X @ n_rig + d_rig, nan=-1.0)
    # the base: the highest level surface running out of the frame (the surround, or the scale
    # platform when it is in view); the dish is what stands on it
    base = base_level(h_rig, valid)
    # a glass platform is not seen in depth: vessels stand the release's floor height above the
    # surround; a platform seen is the base itself (vessel floors a few mm above it)
    floor_m = rig_floor_m if (rig_floor_m and plane_source == "release" and base is not None
                              and abs(base) < _MAX_FLOOR_M) else None
    platform_seen = base is not None and base > _MAX_FLOOR_M   # the base is a platform, not the surround
    if base is not None:
        d_rig -= base
        h_rig = h_rig - base
    dish = find_dish(valid & (h_rig > _DISH_MIN_M))
    if dish.sum() < 1000:   # nothing stands on the base: food lies on the platform itself
        food = hysteresis(valid & (h_rig > thr), valid & (h_rig > _noise_floor(h_rig, valid)))
        return clean_mask(food, min_area_px), Support("platform", list(map(float, n_rig)), float(d_rig),
                                                      plane_source=plane_source)
    inside = dish & valid
    # a plate floor is the lowest level surface of the dish (all food stands on it), whatever
    # covers more of it
    lv = levels(h_rig, inside & (h_rig > _DISH_MIN_M), max(_MIN_LEVEL_PX, int(_MIN_LEVEL_SHARE * inside.sum())))
    floor_h = min(lv) if lv else float(np.median(h_rig[inside]))
    n_f, d_f = np.asarray(n_rig, float), float(d_rig) - floor_h
    h_f = h_rig - floor_h
    on_floor = inside & (np.abs(h_f) < thr)
    inl = float(on_floor.sum() / max(inside.sum(), 1))
    edge = dish & ~cv2.erode(dish.astype(np.uint8), _disc(_RIM_PX)).astype(bool)  # the outline band
    band = inside & edge
    rise = float(np.median(h_f[band])) if band.any() else 0.0   # the outline above the level
    walled = rise > _RIM_MAX_M
    ref = floor_m if floor_m is not None else (0.0 if platform_seen else None)  # where vessels stand
    high = ref is not None and floor_h > ref + _MAX_FLOOR_M and rise > _LEVEL_WALL_M
    # far above any vessel's floor: food levelled in a bowl? (on a release only: its vessel floor
    # is known; synthetic rig families keep the bowl surface continued from the wall, flagged)
    if rig_floor_m is not None and lv and ((walled and floor_h > _MAX_FLOOR_M) or high):
        out = _levelled(X, inside, h_rig, floor_h, n_f, float(d_rig),  # food levelled in a bowl?
                        _bowl_axis(dish, inside, h_rig, K, n_rig, d_rig), min_area_px, rgb, floor_m)
        if out is not None:
            out[1].plane_source = plane_source
            return out
    if inl > _PLATE_MIN_INLIERS and not walled:
        rim = (edge | ~_hull(on_floor)) & (h_f < _RIM_MAX_M)
        strong = inside & (h_f > thr) & ~rim
        weak = inside & (h_f > _noise_floor(h_f, on_floor)) & ~rim
        like = colour_like(rgb, inside & (h_f > _SEED_M) & ~rim, on_floor | (inside & rim))
        food = clean_mask(hysteresis(strong & like, weak & like), min_area_px)
        bare = inside & ~food     # the support's inliers among the dish pixels food does not cover
        inl = float((on_floor & bare).sum() / max(bare.sum(), 1))
        return food, Support("plate_floor", list(map(float, n_f)), float(d_f),
                             inlier_fraction=round(inl, 4), plane_source=plane_source)
    centre, radius, rim_h, e1, e2 = _bowl_axis(dish, inside, h_rig, K, n_rig, d_rig)
    # a bowl's floor seen (its lowest level, low above the base) is the surface's lowest level
    near_floor = floor_m is not None and abs(floor_h - floor_m) <= _BARE_FLOOR_M
    lift = floor_h if lv and (floor_h <= _BARE_FLOOR_M or near_floor) and _bare_floor(rgb, inside, h_rig, floor_h) \
        else 0.0
    sup = fit_bowl(X[inside], np.asarray(n_rig, float), float(d_rig) - lift, centre, _BOWL_INNER * radius)
    sup.plane_source = plane_source
    a, b = X @ e1, X @ e2
    r = np.hypot(a - centre[0], b - centre[1])
    h_b = np.nan_to_num(h_rig - lift - surface_height(sup, a, b), nan=-1.0)
    within = inside & (np.nan_to_num(r, nan=np.inf) < _BOWL_INNER * radius)
    strong = within & (h_b > max(thr, _BOWL_MIN_M))
    weak = within & (h_b > thr)
    like = colour_like(rgb, within & (h_b > _SEED_M), inside & ~within | (within & (h_b < thr)))
    food = clean_mask(hysteresis(strong & like, weak & like), min_area_px)
    food = _heap(food)
    wall = within & ~food
    # the bare floor is the bowl's own material; where the fitted surface shows an inner wall,
    # a level surface that looks unlike the wall above it is food filling the bowl (its floor
    # hidden: the label is a guess). A surface with no wall (a plate's floor) is not checked.
    if max(sup.heights) - min(sup.heights) > WALL_RISE_M:
        sup.floor_wall_colour = colour_match(rgb, wall & (np.abs(h_b) < _SUPPORT_BAND_M),
                                             inside & ~within)
    sup.inlier_fraction = round(float(np.mean(np.abs(h_b[wall]) < _SUPPORT_BAND_M)), 4) \
        if wall.any() else 0.0
    return food, sup


def _heap(mask: np.ndarray, min_share: float = 0.1) -> np.ndarray:
    """Food in a bowl slides into one heap: drop pieces under `min_share` of the largest
    (patches of a steep wall that the rough surface fit leaves above it)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    area = stats[1:, cv2.CC_STAT_AREA]
    return np.isin(labels, 1 + np.flatnonzero(area >= min_share * area.max()))
