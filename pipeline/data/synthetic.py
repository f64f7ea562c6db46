"""Procedural synthetic dishes: the embedded default data set.

Why: the pipeline must train, label and evaluate without any download, and synthetic
dishes come with exact truth (analytic volumes, clean depth, masks). Each dish is a
textured table, a plate or shallow bowl, and 1-4 non-overlapping food items sitting on
the flat floor, ray cast exactly by `pipeline.data.shapes`, then shaded (Lambert + ambient +
soft shadows) and, optionally, given RealSense-like depth noise and holes.
Everything is a pure function of (seed, index).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from pipeline.data.density import dish_mass
from pipeline.data.shapes import (Box, Camera, Cone, Cylinder, Ellipsoid, Frustum, HeightField, Plane, Ring,
                                  Shape, SphereCap, intersect_culled, render_full)
from pipeline.io import DEPTH_SCALE_M

FOOD_MARGIN_M = 0.028   # food footprint to rim/wall/plate edge: a flat ring for plane fitting
ITEM_GAP_M = 0.006      # between food footprints (items must not overlap)
MAX_FOOD_H_M = 0.09
VOLUME_BINS_ML = (30.0, 100.0, 300.0, 600.0, 1300.0)  # target drawn bin-uniformly
PACK_FACTOR = (1.0, 0.48, 0.44, 0.40)  # ~largest radius of n equal circles packed in one
FOOD_KINDS = ["mound", "cap", "slice", "cylinder", "cone", "pile", "noisy_mound"]

# albedo (RGB 0-1), low-frequency variation, high-frequency (grain) variation
FOOD_LOOKS: dict[str, tuple[tuple[float, float, float], float, float]] = {
    "rice": ((0.93, 0.91, 0.85), 0.05, 0.18),
    "greens": ((0.25, 0.52, 0.17), 0.35, 0.25),
    "meat": ((0.45, 0.25, 0.13), 0.25, 0.15),
    "tomato": ((0.78, 0.16, 0.10), 0.20, 0.10),
    "egg": ((0.95, 0.78, 0.25), 0.12, 0.08),
    "carrot": ((0.92, 0.48, 0.12), 0.15, 0.10),
    "bread": ((0.80, 0.60, 0.35), 0.25, 0.20),
    "potato": ((0.90, 0.80, 0.55), 0.12, 0.10),
    "beans": ((0.50, 0.22, 0.15), 0.20, 0.30),
}


@dataclass
class Dish:
    rgb: np.ndarray          # HxWx3 uint8
    depth: np.ndarray        # HxW float32 m, camera z-depth (noisy if noise=True, 0 = hole)
    depth_clean: np.ndarray  # HxW float32 m, exact
    mask: np.ndarray         # HxW bool, first hit is food
    items: np.ndarray        # HxW int16 item id (1..n), 0 elsewhere
    K: np.ndarray            # 3x3
    item_volumes_ml: list[float]
    item_kinds: list[str]
    volume_ml_true: float
    meta: dict = field(default_factory=dict)
    parts: np.ndarray | None = None  # HxW uint8 PART code of the first hit (surface, platform, ...)


# --------------------------------------------------------------------------- textures
def _noise_texture(rng: np.random.Generator, size: int = 256, base: int = 4,
                   octaves: int = 5) -> np.ndarray:
    """Tileable-enough fractal value noise in [-1, 1] (sampled with wrap-around)."""
    out = np.zeros((size, size), np.float32)
    amp, total = 1.0, 0.0
    g = base
    for _ in range(octaves):
        grid = rng.standard_normal((g, g)).astype(np.float32)
        grid = np.concatenate([grid, grid[:, :1]], 1)
        grid = np.concatenate([grid, grid[:1]], 0)
        up = cv2.resize(grid, (size + size // g, size + size // g), interpolation=cv2.INTER_CUBIC)
        out += amp * up[:size, :size]
        total += amp
        amp *= 0.55
        g *= 2
    out /= total
    return np.clip(out / (3 * out.std() + 1e-9), -1, 1)


def _sample(tex: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear wrap-around lookup of `tex` at texel coordinates (u, v)."""
    n, m = tex.shape[0], u.size
    if m == 0:
        return np.zeros(0, np.float32)
    cols = 1024  # remap wants both map sides < 32767
    pad = (-m) % cols
    mx = np.pad(np.mod(u, n).astype(np.float32), (0, pad)).reshape(-1, cols)
    my = np.pad(np.mod(v, n).astype(np.float32), (0, pad)).reshape(-1, cols)
    return cv2.remap(tex, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP).ravel()[:m]


