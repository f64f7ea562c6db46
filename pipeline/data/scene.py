"""Scene layout of a synthetic dish: the family (table or one of the Nutrition5k-rig copies), the
vessel (plate, shallow or deep bowl), non-overlapping food items on its flat floor, and for the rig
families the scale platform, frame rails and cable around it. Pure geometry, drawn from one rng."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.data.food_items import FOOD_KINDS, FOOD_LOOKS, item_extent, make_item, noisy_mound, pack_circle
from pipeline.data.shapes import Box, Cylinder, Frustum, Ring, Shape

FOOD_MARGIN_M = 0.028   # food footprint to rim/wall/plate edge: a flat ring for plane fitting
ITEM_GAP_M = 0.006      # between food footprints (items must not overlap)
VOLUME_BINS_ML = (30.0, 100.0, 300.0, 600.0, 1300.0)  # target drawn bin-uniformly
PACK_FACTOR = (1.0, 0.48, 0.44, 0.40)  # ~largest radius of n equal circles packed in one


@dataclass
class Scene:
    """Geometry of one dish (world frame, metres): what the renderer and tests share."""
    food: list[list[Shape]]   # shapes of each item (a pile has several)
    kinds: list[str]
    looks: list[str]
    centres: list[tuple[float, float]]
    radii: list[float]        # footprint circle of each item
    vessel_shapes: list[Shape]  # [0] is the vessel body whose top is its floor
    vessel: str
    floor_z: float
    floor_r: float
    outer_r: float
    total_ml_target: float
    wall_h: float = 0.0       # rim / bowl wall height above the floor
    heights: list[float] = field(default_factory=list)  # top of each item above the floor
    family: str = "table"
    extras: list[Shape] = field(default_factory=list)    # platform, rails, cable
    extra_parts: list[int] = field(default_factory=list)  # PART code of each extra
    platform_z: float = 0.0   # platform top above the surrounding surface (0: no platform)
    rig_az: float = 0.0       # rig families: camera azimuth (image x axis = rig u axis)
    metal: bool = False       # steel vessel: specular depth holes
    frame_pts: np.ndarray | None = None  # points that the camera must keep in frame
    info: dict = field(default_factory=dict)


MIN_TOTAL_ML = 25.0

# Scene families. `table`: the original dishes (textured table, random oblique views).
# The rig families copy the Nutrition5k overhead rig: camera ~0.41 m above the surrounding
# surface looking (nearly) straight down, the dish on a scale platform ~5 cm above it.
FAMILIES = ("table", "platform", "rails", "deep_bowl", "metal")
# part codes of Dish.parts
PART = {"surface": 0, "platform": 1, "vessel": 2, "vessel_floor": 3, "rail": 4, "cable": 5,
        "food": 6}


def family_of(seed: int, index: int, families: dict[str, float] | None) -> str:
    """Scene family of dish (seed, index) for mixture weights `families` (None: table).
    Drawn from its own stream, so changing the weights re-assigns families but keeps each
    family's dish for an index the same, and table dishes equal the pre-family ones."""
    if not families:
        return "table"
    bad = [k for k in families if k not in FAMILIES]
    w = np.array([float(families.get(k, 0.0)) for k in FAMILIES])
    if bad or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"data.families: weights must be >= 0 over {FAMILIES} with a positive "
                         f"sum, got {families}")
    u = np.random.default_rng([int(seed), int(index), 1]).uniform()
    return FAMILIES[int(np.searchsorted(np.cumsum(w / w.sum()), u, side="right").clip(0, 4))]


def rig_platform_z(seed: int) -> float:
    """The scale platform's top above the surrounding surface (m) for the data set `seed`: one
    rig, one platform, as in a Nutrition5k release (its dishes all stand ~5 cm up), drawn once
    per data set from its own stream."""
    return float(np.random.default_rng([int(seed), 0, 5]).uniform(0.045, 0.055))


