"""Food in a bowl on the fixed rig: the bowl's axis from its outline, then one of two supports.

- Open bowl (its floor is seen, or nothing says it is hidden): the surface under the food is the
  lower envelope of the visible inner wall (pipeline.masks.support.fit_bowl).
- Bowl whose floor the food hides (the lowest level surface inside the rim lies higher than any
  vessel floor can on this rig, pipeline.masks.rig): the inner wall seen above the food is
  fitted with the bowl shapes of pipeline.masks.levelled, anchored at the floor height the rig
  gives; the food is what stands above that surface: a level fill, a heap, or both.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from pipeline.geometry import plane_basis
from pipeline.geometry.plane import LEVEL_BAND_M
from pipeline.masks.cleanup import clean_mask, hysteresis
from pipeline.masks.colour import colour_like, colour_match
from pipeline.masks.levelled import MIN_WALL_PX, cavity_ml, levelled_bowl, radius_at
from pipeline.masks.support import WALL_RISE_M, Support, fit_bowl, surface_height

if TYPE_CHECKING:
    from pipeline.masks.rig import DishGeometry

BOWL_INNER = 0.85        # bowl food lies within this fraction of the rim radius
BOWL_MIN_M = 0.008       # food seeds stand this far above the fitted bowl surface (fit is rough)
SUPPORT_BAND_M = 0.006   # a bare support pixel lies this close to the fitted support
SEED_M = 0.02            # pixels this high above the support are surely food (colour samples)
LEVEL_FILL = 0.5         # food levelled in a bowl: its level covers this share of the bowl there
BARE_FLOOR_M = 0.012     # a bowl's bare floor lies this close to what it stands on
BARE_FLOOR_MATCH = 0.65  # ... and matches the wall's colours at least this well (Bhattacharyya)
ENVELOPE_BIN_M = 0.005   # radial bins of the wall's lower envelope
WALL_BAND_M = 0.006      # a wall pixel lies this close to the lower envelope (food stands above it)
CONTACT_FOOT_M = (0.0015, 0.006)  # the wall's foot: this far above the food's level (m)


class BowlAxis:
    """A bowl's axis (centre in the base plane's e1, e2 coordinates), rim radius and rim height."""

    def __init__(self, centre: np.ndarray, radius: float, rim_h: float, e1: np.ndarray, e2: np.ndarray):
        self.centre, self.radius, self.rim_h, self.e1, self.e2 = centre, radius, rim_h, e1, e2

    def radii(self, X: np.ndarray) -> np.ndarray:
        """Distance of each point from the axis (NaN points give +inf)."""
        r = np.hypot(X @ self.e1 - self.centre[0], X @ self.e2 - self.centre[1])
        return np.nan_to_num(r, nan=np.inf)


def fit_circle(points: np.ndarray, iters: int = 4, tol: float = 0.03) -> tuple[np.ndarray, float]:
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


def rim_height(g: DishGeometry) -> float:
    """The rim's height above the base: the top of the dish's outline band (food heaped above
    the rim does not reach the outline)."""
    band = g.inside & g.edge
    return float(np.percentile(g.heights[band], 90)) if band.sum() >= 50 else \
        float(np.percentile(g.heights[g.inside], 95))


def bowl_axis(g: DishGeometry, K: np.ndarray, rim_h: float | None = None) -> BowlAxis:
    """The axis through the centre of a circle fitted to the dish outline, back-projected to
    the rim's height (default: the dish's 95th height percentile; outline pixels on the image
    border are left out when enough remain)."""
    e1, e2 = plane_basis(np.asarray(g.normal, float))
    cs, _ = cv2.findContours(g.dish.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    outline = max(cs, key=cv2.contourArea)[:, 0, :]
    H, W = g.dish.shape
    c = outline[(outline[:, 0] > 2) & (outline[:, 0] < W - 3) & (outline[:, 1] > 2) & (outline[:, 1] < H - 3)]
    if len(c) < 20:        # the bowl runs out of the frame all round: use the whole outline
        c = outline
    rim_h = float(np.percentile(g.heights[g.inside], 95)) if rim_h is None else float(rim_h)
    rays = np.linalg.solve(K, np.c_[c, np.ones(len(c))].T).T       # rays of outline pixels
    t = -(g.d - rim_h) / (rays @ g.normal)                          # meet the rim's level
    P = rays * t[:, None]
    centre, radius = fit_circle(np.c_[P @ e1, P @ e2])
    return BowlAxis(centre, radius, rim_h, e1, e2)


def level_like_vessel(rgb: np.ndarray | None, inside: np.ndarray, h: np.ndarray, level: float,
                      vessel: np.ndarray) -> bool | None:
    """Whether the level surface at `level` has the colours of the `vessel`'s own material (the
    wall above it, or the rim band): True a bare floor, False food; None when colour cannot
    tell (no image, too few pixels). The one colour check on a bowl's level."""
    m = colour_match(rgb, inside & (np.abs(h - level) < LEVEL_BAND_M), vessel)
    return None if m is None else bool(m >= BARE_FLOOR_MATCH)


