"""Wider scenes than dishes for the synthetic pretraining (stage 0): objects on a table or on a
rug on the floor, seen from 0.6-3 m with a wide range of fields of view.

Why: a real checkpoint (Depth-Anything-V2 Metric-Indoor, trained on Hypersim) has seen far more
images than the fine-tuning set, from room-scale scenes, and fine-tuning on the rig has a gap to
close. These scenes copy that: the same renderer and materials as the dishes, other geometry,
other distances and cameras. The objects standing on the support are its "food" (mask, exact
volume), so every loss term of the dishes applies; the furniture around is scenery."""
from __future__ import annotations

import numpy as np

from pipeline.data.food_items import FOOD_LOOKS, item_extent, pack_circle
from pipeline.data.scene import PART, Scene
from pipeline.data.shapes import Box, Camera, Cone, Cylinder, Ellipsoid, Shape, SphereCap

ROOM_DIST_M = (0.6, 3.0)     # camera to the support's centre
ROOM_HFOV_DEG = (45.0, 95.0)  # horizontal field of view
ROOM_ELEV_DEG = (35.0, 90.0)  # steeper than the horizon: the floor fills the view
ROOM_MAX_DEPTH_M = 8.0       # farther floor (near the horizon) reads as no measurement
OBJECT_KINDS = ("box", "cylinder", "ellipsoid", "cone", "cap")


def _object(rng: np.random.Generator, kind: str, x: float, y: float, r: float, z0: float) -> Shape:
    """One solid standing on z0 inside the footprint circle (x, y, r)."""
    h = float(rng.uniform(0.3, 2.2) * r)
    yaw = float(rng.uniform(0, np.pi))
    if kind == "box":
        a = rng.uniform(0.45, 0.7)
        return Box(x, y, 2 * r * a, 2 * r * np.sqrt(max(1 - a * a, 0.1)), h, yaw=yaw, z0=z0)
    if kind == "cylinder":
        return Cylinder(x, y, r, h, z0=z0)
    if kind == "ellipsoid":
        return Ellipsoid(x, y, r, r * rng.uniform(0.6, 1.0), min(h, 1.5 * r), yaw=yaw, z0=z0)
    if kind == "cone":
        return Cone(x, y, r, h, z0=z0)
    return SphereCap(x, y, r, float(min(h, r)), z0=z0)


def build_room(rng: np.random.Generator) -> Scene:
    """A table (60 %) or a rug on the floor, 2-6 objects on it, furniture-sized boxes and
    cylinders around it on the floor. The table / rug is the scene's "vessel" (its top is the
    support the objects stand on); the floor is the surface plane z = 0."""
    on_table = rng.uniform() < 0.6
    if on_table:
        sx, sy, top = rng.uniform(0.8, 1.6), rng.uniform(0.6, 1.0), rng.uniform(0.40, 0.78)
    else:
        sx, sy, top = rng.uniform(1.2, 2.4), rng.uniform(1.0, 2.0), rng.uniform(0.004, 0.012)
    support = Box(0.0, 0.0, sx, sy, top, yaw=0.0, z0=0.0)
    R_use = 0.5 * min(sx, sy) - 0.05
    centres: list = []
    radii: list[float] = []
    food: list[list[Shape]] = []
    kinds: list[str] = []
    looks: list[str] = []
    for _ in range(int(rng.integers(2, 7))):
        r = float(np.exp(rng.uniform(np.log(0.03), np.log(0.16))))
        pos = pack_circle(rng, centres, radii, r, R_use, 0.02)
        if pos is None:
            continue
        kind = str(rng.choice(OBJECT_KINDS))
        food.append([_object(rng, kind, pos[0], pos[1], r, top)])
        centres.append(pos)
        radii.append(r)
        kinds.append(kind)
        looks.append(str(rng.choice(list(FOOD_LOOKS))))
    if not food:  # the support is always wide enough for one small object at its centre
        food.append([_object(rng, "box", 0.0, 0.0, 0.05, top)])
        centres, radii, kinds, looks = [(0.0, 0.0)], [0.05], ["box"], ["bread"]
    extras: list[Shape] = []
    for _ in range(int(rng.integers(0, 5))):  # chairs, bins, cabinets around it
        ang, d = rng.uniform(0, 2 * np.pi), 0.5 * max(sx, sy) + rng.uniform(0.3, 1.2)
        w, h = rng.uniform(0.25, 0.6), rng.uniform(0.3, 1.0)
        if rng.uniform() < 0.6:
            extras.append(Box(d * np.cos(ang), d * np.sin(ang), w, w * rng.uniform(0.6, 1.4), h,
                              yaw=float(rng.uniform(0, np.pi)), z0=0.0))
        else:
            extras.append(Cylinder(d * np.cos(ang), d * np.sin(ang), w / 2, h, z0=0.0))
    total_ml = float(sum(s.volume_m3 for it in food for s in it) * 1e6)
    return Scene(food=food, kinds=kinds, looks=looks, centres=centres, radii=radii,
                 vessel_shapes=[support], vessel="table" if on_table else "rug", floor_z=float(top),
                 floor_r=float(R_use), outer_r=float(0.5 * np.hypot(sx, sy)), total_ml_target=total_ml,
                 heights=[float(item_extent(it)[1][2] - top) for it in food], family="room",
                 extras=extras, extra_parts=[PART["vessel"]] * len(extras))


def room_camera(rng: np.random.Generator, sc: Scene, W: int, H: int) -> tuple[Camera, dict, np.ndarray]:
    """(camera, its meta, look-at target): elevation 35-90 deg, 0.6-3 m from the support's centre,
    horizontal field of view 45-95 deg; steps back (up to 1.5x), then widens, until every object is
    in frame (the volume label is the whole objects')."""
    el, az = rng.uniform(*ROOM_ELEV_DEG), rng.uniform(0, 360)
    dist = rng.uniform(*ROOM_DIST_M)
    hfov = rng.uniform(*ROOM_HFOV_DEG)
    f = (W / 2) / np.tan(np.deg2rad(hfov) / 2)
    target = np.array([rng.normal(0, 0.05), rng.normal(0, 0.05), sc.floor_z])
    corners = []
    for item in sc.food:
        lo, hi = item_extent(item)
        corners += [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    pts = np.array(corners)
    cx = (W - 1) / 2 + rng.normal(0, 0.01 * W)
    cy = (H - 1) / 2 + rng.normal(0, 0.01 * H)
    d_max = 1.5 * dist
    for _ in range(100):
        cam = Camera.look_at(el, az, dist, target=tuple(target), f_px=f, width=W, height=H, cx=cx, cy=cy)
        uv, z = cam.project(pts)
        if (z > 0).all() and (uv[:, 0] >= 2).all() and (uv[:, 0] <= W - 3).all() \
                and (uv[:, 1] >= 2).all() and (uv[:, 1] <= H - 3).all():
            break
        if dist < d_max:
            dist = min(dist * 1.06, d_max)
        else:
            f *= 0.95
    else:
        raise RuntimeError("rooms: could not fit the objects in frame")
    hfov = float(np.rad2deg(2 * np.arctan(W / 2 / f)))
    meta = dict(elevation_deg=float(el), azimuth_deg=float(az), distance_m=float(dist), f_px=float(f),
                hfov_deg=hfov, cx=float(cx), cy=float(cy))
    return cam, meta, target