def build_scene(rng: np.random.Generator, family: str, platform_z: float) -> Scene:
    """Vessel + food (+ the rig around it for the rig families), drawn from `rng`.
    `platform_z`: the data set's platform height (`rig_platform_z`; unused by `table`). Redraws
    (from the same rng, so still deterministic) the rare scene whose caps on item size left less
    than MIN_TOTAL_ML of food."""
    if family not in FAMILIES:
        raise ValueError(f"family: unknown scene family {family!r} (expected one of {FAMILIES})")
    base_z = 0.0
    if family != "table":
        rng.uniform()   # the per-dish platform height once drawn here: kept, so every later draw stays
        base_z = float(platform_z)
    for _ in range(20):
        if family == "deep_bowl":
            sc = _draw_deep_bowl(rng, base_z)
        else:
            sc = _draw_scene(rng, base_z)
        if sum(s.volume_m3 for it in sc.food for s in it) * 1e6 >= MIN_TOTAL_ML:
            break
    sc.family = family
    if family != "table":
        _add_rig(rng, sc, base_z)
    return sc


def _place_items(rng: np.random.Generator, vols: np.ndarray, R_use: float, z0: float,
                 kind_p: list[float], sc_lists: tuple[list, list, list, list, list]) -> None:
    """Non-overlapping items of volumes `vols` (m^3) on the flat disc of radius R_use at
    height z0; appends to (centres, radii, food, kinds, looks)."""
    centres, radii, food, kinds, item_looks = sc_lists
    looks = list(FOOD_LOOKS)
    n_items = len(vols)
    for v, frac in zip(vols, vols / vols.sum()):
        kind = str(rng.choice(FOOD_KINDS, p=kind_p))
        aspect = rng.uniform(0.35, 0.8)
        r = float(np.cbrt(v / (np.pi * aspect * 0.6)))
        share = R_use * PACK_FACTOR[n_items - 1] * np.sqrt(frac * n_items)
        r = float(np.clip(r, 0.018, min(R_use, max(share, 0.018))))
        pos = None
        while pos is None and r >= 0.012:
            pos = pack_circle(rng, centres, radii, r, R_use, ITEM_GAP_M)
            if pos is None:  # no room: a narrower (taller, up to its cap) item
                r *= 0.93
        if pos is None:
            continue
        centres.append(pos)
        radii.append(r)
        food.append(make_item(rng, kind, pos[0], pos[1], r, float(v), z0))
        kinds.append(kind)
        item_looks.append(str(rng.choice(looks)))


def _draw_scene(rng: np.random.Generator, base_z: float = 0.0) -> Scene:
    """Plate or shallow bowl standing on z = base_z, 1-4 items on its flat floor."""
    edges = VOLUME_BINS_ML
    b = int(rng.integers(len(edges) - 1))
    total_ml = float(np.exp(rng.uniform(np.log(edges[b]), np.log(edges[b + 1]))))
    vessel = "bowl" if total_ml < 400 and rng.uniform() < 0.4 else "plate"
    vessel_shapes: list[Shape] = []
    if vessel == "plate":
        floor_r = rng.uniform(0.095, 0.135) if total_ml < 450 else rng.uniform(0.115, 0.14)
        floor_z = base_z + rng.uniform(0.004, 0.015)
        outer = floor_r
        if rng.uniform() < 0.65:  # low, flaring rim
            flare, thick = rng.uniform(0.008, 0.02), rng.uniform(0.003, 0.005)
            rim = Ring(0, 0, floor_r, floor_r + flare, thick, rng.uniform(0.004, 0.010), z0=floor_z)
            vessel_shapes.append(rim)
            outer = floor_r + flare + thick
        vessel_shapes.insert(0, Cylinder(0, 0, outer, floor_z - base_z, z0=base_z))
    else:
        floor_r = rng.uniform(0.085, 0.115)
        floor_z = base_z + rng.uniform(0.008, 0.015)
        thick = rng.uniform(0.004, 0.006)
        wall_h = rng.uniform(0.022, 0.04)
        flare = rng.uniform(0.02, 0.04)
        vessel_shapes = [Cylinder(0, 0, floor_r + thick, floor_z - base_z, z0=base_z),
                         Ring(0, 0, floor_r, floor_r + flare, thick, wall_h, z0=floor_z)]
        outer = floor_r + flare + thick
    R_use = floor_r - FOOD_MARGIN_M - (0.004 if vessel == "bowl" else 0.0)

    n_items = int(rng.choice([1, 2, 3, 4], p=[0.3, 0.3, 0.25, 0.15] if total_ml < 450
                             else [0.4, 0.35, 0.15, 0.1]))
    fractions = rng.dirichlet(np.full(n_items, 2.0))
    vols = np.sort(total_ml * 1e-6 * fractions)[::-1]
    lists: tuple = ([], [], [], [], [])
    _place_items(rng, vols, R_use, floor_z, [0.2, 0.15, 0.13, 0.1, 0.07, 0.15, 0.2], lists)
    centres, radii, food, kinds, item_looks = lists
    if not food:
        raise RuntimeError("synthetic: no food item placed")
    return Scene(food=food, kinds=kinds, looks=item_looks, centres=centres, radii=radii,
                 vessel_shapes=vessel_shapes, vessel=vessel, floor_z=float(floor_z),
                 floor_r=float(floor_r), outer_r=float(outer), total_ml_target=total_ml,
                 wall_h=max([v.height for v in vessel_shapes if isinstance(v, Ring)], default=0.0),
                 heights=[float(item_extent(it)[1][2] - floor_z) for it in food])