def _table_albedo(P: np.ndarray, tex: np.ndarray, style: dict) -> np.ndarray:
    x, y = P[:, 0], P[:, 1]
    c, s = np.cos(style["angle"]), np.sin(style["angle"])
    xr, yr = c * x + s * y, -s * x + c * y
    if style["kind"] == "wood":
        warp = _sample(tex, xr / 2.0 * 256, yr / 0.6 * 256)
        grain = 0.5 + 0.5 * np.sin(2 * np.pi * yr / style["period"] + 4.0 * warp)
        fine = _sample(tex, xr / 0.4 * 256, yr / 0.03 * 256)
        a = np.asarray(style["c1"]), np.asarray(style["c2"])
        col = a[0][None] * (1 - grain[:, None]) + a[1][None] * grain[:, None]
        return col * (1 + 0.08 * fine[:, None])
    if style["kind"] == "cloth":
        cx = (np.floor(xr / style["period"]) % 2).astype(np.float32)
        cy = (np.floor(yr / style["period"]) % 2).astype(np.float32)
        w = 0.5 * (cx + cy)
        weave = _sample(tex, xr / 0.06 * 256, yr / 0.06 * 256)
        a = np.asarray(style["c1"]), np.asarray(style["c2"])
        col = a[0][None] * (1 - w[:, None]) + a[1][None] * w[:, None]
        return col * (1 + 0.07 * weave[:, None])
    n1 = _sample(tex, x / 1.5 * 256, y / 1.5 * 256)  # stone / laminate
    n2 = _sample(tex, x / 0.15 * 256, y / 0.15 * 256)
    return np.asarray(style["c1"])[None] * (1 + 0.10 * n1[:, None] + 0.05 * n2[:, None])


def _food_albedo(P: np.ndarray, tex: np.ndarray, fine: np.ndarray, look: str,
                 seed_off: float) -> np.ndarray:
    """`tex`: broad fractal noise; `fine`: grain-sized noise (no visible tiling)."""
    base, low, high = FOOD_LOOKS[look]
    x, y, z = P[:, 0] + seed_off, P[:, 1] - seed_off, P[:, 2]
    n_low = _sample(tex, (x + 0.7 * z) / 0.8 * 256, (y + 0.4 * z) / 0.8 * 256)
    n_high = _sample(fine, (x + 0.5 * z) / 0.15 * 256, (y - 0.5 * z) / 0.15 * 256)
    col = np.asarray(base)[None] * (1 + low * n_low[:, None] + high * n_high[:, None])
    if look == "greens":  # leafy: mix of darker and yellower patches
        mix = np.clip(0.5 + n_low, 0, 1)[:, None]
        col = col * (1 - 0.4 * mix) + np.array([0.45, 0.62, 0.2])[None] * 0.4 * mix
    if look in ("rice", "beans"):  # grains: small bright specks on a darker base
        n_g = _sample(fine, (x - 0.3 * z) / 0.08 * 256, (y + 0.6 * z) / 0.08 * 256)
        col = col * (0.82 + 0.22 * (n_g[:, None] > 0.05))
    return col


# --------------------------------------------------------------------------- layout
def _solve_cap_height(volume: float, a: float) -> float:
    """Height h of a spherical cap with base radius a and volume V: h^3 + 3a^2 h = 6V/pi."""
    p, q = 3 * a * a, -6 * volume / np.pi
    disc = np.sqrt(q * q / 4 + p ** 3 / 27)
    return float(np.cbrt(-q / 2 + disc) + np.cbrt(-q / 2 - disc))


def _noisy_mound(rng: np.random.Generator, cx: float, cy: float, r: float, volume: float,
                 z0: float, n_bisect: int = 22) -> HeightField:
    """Irregular height-field mound scaled to `volume` (volume is linear in height)."""
    n = 81
    cell = 2 * r / (n - 1)
    g = (np.arange(n + 2) - 1) * cell - r  # one zero border row/column each side
    X, Y = np.meshgrid(g, g)
    ang = np.arctan2(Y, X)
    k = rng.integers(2, 5)
    r_eff = r * (0.88 + 0.06 * np.sin(k * ang + rng.uniform(0, 6.3))
                 + 0.05 * np.cos((k + 1) * ang + rng.uniform(0, 6.3)))
    rho = np.hypot(X, Y) / r_eff
    bump = np.clip(1 - rho ** 2, 0, None) ** rng.uniform(0.6, 1.2)
    tex = _noise_texture(rng, size=64, base=4, octaves=3)
    noise = cv2.resize(tex, (n + 2, n + 2), interpolation=cv2.INTER_LINEAR)
    hgt = bump * (1 + 0.25 * noise)
    hgt[0], hgt[-1], hgt[:, 0], hgt[:, -1] = 0, 0, 0, 0
    hgt = np.clip(hgt, 0, None)
    hf = HeightField(cx - r - cell, cy - r - cell, cell, hgt, z0=z0)
    c = min(volume / hf.volume_m3, min(MAX_FOOD_H_M, 1.3 * r) / hgt.max())
    return HeightField(cx - r - cell, cy - r - cell, cell, hgt * c, z0=z0, n_bisect=n_bisect)