def bare_floor(rgb: np.ndarray | None, inside: np.ndarray, h: np.ndarray, level: float) -> bool:
    """The level surface at `level` has the colours of the wall above it: a bowl's bare floor."""
    return level_like_vessel(rgb, inside, h, level, inside & (h > level + 0.005)) is True


def one_heap(mask: np.ndarray, min_share: float = 0.1) -> np.ndarray:
    """Food in a bowl slides into one heap: drop pieces under `min_share` of the largest
    (patches of a steep wall that the rough surface fit leaves above it)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    area = stats[1:, cv2.CC_STAT_AREA]
    return np.isin(labels, 1 + np.flatnonzero(area >= min_share * area.max()))


def food_in_open_bowl(g: DishGeometry, axis: BowlAxis, thr: float, min_area_px: int,
                      rgb: np.ndarray | None, floor: float | None) -> tuple[np.ndarray, Support]:
    """Food above the lower envelope of the visible wall (the floor is seen, or nothing says
    it is hidden). A bare floor seen low above the base (or near the release's vessel floor,
    `floor`) and coloured like the wall lifts the surface's lowest level to it."""
    X, inside, h = g.X, g.inside, g.heights
    near_floor = floor is not None and g.level is not None and abs(g.level - floor) <= BARE_FLOOR_M
    lift = g.level if g.level is not None and (g.level <= BARE_FLOOR_M or near_floor) \
        and bare_floor(rgb, inside, h, g.level) else 0.0
    sup = fit_bowl(X[inside], np.asarray(g.normal, float), float(g.d) - lift, axis.centre,
                   BOWL_INNER * axis.radius)
    sup.plane_source = g.plane_source
    r = axis.radii(X)
    h_b = np.nan_to_num(h - lift - surface_height(sup, X @ axis.e1, X @ axis.e2), nan=-1.0)
    within = inside & (r < BOWL_INNER * axis.radius)
    food = _above_surface(h_b, within, inside, thr, min_area_px, rgb)
    wall = within & ~food
    # the bare floor is the bowl's own material; where the fitted surface shows an inner wall,
    # a level surface that looks unlike the wall above it is food filling the bowl (its floor
    # hidden: the label is a guess). A surface with no wall (a plate's floor) is not checked.
    if max(sup.heights) - min(sup.heights) > WALL_RISE_M:
        sup.floor_wall_colour = colour_match(rgb, wall & (np.abs(h_b) < SUPPORT_BAND_M), inside & ~within)
    sup.inlier_fraction = round(float(np.mean(np.abs(h_b[wall]) < SUPPORT_BAND_M)), 4) if wall.any() else 0.0
    return food, sup


def _above_surface(h_b: np.ndarray, within: np.ndarray, inside: np.ndarray, thr: float,
                   min_area_px: int, rgb: np.ndarray | None) -> np.ndarray:
    """Food: seeds BOWL_MIN_M above the bowl surface grown down to `thr`, confirmed by colour
    (surely-food samples against the wall), kept as one heap."""
    strong = within & (h_b > max(thr, BOWL_MIN_M))
    weak = within & (h_b > thr)
    like = colour_like(rgb, within & (h_b > SEED_M), inside & ~within | (within & (h_b < thr)))
    return one_heap(clean_mask(hysteresis(strong & like, weak & like), min_area_px))