BOWL_SEGMENTS = 8  # piecewise-conical profile of a deep bowl


def bowl_profile(floor_r: float, rim_r: float, depth: float, p: float,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(z above the floor, inner radius) of a round-bottomed steel bowl: flat near the
    floor, steep near the rim (r - floor_r ~ z^p, p < 1)."""
    zs = depth * np.arange(BOWL_SEGMENTS + 1) / BOWL_SEGMENTS
    return zs, floor_r + (rim_r - floor_r) * (zs / depth) ** p


def bowl_fill(zs: np.ndarray, rs: np.ndarray, h: float, z0: float) -> list[Shape]:
    """Food filling the bowl from its floor (z0) to height h, following the wall: frusta."""
    out: list[Shape] = []
    for k in range(len(zs) - 1):
        if zs[k] >= h:
            break
        top = min(zs[k + 1], h)
        r1 = rs[k] + (rs[k + 1] - rs[k]) * (top - zs[k]) / (zs[k + 1] - zs[k])
        out.append(Frustum(0, 0, float(rs[k]), float(r1), float(top - zs[k]), z0=z0 + float(zs[k])))
    return out


def _draw_deep_bowl(rng: np.random.Generator, base_z: float) -> Scene:
    """Deep steel bowl (fills most of the frame) whose floor is hidden: a food layer fills it
    from the floor up to the wall, then a mound or pieces on that layer. Every food solid is
    exact (frusta, height field, the usual items), so the total stays analytic."""
    total_ml = float(np.exp(rng.uniform(np.log(120.0), np.log(900.0))))
    rim_r, depth = rng.uniform(0.11, 0.15), rng.uniform(0.06, 0.10)
    floor_r, p = rng.uniform(0.035, 0.06), rng.uniform(0.45, 0.75)
    thick, base_h = rng.uniform(0.0015, 0.003), rng.uniform(0.004, 0.008)
    floor_z = base_z + base_h
    zs, rs = bowl_profile(floor_r, rim_r, depth, p)
    vessel: list[Shape] = [Cylinder(0, 0, floor_r + thick, base_h, z0=base_z)]
    # the rig camera is above the rim and inside its radius: the flaring outside is hidden
    vessel += [Ring(0, 0, float(rs[k]), float(rs[k + 1]), thick, float(zs[k + 1] - zs[k]),
                    z0=floor_z + float(zs[k]), outer_wall=False) for k in range(BOWL_SEGMENTS)]
    # fill height for the drawn share of the volume (bisection on the exact frusta volume)
    want = total_ml * 1e-6 * rng.uniform(0.35, 0.75)
    lo, hi = 0.004, 0.6 * depth
    vol = lambda h: sum(s.volume_m3 for s in bowl_fill(zs, rs, h, floor_z))  # noqa: E731
    if vol(hi) <= want:
        lo = hi
    elif vol(lo) < want:
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if vol(mid) < want else (lo, mid)
    h = lo
    fill = bowl_fill(zs, rs, h, floor_z)
    r_h = float(np.interp(h, zs, rs))
    looks = list(FOOD_LOOKS)
    food: list[list[Shape]] = [fill]
    kinds, item_looks = ["fill"], [str(rng.choice(["rice", "greens", "carrot", "beans", "meat"]))]
    centres: list = [(0.0, 0.0)]
    radii = [r_h]
    rest = total_ml * 1e-6 - sum(s.volume_m3 for s in fill)
    top_z = floor_z + h
    if rest > 10e-6 and rng.uniform() < 0.4:  # a heaped mound reaching the wall
        # (bisection to ~1e-7 m is plenty for 1e-4 m depth units, and this mound is big)
        food.append([noisy_mound(rng, 0.0, 0.0, 0.97 * r_h, rest, top_z, n_bisect=14)])
        kinds.append("noisy_mound")
        item_looks.append(str(rng.choice(looks)))
        centres.append((0.0, 0.0))
        radii.append(0.97 * r_h)
    elif rest > 10e-6:  # pieces piled on the layer (chicken cubes, tomatoes, ...)
        n = int(rng.integers(1, 5))
        vols = np.sort(rest * rng.dirichlet(np.full(n, 2.0)))[::-1]
        lists: tuple = ([], [], [], [], [])
        _place_items(rng, vols, r_h - 0.006, top_z, [0.1, 0.05, 0.1, 0.05, 0.0, 0.6, 0.1], lists)
        for dst, src in zip((centres, radii, food, kinds, item_looks), lists):
            dst.extend(src)
    return Scene(food=food, kinds=kinds, looks=item_looks, centres=centres, radii=radii,
                 vessel_shapes=vessel, vessel="deep_bowl", floor_z=float(floor_z),
                 floor_r=float(floor_r), outer_r=float(rim_r + thick), total_ml_target=total_ml,
                 wall_h=float(depth), metal=True,
                 heights=[float(item_extent(it)[1][2] - floor_z) for it in food],
                 info=dict(fill_top_z_m=float(top_z), rim_radius_m=float(rim_r),
                           bowl_depth_m=float(depth)))


def _add_rig(rng: np.random.Generator, sc: Scene, base_z: float) -> None:
    """The scale platform under the dish (top at base_z above the surrounding surface), its
    edge visible on one or two sides; `rails`: frame rails beyond the visible edges and a
    cable from outside the image to the dish; `metal`: a steel vessel."""
    az = float(rng.uniform(0, 360))
    a = np.deg2rad(az)
    u, v = np.array([-np.sin(a), np.cos(a)]), np.array([np.cos(a), np.sin(a)])  # image x, y
    axes = [u, -u, v, -v]
    # the edge shows along the image x axis (the wider one), as on the rig
    vis = [0, 1] if sc.family != "deep_bowl" and rng.uniform() < 0.4 else [int(rng.integers(0, 2))]
    ext = [sc.outer_r + rng.uniform(0.008, 0.025) if k in vis else 0.6 for k in range(4)]
    cu, cv = (ext[0] - ext[1]) / 2, (ext[2] - ext[3]) / 2
    c = cu * u + cv * v
    yaw = float(np.arctan2(u[1], u[0]))
    extras: list[Shape] = [Box(float(c[0]), float(c[1]), ext[0] + ext[1], ext[2] + ext[3],
                               base_z, yaw=yaw)]
    parts = [PART["platform"]]
    keep: list[np.ndarray] = []
    n_rails, cable = 0, False
    if sc.family == "rails":
        for k in vis:
            w, hr, gap = rng.uniform(0.012, 0.02), rng.uniform(0.02, 0.04), rng.uniform(0.0, 0.01)
            pos = (ext[k] + gap + w / 2) * axes[k]
            along_u = k >= 2  # a rail beyond a +-v edge runs along u
            extras.append(Box(float(pos[0]), float(pos[1]), 1.5 if along_u else w,
                              w if along_u else 1.5, hr, yaw=yaw))
            parts.append(PART["rail"])
            n_rails += 1
            keep.append(pos + (w / 2 + 0.01) * axes[k])
        boxes, cable_end = _cable(rng, sc, axes, ext, vis, base_z)
        extras += boxes
        parts += [PART["cable"]] * len(boxes)
        cable = True
    elif sc.family != "deep_bowl":
        keep += [(ext[k] + 0.012) * axes[k] for k in vis]
    if sc.family == "metal":
        sc.metal = True
    pts = []
    for p in keep:  # the visible edge (or rail) and a little of the surface beyond it
        k = int(np.argmax([p @ ax for ax in axes]))
        along = axes[3] if k < 2 else axes[1]
        pts += [np.r_[p + t * along, 0.0] for t in (-0.04, 0.0, 0.04)]
    if cable:  # the cable's end is in view
        pts.append(np.r_[cable_end, base_z])
    sc.extras, sc.extra_parts, sc.platform_z, sc.rig_az = extras, parts, base_z, az
    sc.frame_pts = np.array(pts) if pts else None
    # half the rigs have a clear (glass) platform top: the camera sees it, the depth sensor
    # reads the bench through it, as on the Nutrition5k rig (plate ~5 cm above its
    # surroundings in depth)
    glass = bool(rng.uniform() < 0.5)
    sc.info.update(platform_edges=len(vis), n_rails=n_rails, cable=cable, platform_glass=glass)


def _cable(rng: np.random.Generator, sc: Scene, axes: list[np.ndarray], ext: list[float],
           vis: list[int], z0: float) -> tuple[list[Shape], np.ndarray]:
    """A cable lying on the platform: from well outside the image (over a side whose edge is
    out of view) to an end point in view beside the dish, clear of the vessel; thin boxes
    along a wobbly curve. Returns (boxes, end point)."""
    side = int(rng.choice([k for k in range(4) if k not in vis]))
    a = axes[side]
    b = np.array([-a[1], a[0]])
    stop = sc.outer_r + 0.012

    def on_platform(q: np.ndarray, margin: float) -> bool:
        return all(q @ axes[k] < ext[k] - margin for k in vis)

    for _ in range(50):  # the end: towards a corner of the view, beside the dish
        end = rng.uniform(0.06, 0.12) * a + rng.choice([-1.0, 1.0]) * rng.uniform(0.06, 0.12) * b
        if np.hypot(*end) >= stop + 0.005 and on_platform(end, 0.015):
            break
    else:
        end = end / np.hypot(*end) * (stop + 0.005)
    p = 0.45 * a + (end @ b + rng.uniform(-0.1, 0.1)) * b
    for k in vis:  # start on the platform
        p = p - max(p @ axes[k] - (ext[k] - 0.02), 0.0) * axes[k]
    head = (end - p) / np.hypot(*(end - p))
    d, step = rng.uniform(0.004, 0.007), 0.012
    out: list[Shape] = []
    for _ in range(80):
        to_end = (end - p) / max(np.hypot(*(end - p)), 1e-9)
        head = head + 0.5 * to_end + rng.normal(0, 0.25) * np.array([-head[1], head[0]])
        head /= np.hypot(*head)
        q = p + step * head
        if np.hypot(*q) < stop or not on_platform(q, 0.01):
            break
        m = 0.5 * (p + q)
        out.append(Box(float(m[0]), float(m[1]), step + d, d, d,
                       yaw=float(np.arctan2(head[1], head[0])), z0=z0))
        p = q
        if np.hypot(*(end - p)) < step:
            break
    return out, p