def _pack(rng: np.random.Generator, centres: list, radii: list, r: float, R: float,
          gap: float, tries: int = 200) -> tuple[float, float] | None:
    """Random centre for a circle of radius r inside radius R, clear of the others."""
    if r > R:
        return None
    for _ in range(tries):
        rho = (R - r) * np.sqrt(rng.uniform())
        th = rng.uniform(0, 2 * np.pi)
        x, y = rho * np.cos(th), rho * np.sin(th)
        if all(np.hypot(x - a, y - b) >= r + rb + gap for (a, b), rb in zip(centres, radii)):
            return x, y
    return None


def _make_item(rng: np.random.Generator, kind: str, x: float, y: float, r: float,
               volume: float, z0: float) -> list[Shape]:
    """Food item of `kind` inside the footprint circle (x, y, r), volume ~ `volume` m^3."""
    yaw = rng.uniform(0, np.pi)
    if kind == "mound":
        b = r * rng.uniform(0.65, 1.0)
        c = float(np.clip(volume / (2 / 3 * np.pi * r * b), 0.006, min(1.3 * r, MAX_FOOD_H_M)))
        return [Ellipsoid(x, y, r, b, c, yaw=yaw, z0=z0)]
    if kind == "cap":
        h = float(np.clip(_solve_cap_height(volume, r), 0.005, min(r, MAX_FOOD_H_M)))
        return [SphereCap(x, y, r, h, z0=z0)]
    if kind == "slice":
        th = rng.uniform(0.45, 1.1)
        sx, sy = 2 * r * np.cos(th), 2 * r * np.sin(th)
        sz = float(np.clip(volume / (sx * sy), 0.006, min(0.05, 1.2 * min(sx, sy))))
        return [Box(x, y, sx, sy, sz, yaw=yaw, z0=z0)]
    if kind == "cylinder":
        h = float(np.clip(volume / (np.pi * r * r), 0.006, min(0.07, 1.5 * r)))
        return [Cylinder(x, y, r, h, z0=z0)]
    if kind == "cone":
        h = float(np.clip(3 * volume / (np.pi * r * r), 0.012, min(2.0 * r, MAX_FOOD_H_M)))
        return [Cone(x, y, r, h, z0=z0)]
    if kind == "noisy_mound":
        return [_noisy_mound(rng, x, y, r, volume, z0)]
    if kind == "pile":
        n_try = int(rng.integers(4, 12))
        piece_r = r * rng.uniform(0.22, 0.36)
        cs: list = []
        rs: list = []
        for _ in range(n_try):
            pr = piece_r * rng.uniform(0.75, 1.0)
            pos = _pack(rng, cs, rs, pr, r, 0.002, tries=60)
            if pos is not None:
                cs.append(pos)
                rs.append(pr)
        shape_kind = rng.choice(["ellipsoid", "box", "cylinder"])
        # unit-height pieces first; every piece volume is linear in its height
        unit = []
        for (px, py), pr in zip(cs, rs):
            if shape_kind == "ellipsoid":
                bb = pr * rng.uniform(0.6, 1.0)
                unit.append(("e", x + px, y + py, pr, bb, rng.uniform(0, np.pi),
                             2 / 3 * np.pi * pr * bb))
            elif shape_kind == "box":
                t = rng.uniform(0.5, 1.0)
                unit.append(("b", x + px, y + py, 2 * pr * np.cos(t), 2 * pr * np.sin(t),
                             rng.uniform(0, np.pi), 4 * pr * pr * np.cos(t) * np.sin(t)))
            else:
                unit.append(("c", x + px, y + py, pr, pr, 0.0, np.pi * pr * pr))
        scale = rng.uniform(0.8, 1.25, size=len(unit))
        h0 = volume / float(sum(u[-1] * s for u, s in zip(unit, scale)))
        out: list[Shape] = []
        for u, s in zip(unit, scale):
            h = float(np.clip(h0 * s, 0.004, min(0.06, 2.5 * u[3])))
            if u[0] == "e":
                out.append(Ellipsoid(u[1], u[2], u[3], u[4], h, yaw=u[5], z0=z0))
            elif u[0] == "b":
                out.append(Box(u[1], u[2], u[3], u[4], h, yaw=u[5], z0=z0))
            else:
                out.append(Cylinder(u[1], u[2], u[3], h, z0=z0))
        return out
    raise ValueError(f"kind: unknown food kind {kind!r} (expected one of {FOOD_KINDS})")