def wall_pixels(r: np.ndarray, h: np.ndarray, region: np.ndarray, r_max: float) -> np.ndarray:
    """Pixels of `region` on the lower envelope of the bowl's inside (per radial bin the 10th
    percentile height, its running minimum from the rim inwards): the wall, where food
    standing in the bowl does not cover it."""
    edges = np.arange(0.0, r_max + ENVELOPE_BIN_M, ENVELOPE_BIN_M)
    b = np.clip(np.digitize(r, edges) - 1, 0, len(edges) - 2)
    within = region & (r < r_max)
    low = np.full(len(edges) - 1, np.inf)
    for k in np.unique(b[within]):
        s = h[within & (b == k)]
        if len(s) >= 50:
            low[k] = np.percentile(s, 10)
    env = np.minimum.accumulate(low[::-1])[::-1]
    return within & (h <= env[b] + WALL_BAND_M)


def food_filling_bowl(g: DishGeometry, axis: BowlAxis, floor: float, thr: float,
                      min_area_px: int, rgb: np.ndarray | None) -> tuple[np.ndarray, Support] | None:
    """Food hiding the bowl's floor (its lowest level g.level lies far above `floor`, the vessel
    floor height on this rig): the wall seen above the food, fitted with the bowl shapes and
    anchored at `floor` (pipeline.masks.levelled), is the surface under the food. The mask is
    the level surface from wall to wall when the food is levelled, else what rises above that
    surface. None when too little wall is seen to fit. Colour does not decide here (a white
    food in a white bowl): the height does."""
    X, inside, h, level = g.X, g.inside, g.heights, float(g.level)
    axis, r, on_level = _level_axis(g, axis)
    wall = wall_pixels(r, h, inside, axis.radius)
    # where the food meets the wall: only needed when little wall shows above it
    seen = wall & (h > level + 0.004) & (h < axis.rim_h - 0.002)
    contact = _level_contact(g, axis, r, on_level) \
        if seen.sum() < 4 * MIN_WALL_PX or axis.rim_h - level < 0.012 else None
    sup = levelled_bowl(r[wall], h[wall], level, axis.rim_h, g.normal, float(g.d), axis.centre, floor,
                        contact_r=contact)
    if sup is None:
        return None
    sup.plane_source = g.plane_source
    r_level = radius_at(sup, level)
    disc = inside & (r < r_level - 0.005)
    at_level = inside & (r < r_level + 0.003) & (np.abs(h - level) < LEVEL_BAND_M)
    if (disc & at_level).sum() >= LEVEL_FILL * disc.sum():
        food = _level_to_wall(g, r, r_level, min_area_px)
    else:   # a heap on the level fill, or pieces: what rises above the bowl surface, and the
        # level round it (food by its height; its colour may differ from the heap's)
        h_b = np.nan_to_num(h - surface_height(sup, X @ axis.e1, X @ axis.e2), nan=-1.0)
        food = _above_surface(h_b, inside & (r < max(r_level, BOWL_INNER * axis.radius)), inside, thr,
                              min_area_px, rgb)
        food = clean_mask(food | at_level, min_area_px)
    sup.uncertainty = _share_of_total(sup, food, X, h, level, float(g.K[0, 0] * g.K[1, 1]))
    return food, sup


def food_to_the_wall(g: DishGeometry, axis: BowlAxis, min_area_px: int) -> tuple[np.ndarray, Support] | None:
    """Food levelled so near the rim that too little wall shows above it to fit a bowl shape
    (food_filling_bowl gives None): the level from wall to wall is the food, by its height, but
    nothing seen says how deep the cavity under it goes. The support is the plane with an
    uncertainty of 1 (suspect bowl_floor: the dish is not used), not an empty plate. None when
    no level meets the wall."""
    axis, r, on_level = _level_axis(g, axis)
    contact = _level_contact(g, axis, r, on_level)
    if contact is None:
        return None
    return _level_to_wall(g, r, contact, min_area_px), Support("plane", uncertainty=1.0, plane_source=g.plane_source)


def _level_to_wall(g: DishGeometry, r: np.ndarray, r_wall: float, min_area_px: int) -> np.ndarray:
    """Food levelled in a bowl: the level and all above it out to where it meets the wall
    (radius `r_wall` about the axis, + 3 mm)."""
    return clean_mask(g.inside & (r < r_wall + 0.003) & (g.heights > float(g.level) - LEVEL_BAND_M), min_area_px)


