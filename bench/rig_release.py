"""Nutrition5k release trees of a FIXED rig with exact food volumes: the label-accuracy test bed
of the Nutrition5k path (bench/bench_release_labels.py, tests/test_release_labels.py).

Every dish is seen by one camera (the release's K, one pose 0.41 m above the surround, straight
down) standing on a scale platform 5 cm above the surround, its edge in view or not (then the
platform fills the frame), with a plate or bowl of food. The families cover what broke the
rig-aware labels: piles (single cones), flat food, boxes, several items, shallow bowls, food
levelled flush in a bowl (floor hidden), steel vessels (specular holes), rails and a cable.
`pose="varying"` draws a new camera pose per dish (another rig / handheld captures written in
the release layout): the release-wide rig plane then fits no dish exactly.

Written in the release layout (pipeline.data.nutrition5k) plus, outside it, `truth.csv`
(dish_id, family, volume_ml_true, ...) and `truth/<dish_id>.png` (the first-hit food mask).
Pure function of (seed, index, pose). A test fixture, not part of the library.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import io
from pipeline.config import Nutrition5kConfig
from pipeline.data.nutrition5k import HEIGHT, IMAGERY, METADATA, SPLITS, WIDTH
from pipeline.data.shapes import Box, Camera, Cone, Cylinder, Plane, Ring, Shape, render_full
from pipeline.data.appearance import food_albedo, steel_colour
from pipeline.data.food_items import FOOD_LOOKS, make_item, pack_circle
from pipeline.data.scene import bowl_fill, bowl_profile
from pipeline.data.sensor import metal_holes, sensor_noise, stereo_shadow
from pipeline.data.textures import noise_texture

FAMILIES = ("plate", "pile", "flat", "box", "items", "bowl", "levelled", "metal", "rails")
PLATFORM_Z = 0.05     # scale platform top above the surround (m)
CAM_Z = 0.41          # the fixed camera above the surround (m)
_PART = {"surround": 0, "platform": 1, "vessel": 2, "rail": 3, "food": 4}


class RigDish:
    """One rendered dish: rgb, depth (m, 0 = none), food mask, exact volume, K, facts."""

    def __init__(self, rgb, depth, mask, volume_ml, K, info):
        self.rgb, self.depth, self.mask, self.volume_ml, self.K, self.info = rgb, depth, mask, volume_ml, K, info


def _camera(rng: np.random.Generator, pose: str, target: np.ndarray) -> Camera:
    """The rig's camera (the release K): fixed (straight down, CAM_Z above the surround) or a
    pose drawn per dish."""
    n5k = Nutrition5kConfig()
    if pose == "fixed":
        return Camera.look_at(90.0, 0.0, CAM_Z, (target[0], target[1], 0.0), n5k.fx, WIDTH, HEIGHT,
                              n5k.cx, n5k.cy)
    if pose != "varying":
        raise ValueError(f"pose: 'fixed' or 'varying', got {pose!r}")
    el, az = rng.uniform(76, 90), rng.uniform(0, 360)   # tilts within suspect.max_rig_tilt_deg
    dist = rng.uniform(0.29, 0.35)        # the surround stays within the release's depth range
    return Camera.look_at(el, az, dist, tuple(target), n5k.fx, WIDTH, HEIGHT, n5k.cx, n5k.cy)


def _plate(rng, z0: float, r: float, steel: bool = False) -> tuple[list[Shape], float, float]:
    """Plate standing on z0: (shapes, floor z, outer radius); a low flaring rim on most."""
    floor_z = z0 + rng.uniform(0.004, 0.015)
    shapes: list[Shape] = []
    outer = r
    if steel or rng.uniform() < 0.7:
        flare, thick = rng.uniform(0.008, 0.02), rng.uniform(0.003, 0.005)
        shapes.append(Ring(0, 0, r, r + flare, thick, rng.uniform(0.004, 0.012), z0=floor_z))
        outer = r + flare + thick
    return [Cylinder(0, 0, outer, floor_z - z0, z0=z0)] + shapes, floor_z, outer


def _shallow_bowl(rng, z0: float) -> tuple[list[Shape], float, float, float]:
    floor_r = rng.uniform(0.06, 0.09)
    floor_z = z0 + rng.uniform(0.006, 0.012)
    thick, wall_h, flare = rng.uniform(0.004, 0.006), rng.uniform(0.025, 0.04), rng.uniform(0.02, 0.035)
    shapes = [Cylinder(0, 0, floor_r + thick, floor_z - z0, z0=z0),
              Ring(0, 0, floor_r, floor_r + flare, thick, wall_h, z0=floor_z)]
    return shapes, floor_z, floor_r, floor_r + flare + thick


def _items(rng, kinds: list[str], vols_ml: list[float], R: float, z0: float
           ) -> tuple[list[list[Shape]], list[str]]:
    """Non-overlapping items of the given kinds and (target) volumes inside radius R."""
    centres, radii, food, looks = [], [], [], []
    for kind, v in zip(kinds, vols_ml):
        r = float(np.clip(np.cbrt(v * 1e-6 / (np.pi * 0.45)), 0.02, R))
        pos = None
        while pos is None and r >= 0.015:
            pos = pack_circle(rng, centres, radii, r, R, 0.008)
            r = r if pos is not None else r * 0.92
        if pos is None:
            continue
        centres.append(pos)
        radii.append(r)
        food.append(make_item(rng, kind, pos[0], pos[1], r, v * 1e-6, z0))
        looks.append(str(rng.choice(list(FOOD_LOOKS))))
    return food, looks


def build(rng: np.random.Generator, family: str) -> dict:
    """The scene of one dish: food items, vessel, platform (+ rails), facts for truth.csv."""
    if family not in FAMILIES:
        raise ValueError(f"family: one of {FAMILIES}, got {family!r}")
    z0 = PLATFORM_Z
    info: dict = {"family": family}
    steel = family == "metal"
    food: list[list[Shape]] = []
    looks: list[str] = []
    if family in ("bowl", "levelled") or (steel and rng.uniform() < 0.5):
        if family == "levelled":
            rim_r, depth = rng.uniform(0.07, 0.11), rng.uniform(0.04, 0.08)
            floor_r, p = rng.uniform(0.3, 0.6) * rim_r, rng.uniform(0.45, 1.0)
            thick = rng.uniform(0.002, 0.004)
            base_h = rng.uniform(0.004, 0.008)
            floor_z = z0 + base_h
            zs, rs = bowl_profile(floor_r, rim_r, depth, p)
            vessel: list[Shape] = [Cylinder(0, 0, floor_r + thick, base_h, z0=z0)]
            vessel += [Ring(0, 0, float(rs[k]), float(rs[k + 1]), thick, float(zs[k + 1] - zs[k]),
                            z0=floor_z + float(zs[k])) for k in range(len(zs) - 1)]
            fill_share = rng.uniform(0.35, 0.85)
            food = [bowl_fill(zs, rs, fill_share * depth, floor_z)]
            looks = [str(rng.choice(["rice", "greens", "beans", "meat", "carrot"]))]
            outer = rim_r + thick
            info.update(vessel="deep_bowl", bowl_depth_m=round(depth, 4), bowl_p=round(p, 3),
                        bowl_floor_share=round(floor_r / rim_r, 3), fill_share=round(fill_share, 3))
        else:
            vessel, floor_z, floor_r, outer = _shallow_bowl(rng, z0)
            n = int(rng.integers(1, 3))
            food, looks = _items(rng, list(rng.choice(["mound", "cap", "noisy_mound", "pile"], n)),
                                 list(rng.uniform(40, 250, n)), floor_r - 0.02, floor_z)
            info.update(vessel="bowl")
    else:
        vessel, floor_z, outer = _plate(rng, z0, rng.uniform(0.085, 0.11), steel)
        R = outer - 0.035
        if family == "pile":
            r, h = rng.uniform(0.02, min(0.06, R)), rng.uniform(0.015, 0.05)
            food = [[Cone(0.0, 0.0, r, h, z0=floor_z)]]
            looks = [str(rng.choice(list(FOOD_LOOKS)))]
        elif family == "flat":
            n = int(rng.integers(1, 3))
            food, looks = _items(rng, ["slice"] * n, list(rng.uniform(60, 250, n)), R, floor_z)
        elif family == "box":
            s = rng.uniform(0.04, 0.12, 2)
            h = rng.uniform(0.008, 0.04)
            food = [[Box(0.0, 0.0, float(min(s[0], 1.4 * R)), float(min(s[1], 1.4 * R)), h,
                         yaw=rng.uniform(0, np.pi), z0=floor_z)]]
            looks = [str(rng.choice(["bread", "meat", "potato", "egg"]))]
        elif family == "items":
            n = int(rng.integers(3, 6))
            kinds = list(rng.choice(["mound", "cap", "slice", "cylinder", "cone", "noisy_mound"], n))
            food, looks = _items(rng, kinds, list(rng.uniform(20, 120, n)), R, floor_z)
        else:  # plate, metal, rails: 1-3 usual items
            n = int(rng.integers(1, 4))
            kinds = list(rng.choice(["mound", "cap", "cylinder", "noisy_mound", "pile"], n))
            food, looks = _items(rng, kinds, list(rng.uniform(40, 300, n)), R, floor_z)
        info.update(vessel="plate")
    # the platform: its edge in view on one side (a rail beyond it on `rails`) or filling the frame
    edge = family == "rails" or rng.uniform() < 0.5
    extras: list[Shape] = []
    parts: list[int] = []
    e = min(outer + rng.uniform(0.01, 0.035), 0.17)
    side = float(rng.choice([-1.0, 1.0]))
    if edge:   # image x = world y for the fixed pose: the platform ends at y = side * e
        extras.append(Box(0.0, side * (e - 0.6) / 2, 1.6, 0.6 + e, z0))
        parts.append(_PART["platform"])
        if family == "rails":
            w, hr, gap = rng.uniform(0.012, 0.02), rng.uniform(0.02, 0.04), rng.uniform(0.0, 0.01)
            extras.append(Box(0.0, side * (e + gap + w / 2), 1.6, w, hr))
            parts.append(_PART["rail"])
    else:
        extras.append(Box(0.0, 0.0, 1.6, 1.6, z0))
        parts.append(_PART["platform"])
    # the Nutrition5k platform is glass on a scale: the camera sees through it to the bench
    # below and so does the depth sensor (the plate then stands 5 cm above the nearest surface seen)
    glass = bool(rng.uniform() < 0.5)
    info.update(platform_edge=bool(edge), platform_glass=glass, n_items=len(food), metal=steel)
    return {"food": food, "looks": looks, "vessel": vessel, "extras": extras, "parts": parts,
            "info": info, "floor_z": floor_z}


def render(seed: int, index: int, family: str, pose: str = "fixed", noise: bool = True) -> RigDish:
    """One dish of the rig release, a pure function of its arguments."""
    rng = np.random.default_rng([int(seed), int(index), 18])
    sc = build(rng, family)
    shift = rng.normal(0, 0.01, 2)   # the dish is not centred exactly: move the view instead
    food, vessel, extras = sc["food"], sc["vessel"], sc["extras"]
    shapes = [s for it in food for s in it]
    n_food = len(shapes)
    shapes += vessel + extras + [Plane(0.0)]
    part_of = np.array([_PART["food"]] * n_food + [_PART["vessel"]] * len(vessel) + sc["parts"]
                       + [_PART["surround"]], np.uint8)
    item_of = np.array([i for i, it in enumerate(food) for _ in it] + [-1] * (len(shapes) - n_food))
    cam = _camera(rng, pose, np.r_[-shift, sc["floor_z"]])
    origin, dirs = cam.rays()
    depth, label, normals = render_full(shapes, cam, rays=(origin, dirs))
    H, W = HEIGHT, WIDTH
    lab = label.ravel()
    hit = np.isfinite(depth.ravel())
    P = origin + np.where(hit, depth.ravel(), 0.0)[:, None] * dirs
    parts = np.where(lab >= 0, part_of[np.maximum(lab, 0)], _PART["surround"])
    # appearance: white laminate bench, grey platform, plate (white or tinted), dark rails, food
    tex, fine = noise_texture(rng), noise_texture(rng, base=32, octaves=2)
    col = {_PART["surround"]: np.array([0.86, 0.85, 0.82]), _PART["platform"]: np.array([0.62, 0.64, 0.68]),
           _PART["rail"]: np.array([0.1, 0.1, 0.1])}
    plate = np.array([0.94, 0.94, 0.92]) if rng.uniform() < 0.6 else rng.uniform(0.4, 0.95, 3)
    col[_PART["vessel"]] = plate
    albedo = np.zeros((H * W, 3))
    for k, c in col.items():
        albedo[parts == k] = c
    for i, look in enumerate(sc["looks"]):
        sel = (item_of[np.maximum(lab, 0)] == i) & (lab >= 0) & (lab < n_food)
        albedo[sel] = food_albedo(P[sel], tex, fine, look, seed_off=0.37 * i)
    L = np.array([0.3, 0.2, 0.93])
    L /= np.linalg.norm(L)
    nflat = normals.reshape(-1, 3)
    shade = 0.4 + 0.6 * np.clip(nflat @ L, 0, 1)
    rgb = albedo * shade[:, None]
    if sc["info"]["platform_glass"]:   # ... and its colour, a little darker
        rgb[parts == _PART["platform"]] = 0.85 * col[_PART["surround"]]
    steel = (parts == _PART["vessel"]) & sc["info"]["metal"]
    if steel.any():
        rgb[steel] = steel_colour(rng, dirs[steel], nflat[steel], L, tex, shade[steel])
    rgb = rgb.reshape(H, W, 3) + 0.008 * rng.standard_normal((H, W, 3))
    rgb_u8 = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
    if sc["info"]["platform_glass"]:   # the bench through the glass: its depth
        see = parts == _PART["platform"]
        depth.ravel()[see] = -origin[2] / dirs[see, 2]
    clean = np.where(np.isfinite(depth), depth, 0.0).astype(np.float32)
    d = clean.copy()
    if noise:
        d = sensor_noise(rng, clean)
        d[stereo_shadow(clean, cam.K[0, 0])] = 0.0
        metal = (steel | (parts == _PART["rail"])).reshape(H, W)
        if metal.any():
            view = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
            cosang = np.abs(np.sum(view * nflat, axis=1)).reshape(H, W)
            metal_holes(rng, d, metal, cosang, float(rng.uniform(0.2, 0.35)) if steel.any() else 0.3)
    mask = ((lab >= 0) & (lab < n_food)).reshape(H, W)
    vol = float(sum(s.volume_m3 for it in food for s in it) * 1e6)
    return RigDish(rgb_u8, d, mask, vol, cam.K.copy(), {**sc["info"], "pose": pose})


def write_release(root: Path, n: int, seed: int = 0, pose: str = "fixed",
                  families: tuple[str, ...] = FAMILIES, test_share: float = 0.2) -> pd.DataFrame:
    """Write `n` dishes (families in turn) as a Nutrition5k release under `root`; returns the
    truth table (also written to `<root>/truth.csv`, masks to `<root>/truth/<dish_id>.png`)."""
    root = Path(root)
    rng = np.random.default_rng([seed, 18, 1])
    rows = []
    for i in range(n):
        fam = families[i % len(families)]
        dish = render(seed, i, fam, pose)
        dish_id = f"dish_{1600000000 + 1000 * seed + i}"
        d = root / IMAGERY / dish_id
        io.write_rgb(d / "rgb.png", dish.rgb)
        units = np.where(dish.depth > 0, np.round(dish.depth / io.DEPTH_SCALE_M), 0)
        io._write_png(d / "depth_raw.png", np.clip(units, 0, 65535).astype(np.uint16))
        io.write_mask(root / "truth" / f"{dish_id}.png", dish.mask)
        density = float(rng.uniform(0.6, 1.1))
        rows.append({"dish_id": dish_id, "volume_ml_true": round(dish.volume_ml, 3),
                     "mass_g": round(density * dish.volume_ml, 1), "split": "test" if rng.uniform() < test_share else "train",
                     **dish.info})
    truth = pd.DataFrame(rows)
    for cafe, rel in METADATA.items():
        sel = truth.iloc[0::2] if cafe == "cafe1" else truth.iloc[1::2]
        io.write_text(root / rel, "".join(f"{r.dish_id},{1.5 * r.mass_g:.1f},{r.mass_g},1.0,2.0,3.0\n"
                                          for r in sel.itertuples()))
    for s, rel in SPLITS.items():
        io.write_text(root / rel, "".join(f"{i}\n" for i in truth.loc[truth["split"] == s, "dish_id"]))
    io.write_csv(root / "truth.csv", truth)
    return truth