def _item_extent(shapes: list[Shape]) -> tuple[np.ndarray, np.ndarray]:
    los, his = zip(*(s.bounds() for s in shapes))
    return np.min(los, axis=0), np.max(his, axis=0)


# --------------------------------------------------------------------------- dish
def _sensor_noise(rng: np.random.Generator, depth: np.ndarray) -> np.ndarray:
    """RealSense-like: noise std ~ z^2 (1 mm at 0.4 m), holes at depth edges, dropout
    blobs, 1e-4 m quantisation (0 = hole)."""
    H, W = depth.shape
    z = depth.astype(np.float64)
    sigma = 0.001 * (z / 0.4) ** 2
    low = cv2.resize(rng.standard_normal((H // 16 + 1, W // 16 + 1)).astype(np.float32),
                     (W, H), interpolation=cv2.INTER_CUBIC)
    noisy = z + sigma * (0.8 * rng.standard_normal((H, W), dtype=np.float32) + 0.6 * low)
    # depth discontinuities: relative jump to a neighbour
    jump = np.zeros((H, W), bool)
    dzx = np.abs(np.diff(z, axis=1)) > 0.012 * z[:, 1:]
    dzy = np.abs(np.diff(z, axis=0)) > 0.012 * z[1:, :]
    jump[:, 1:] |= dzx
    jump[:, :-1] |= dzx
    jump[1:, :] |= dzy
    jump[:-1, :] |= dzy
    edge = cv2.dilate(jump.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    holes = edge & (rng.random((H, W), dtype=np.float32) < rng.uniform(0.3, 0.7))
    blobs = np.zeros((H, W), np.uint8)
    scale = W / 640
    for _ in range(int(rng.integers(2, 9))):
        c = (int(rng.integers(0, W)), int(rng.integers(0, H)))
        ax = (max(1, int(rng.uniform(2, 9) * scale)), max(1, int(rng.uniform(2, 9) * scale)))
        cv2.ellipse(blobs, c, ax, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    holes |= blobs > 0
    holes |= rng.random((H, W), dtype=np.float32) < 0.002
    out = np.round(noisy / DEPTH_SCALE_M) * DEPTH_SCALE_M
    out[holes | ~(z > 0) | (out <= 0) | (out > 65535 * DEPTH_SCALE_M)] = 0.0
    return out.astype(np.float32)


RING_PX = 20  # floor ring (at 640x480) that the support-plane fit wants around the food


def _free_along(c: tuple[float, float], r: float, w: np.ndarray, R: float) -> float:
    """Flat floor between an item's footprint circle (centre c, radius r) and the floor
    edge (radius R), walking from the item along the horizontal unit vector w."""
    cw = c[0] * w[0] + c[1] * w[1]
    s = -cw + np.sqrt(max(cw * cw - (c[0] ** 2 + c[1] ** 2) + R * R, 0.0))
    return float(s - r)


def _view_ok(sc: "Scene", el: float, az: float, ring_m: float) -> bool:
    """Is a ring of floor around every item visible from (el, az)? Tall food overhangs the
    floor on the far side by h*cot(el); a rim or bowl wall hides wall_h*cot(el) of floor on
    the near side."""
    cot = 1.0 / np.tan(np.deg2rad(el))
    away = -np.array([np.cos(np.deg2rad(az)), np.sin(np.deg2rad(az))])  # away from camera
    for c, r, h in zip(sc.centres, sc.radii, sc.heights):
        if h * cot + ring_m > _free_along(c, r, away, sc.floor_r):
            return False
        if sc.wall_h * cot + ring_m > _free_along(c, r, -away, sc.floor_r):
            return False
    return True


def _camera(rng: np.random.Generator, W: int, H: int, target: np.ndarray,
            keep_in: np.ndarray, sc: "Scene") -> tuple[Camera, dict]:
    """Random view of the plate that keeps a floor ring around the food visible; backs off
    (then widens) until `keep_in` points are in frame."""
    el = rng.uniform(45, 90)
    az = rng.uniform(0, 360)
    dist = rng.uniform(0.20, 0.50)
    f640 = rng.uniform(480, 700)
    f = f640 * W / 640
    ring_m = 1.1 * RING_PX * dist / f640
    for _ in range(40):  # raise the camera a little at a time, trying several azimuths
        ok = [a for a in (az + rng.uniform(0, 360, 6)) if _view_ok(sc, el, a, ring_m)]
        if ok:
            az = float(ok[0]) % 360
            break
        el = min(el + 2.0, 90.0)
    cx = (W - 1) / 2 + rng.normal(0, 0.01 * W)
    cy = (H - 1) / 2 + rng.normal(0, 0.01 * H)
    return _fit_in_frame(el, az, dist, f, target, keep_in, W, H, cx, cy)


def _rig_camera(rng: np.random.Generator, W: int, H: int, target: np.ndarray,
                keep_in: np.ndarray, az: float) -> tuple[Camera, dict]:
    """The rig's overhead camera: ~0.41 m above the surrounding surface, nearly straight
    down, f ~ 616 px at 640x480 (RealSense D435 colour); image x along the rig's u axis."""
    el = rng.uniform(84, 90)
    height = rng.uniform(0.395, 0.425)
    dist = (height - target[2]) / np.sin(np.deg2rad(el))
    f = rng.uniform(595, 640) * W / 640
    cx = (W - 1) / 2 + rng.normal(0, 0.01 * W)
    cy = (H - 1) / 2 + rng.normal(0, 0.01 * H)
    return _fit_in_frame(el, az, dist, f, target, keep_in, W, H, cx, cy)


def _fit_in_frame(el: float, az: float, dist: float, f: float, target: np.ndarray,
                  keep_in: np.ndarray, W: int, H: int, cx: float, cy: float
                  ) -> tuple[Camera, dict]:
    """Back off (up to 0.5 m, then widen) until every `keep_in` point is in frame."""
    m = 4 * W / 640
    for _ in range(100):
        cam = Camera.look_at(el, az, dist, target=tuple(target), f_px=f, width=W, height=H,
                             cx=cx, cy=cy)
        uv, z = cam.project(keep_in)
        if (z > 0).all() and (uv[:, 0] >= m).all() and (uv[:, 0] <= W - 1 - m).all() \
                and (uv[:, 1] >= m).all() and (uv[:, 1] <= H - 1 - m).all():
            break
        if dist < 0.5:
            dist = min(dist * 1.06, 0.5)
        else:
            f *= 0.95
    else:
        raise RuntimeError("synthetic: could not fit the food in frame")
    return cam, dict(elevation_deg=float(el), azimuth_deg=float(az), distance_m=float(dist),
                     f_px=float(f), cx=float(cx), cy=float(cy))


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


def build_scene(rng: np.random.Generator, family: str = "table") -> Scene:
    """Vessel + food (+ the rig around it for the rig families), drawn from `rng`.
    Redraws (from the same rng, so still deterministic) the rare scene whose caps on item
    size left less than MIN_TOTAL_ML of food."""
    if family not in FAMILIES:
        raise ValueError(f"family: unknown scene family {family!r} (expected one of {FAMILIES})")
    base_z = 0.0 if family == "table" else float(rng.uniform(0.045, 0.055))
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
            pos = _pack(rng, centres, radii, r, R_use, ITEM_GAP_M)
            if pos is None:  # no room: a narrower (taller, up to its cap) item
                r *= 0.93
        if pos is None:
            continue
        centres.append(pos)
        radii.append(r)
        food.append(_make_item(rng, kind, pos[0], pos[1], r, float(v), z0))
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
                 heights=[float(_item_extent(it)[1][2] - floor_z) for it in food])


BOWL_SEGMENTS = 8  # piecewise-conical profile of a deep bowl


def _bowl_profile(floor_r: float, rim_r: float, depth: float, p: float,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(z above the floor, inner radius) of a round-bottomed steel bowl: flat near the
    floor, steep near the rim (r - floor_r ~ z^p, p < 1)."""
    zs = depth * np.arange(BOWL_SEGMENTS + 1) / BOWL_SEGMENTS
    return zs, floor_r + (rim_r - floor_r) * (zs / depth) ** p


def _fill(zs: np.ndarray, rs: np.ndarray, h: float, z0: float) -> list[Shape]:
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
    zs, rs = _bowl_profile(floor_r, rim_r, depth, p)
    vessel: list[Shape] = [Cylinder(0, 0, floor_r + thick, base_h, z0=base_z)]
    # the rig camera is above the rim and inside its radius: the flaring outside is hidden
    vessel += [Ring(0, 0, float(rs[k]), float(rs[k + 1]), thick, float(zs[k + 1] - zs[k]),
                    z0=floor_z + float(zs[k]), outer_wall=False) for k in range(BOWL_SEGMENTS)]
    # fill height for the drawn share of the volume (bisection on the exact frusta volume)
    want = total_ml * 1e-6 * rng.uniform(0.35, 0.75)
    lo, hi = 0.004, 0.6 * depth
    vol = lambda h: sum(s.volume_m3 for s in _fill(zs, rs, h, floor_z))  # noqa: E731
    if vol(hi) <= want:
        lo = hi
    elif vol(lo) < want:
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if vol(mid) < want else (lo, mid)
    h = lo
    fill = _fill(zs, rs, h, floor_z)
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
        food.append([_noisy_mound(rng, 0.0, 0.0, 0.97 * r_h, rest, top_z, n_bisect=14)])
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
                 heights=[float(_item_extent(it)[1][2] - floor_z) for it in food],
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


def dish_scene(seed: int, index: int, families: dict[str, float] | None = None,
               family: str | None = None) -> Scene:
    """The geometry `generate_dish(seed, index, ...)` renders (drawn first from the same rng)."""
    fam = family or family_of(seed, index, families)
    return build_scene(np.random.default_rng([int(seed), int(index)]), fam)


def generate_dish(seed: int, index: int, width: int = 640, height: int = 480,
                  noise: bool = True, families: dict[str, float] | None = None,
                  family: str | None = None) -> Dish:
    """One synthetic dish, a pure function of (seed, index) and the family mixture
    `families` (None: the original `table` dishes; `family` forces one); geometry and
    volumes do not depend on the image size."""
    if width < 32 or height < 32:
        raise ValueError(f"width/height: image too small ({width}x{height}, need >= 32)")
    fam = family or family_of(seed, index, families)
    rng = np.random.default_rng([int(seed), int(index)])
    W, H = int(width), int(height)
    sc = build_scene(rng, fam)
    food, kinds, item_looks = sc.food, sc.kinds, sc.looks
    centres, radii, floor_z = sc.centres, sc.radii, sc.floor_z
    vessel_shapes, vessel = sc.vessel_shapes, sc.vessel

    # ---- scene: food shapes first (labels < n_food are food), vessel, rig, surface
    shapes: list[Shape] = [s for item in food for s in item]
    item_of_shape = np.array([i for i, item in enumerate(food) for _ in item], np.int64)
    n_food = len(shapes)
    shapes += vessel_shapes + sc.extras + [Plane(0.0)]
    table_idx = len(shapes) - 1
    part_of_shape = np.array([PART["food"]] * n_food + [PART["vessel_floor"]]
                             + [PART["vessel"]] * (len(vessel_shapes) - 1) + sc.extra_parts
                             + [PART["surface"]], np.uint8)

    # ---- camera: food footprints + 15 mm and their tops must be in frame
    ang = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    pts = []
    for item, (x, y), r in zip(food, centres, radii):
        top = _item_extent(item)[1][2]
        for zz in (floor_z, top):
            rr = r + 0.015
            pts.append(np.stack([x + rr * np.cos(ang), y + rr * np.sin(ang),
                                 np.full_like(ang, zz)], 1))
    target = np.array([rng.normal(0, 0.008), rng.normal(0, 0.008), floor_z])
    if fam == "table":
        cam, cam_meta = _camera(rng, W, H, target, np.concatenate(pts), sc)
    else:
        if sc.frame_pts is not None:
            pts.append(sc.frame_pts)
        cam, cam_meta = _rig_camera(rng, W, H, target, np.concatenate(pts), sc.rig_az)

    # ---- geometry
    origin, dirs = cam.rays()
    depth, label, normals = render_full(shapes, cam, rays=(origin, dirs))
    hit = np.isfinite(depth)
    dflat, lflat = depth.ravel(), label.ravel()
    P = origin + np.where(np.isfinite(dflat), dflat, 0.0)[:, None] * dirs
    nflat = normals.reshape(-1, 3)
    parts = np.where(lflat >= 0, part_of_shape[np.maximum(lflat, 0)], PART["surface"])

    # ---- appearance
    tex = _noise_texture(rng)
    fine = _noise_texture(rng, base=32, octaves=2)
    albedo = np.zeros((H * W, 3))
    table_style = dict(kind=str(rng.choice(["wood", "cloth", "stone"], p=[0.45, 0.3, 0.25])),
                       angle=rng.uniform(0, np.pi), period=rng.uniform(0.006, 0.03))
    if table_style["kind"] == "wood":
        base = np.array([0.55, 0.36, 0.2]) * rng.uniform(0.7, 1.2)
        table_style.update(c1=tuple(base), c2=tuple(base * rng.uniform(0.6, 0.8)))
    elif table_style["kind"] == "cloth":
        table_style["period"] = rng.uniform(0.01, 0.03)
        c1 = rng.uniform(0.3, 0.9, 3)
        table_style.update(c1=tuple(c1), c2=tuple(np.clip(c1 * 0.5 + 0.45, 0, 1)))
    else:
        table_style.update(c1=tuple(rng.uniform(0.35, 0.75) * np.array([1.0, 0.97, 0.92])))
    if fam != "table":  # the rig stands on a white laminate bench
        table_style = dict(kind="stone", angle=0.0, period=0.01,
                           c1=tuple(rng.uniform(0.72, 0.9) * np.array([1.0, 0.99, 0.96])))
    sel = lflat == table_idx
    albedo[sel] = _table_albedo(P[sel], tex, table_style)
    plate_col = np.array([0.94, 0.94, 0.92])
    if rng.uniform() < 0.4:  # a tinted plate
        plate_col = 0.5 * plate_col + 0.5 * rng.uniform(0.4, 0.95, 3)
    sel = (lflat >= n_food) & (lflat < n_food + len(vessel_shapes))
    n1 = _sample(tex, P[sel, 0] / 0.5 * 256, P[sel, 1] / 0.5 * 256)
    albedo[sel] = plate_col[None] * (1 + 0.02 * n1[:, None])
    if fam != "table":
        _rig_albedo(rng, albedo, parts, P, tex)
    for i, look in enumerate(item_looks):
        sel = np.isin(lflat, np.nonzero(item_of_shape == i)[0]) & (lflat < n_food)
        albedo[sel] = _food_albedo(P[sel], tex, fine, look, seed_off=0.37 * i)

    # ---- light: Lambert + ambient + soft shadows of the food (point light far away)
    l_el, l_az = np.deg2rad(rng.uniform(35, 80)), rng.uniform(0, 2 * np.pi)
    L = np.array([np.cos(l_el) * np.cos(l_az), np.cos(l_el) * np.sin(l_az),
                  np.sin(l_el)])
    ambient = rng.uniform(0.3, 0.5)
    lam = np.clip(nflat[:, 0] * L[0] + nflat[:, 1] * L[1] + nflat[:, 2] * L[2], 0, 1)
    shadow = np.zeros(H * W)
    light_pos = np.array([target[0], target[1], 0.0]) + 3.0 * L
    lo = np.min([s.bounds()[0] for s in shapes[:n_food]], axis=0)
    hi = np.max([s.bounds()[1] for s in shapes[:n_food]], axis=0)
    reach = (hi[2] - floor_z) / np.tan(l_el) + 0.01
    near = hit.ravel() & (P[:, 0] > lo[0] - reach) & (P[:, 0] < hi[0] + reach) \
        & (P[:, 1] > lo[1] - reach) & (P[:, 1] < hi[1] + reach) & (lam > 0)
    idx = np.nonzero(near)[0]
    if idx.size:
        sdirs = P[idx] - light_pos  # t = 1 at the surface point
        blocked = np.zeros(idx.size, bool)
        for s in shapes[:n_food]:
            if isinstance(s, Frustum):  # a bowl's food layer shades nothing in view
                continue
            t, _ = intersect_culled(s, light_pos, sdirs)
            blocked |= t < 1 - 1e-4
        shadow[idx[blocked]] = 1.0
    shadow = cv2.GaussianBlur(shadow.reshape(H, W).astype(np.float32), (0, 0),
                              1.5 * W / 640).ravel()
    shade = ambient + (1 - ambient) * lam * (1 - 0.85 * shadow)
    light_col = np.array([1.0, 0.97, 0.92]) * rng.uniform(0.9, 1.1)
    rgb = albedo * shade[:, None] * light_col[None]
    metal = _metal_pixels(sc, parts)
    steel = metal & (parts != PART["rail"])  # rails: dark anodised, shaded like the rest
    if steel.any():  # steel: environment reflection + highlight instead of Lambert
        rgb[steel] = _steel(rng, dirs[steel], nflat[steel], L, tex, shade[steel]) * light_col[None]
    rgb = rgb.reshape(H, W, 3) + 0.008 * rng.standard_normal((H, W, 3), dtype=np.float32)
    rgb_u8 = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)

    # ---- outputs
    if sc.info.get("platform_glass"):  # depth through the clear platform top: the bench
        see = parts == PART["platform"]
        depth.ravel()[see] = -origin[2] / dirs[see, 2]
    depth_clean = np.where(hit, depth, 0.0).astype(np.float32)
    mask = (label >= 0) & (label < n_food)
    items = np.zeros((H, W), np.int16)
    items[mask] = (item_of_shape[label[mask]] + 1).astype(np.int16)
    item_vols = [float(sum(s.volume_m3 for s in item) * 1e6) for item in food]
    mass_g, densities = dish_mass(seed, index, item_looks, item_vols)   # own random stream
    hole_frac = 0.0
    if noise:
        depth_noisy = _sensor_noise(rng, depth_clean)
        if fam != "table":  # the rig's D435: stereo occlusion bands beside raised objects
            depth_noisy[_stereo_shadow(depth_clean, cam.K[0, 0])] = 0.0
        if metal.any():
            hole_frac = float(rng.uniform(0.25, 0.38))
            view = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
            cosang = np.abs(np.sum(view * nflat, axis=1)).reshape(H, W)
            _metal_holes(rng, depth_noisy, metal.reshape(H, W), cosang, hole_frac)
    else:
        depth_noisy = depth_clean.copy()
    meta = dict(cam_meta, seed=int(seed), index=int(index), scene=fam, vessel=vessel,
                floor_z_m=float(floor_z), floor_radius_m=sc.floor_r,
                vessel_outer_radius_m=sc.outer_r, target=target.tolist(),
                n_items=len(food), item_looks=item_looks, table=table_style["kind"],
                light_dir=L.tolist(), ambient=float(ambient), total_ml_target=sc.total_ml_target,
                mass_g=mass_g, item_densities_g_ml=densities.round(4).tolist(),
                R=cam.R.tolist(), t=cam.t.tolist())
    if fam != "table":
        meta.update(platform_z_m=sc.platform_z, metal=sc.metal, metal_hole_fraction=hole_frac,
                    **sc.info)
    return Dish(rgb=rgb_u8, depth=depth_noisy, depth_clean=depth_clean, mask=mask, items=items,
                K=cam.K.copy(), item_volumes_ml=item_vols, item_kinds=kinds,
                volume_ml_true=float(sum(item_vols)), meta=meta, parts=parts.reshape(H, W))


STEREO_BASELINE_M = 0.05  # RealSense D435 IR pair


def _stereo_shadow(depth: np.ndarray, f_px: float, baseline: float = STEREO_BASELINE_M
                   ) -> np.ndarray:
    """Pixels the second IR camera cannot see (no stereo match, so no depth): left of a
    nearer object, a band as wide as the disparity jump (~11 px for the plate's 5 cm at
    0.36 m): u is hidden when some u + k has a disparity larger by >= k."""
    disp = np.where(depth > 0, baseline * f_px / np.maximum(depth, 1e-6), 0.0)
    hidden = np.zeros(depth.shape, bool)
    k_max = int(np.ceil(disp.max() - disp[depth > 0].min())) if (depth > 0).any() else 0
    for k in range(1, min(k_max, depth.shape[1] - 1) + 1):
        hidden[:, :-k] |= disp[:, k:] - disp[:, :-k] >= k
    return hidden


def _metal_pixels(sc: Scene, parts: np.ndarray) -> np.ndarray:
    """Specular surfaces without depth in places: a steel vessel and the frame rails."""
    out = parts == PART["rail"]
    if sc.metal:
        out |= (parts == PART["vessel"]) | (parts == PART["vessel_floor"])
    return out


def _rig_albedo(rng: np.random.Generator, albedo: np.ndarray, parts: np.ndarray,
                P: np.ndarray, tex: np.ndarray) -> None:
    """Colours of the rig: light grey platform, near-black rails and cable."""
    sel = parts == PART["platform"]
    col = rng.uniform(0.6, 0.85) * np.array([0.95, 0.97, 1.0])
    n1 = _sample(tex, P[sel, 0] / 0.3 * 256, P[sel, 1] / 0.3 * 256)
    albedo[sel] = col[None] * (1 + 0.04 * n1[:, None])
    for name, lo, hi in (("rail", 0.06, 0.16), ("cable", 0.03, 0.10)):
        sel = parts == PART[name]
        albedo[sel] = rng.uniform(lo, hi) * np.array([1.0, 0.97, 0.95])[None]


def _steel(rng: np.random.Generator, d: np.ndarray, n: np.ndarray, L: np.ndarray,
           tex: np.ndarray, shade: np.ndarray) -> np.ndarray:
    """Brushed steel: a blurred environment seen in the mirror direction (streaks that follow
    the bowl's curvature) plus a sharp highlight of the light."""
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    r = d - 2 * np.sum(d * n, axis=1, keepdims=True) * n
    env = _sample(tex, np.arctan2(r[:, 1], r[:, 0]) / np.pi * 128, (1 + r[:, 2]) * 40)
    spec = np.clip(r @ L, 0, 1) ** 40
    base = rng.uniform(0.6, 0.85) * np.array([0.97, 0.96, 0.95])
    k = (0.3 + 0.7 * (0.5 + 0.5 * env)) * (0.55 + 0.45 * shade)
    return base[None] * k[:, None] + 0.8 * spec[:, None]


def _metal_holes(rng: np.random.Generator, depth: np.ndarray, metal: np.ndarray,
                 cosang: np.ndarray, frac: float) -> None:
    """Specular metal returns no depth where its surface turns away from the camera (steep
    walls, the rim) and in blotches elsewhere: the `frac` of metal pixels with the highest
    steepness + blotch score become holes (in place)."""
    H, W = depth.shape
    blot = cv2.resize(rng.standard_normal((H // 12 + 1, W // 12 + 1)).astype(np.float32),
                      (W, H), interpolation=cv2.INTER_CUBIC)
    score = 2.0 * (1 - cosang) + 0.5 * blot + 0.2 * rng.standard_normal((H, W), dtype=np.float32)
    thr = np.quantile(score[metal], 1 - frac)
    depth[metal & (score > thr)] = 0.0