def _level_axis(g: DishGeometry, axis: BowlAxis) -> tuple[BowlAxis, np.ndarray, np.ndarray]:
    """The axis centred on the food's level surface, every pixel's radius from it, and the
    level's pixels (within the rim seen from the outline's axis)."""
    on_level = g.inside & (np.abs(g.heights - float(g.level)) < LEVEL_BAND_M) & (axis.radii(g.X) < axis.radius)
    axis = _centred_on(axis, g.X, on_level)
    return axis, axis.radii(g.X), on_level


def _level_contact(g: DishGeometry, axis: BowlAxis, r: np.ndarray, on_level: np.ndarray) -> float | None:
    """Radius where the food's level meets the wall: the line r(h) through the wall's foot
    (pixels CONTACT_FOOT_M above the level, within 10 mm of its edge; refitted without those
    3 robust sigmas off) at h = level. The level's own edge (the 95th percentile radius of its
    flattest pixels) only finds that foot: a disc's 95th percentile radius lies 2.5 % inside
    its edge, and the wall's foot in the level's band of heights pulls it out by the wall's
    slope (-1.3 mm on round bowls, 0 on cones; the foot's line: 0.1 +- 0.1 mm, a levelled bowl's
    cavity follows it ~20 % per mm). That edge is the answer when the foot is not seen (fewer
    than 50 pixels, or a line meeting the level 5 mm off it); None when fewer than 50 flat pixels."""
    level = float(g.level)
    dh = g.heights - level
    flat = on_level & (r < axis.radius) & (np.abs(dh) < 0.001)
    if flat.sum() < 50:
        return None
    edge = float(np.percentile(r[flat], 95))
    lo, hi = CONTACT_FOOT_M[0], min(CONTACT_FOOT_M[1], axis.rim_h - level - 0.002)
    foot = g.inside & (r > edge - 0.01) & (r < axis.radius) & (dh > lo) & (dh < hi)
    if foot.sum() < 50:
        return edge
    rr, hh = r[foot], dh[foot]
    keep = np.ones(len(rr), dtype=bool)
    for _ in range(3):
        if keep.sum() < 20:
            return edge
        slope, contact = np.polyfit(hh[keep], rr[keep], 1)
        res = rr - (contact + slope * hh)
        keep = np.abs(res) < 3 * max(1.4826 * float(np.median(np.abs(res[keep]))), 3e-4)
    return float(contact) if abs(contact - edge) < 0.005 else edge


def _centred_on(axis: BowlAxis, X: np.ndarray, on_level: np.ndarray) -> BowlAxis:
    """The axis moved to the centre of the food's level surface (a disc, or a ring round a
    heap, concentric with the bowl): the outline circle is a few mm off where rails, the frame
    or the platform's edge touch it, and an axis off by d widens every fitted radius by ~d."""
    if on_level.sum() < 500:
        return axis
    P = X[on_level]
    a, b = P @ axis.e1, P @ axis.e2
    ok = np.isfinite(a) & np.isfinite(b)
    pts = np.c_[a[ok], b[ok]]
    ring = cv2.convexHull(pts.astype(np.float32))[:, 0, :].astype(float)   # the level's outline
    centre, _ = fit_circle(ring) if len(ring) >= 20 else (pts.mean(axis=0), 0.0)
    if np.hypot(*(centre - axis.centre)) > 0.25 * axis.radius:
        return axis    # not a disc round the axis (a level cut by the frame)
    return BowlAxis(centre, axis.radius, axis.rim_h, axis.e1, axis.e2)


def _share_of_total(sup: Support, food: np.ndarray, X: np.ndarray, h: np.ndarray, level: float,
                    fxfy: float) -> float:
    """The cavity's uncertainty (relative to the cavity under the level) as a share of the
    whole label: food heaped above the level is measured, not guessed."""
    cav = cavity_ml(sup, level)
    z = X[food][:, 2]
    ok = np.isfinite(z)
    above = float(np.sum(np.maximum(h[food][ok] - level, 0) * z[ok] ** 2)) / fxfy * 1e6
    return round(float(sup.uncertainty) * cav / max(cav + above, 1e-9), 4)
