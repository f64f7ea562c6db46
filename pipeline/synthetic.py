"""Procedural synthetic dishes: the embedded default data set.

Why: the pipeline must train, label and evaluate without any download, and synthetic
dishes come with exact truth (analytic volumes, clean depth, masks). Each dish is a
textured table, a plate or shallow bowl, and 1-4 non-overlapping food items sitting on
the flat floor, ray cast exactly by `pipeline.shapes`, then shaded (Lambert + ambient +
soft shadows) and, optionally, given RealSense-like depth noise and holes.
Everything is a pure function of (seed, index).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from pipeline.shapes import (Box, Camera, Cone, Cylinder, Ellipsoid, HeightField, Plane,
                             Ring, Shape, SphereCap, intersect_culled, render_full)

FOOD_MARGIN_M = 0.028   # food footprint to rim/wall/plate edge: a flat ring for plane fitting
ITEM_GAP_M = 0.006      # between food footprints (items must not overlap)
MAX_FOOD_H_M = 0.09
DEPTH_UNIT_M = 1e-4     # PNG unit (SPEC.md)
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
                 z0: float) -> HeightField:
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
    return HeightField(cx - r - cell, cy - r - cell, cell, hgt * c, z0=z0)


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
    out = np.round(noisy / DEPTH_UNIT_M) * DEPTH_UNIT_M
    out[holes | ~(z > 0) | (out <= 0) | (out > 65535 * DEPTH_UNIT_M)] = 0.0
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
    vessel_shapes: list[Shape]
    vessel: str
    floor_z: float
    floor_r: float
    outer_r: float
    total_ml_target: float
    wall_h: float = 0.0       # rim / bowl wall height above the floor
    heights: list[float] = field(default_factory=list)  # top of each item above the floor


MIN_TOTAL_ML = 25.0


def build_scene(rng: np.random.Generator) -> Scene:
    """Vessel + 1-4 non-overlapping food items on its flat floor (draws from `rng`).
    Redraws (from the same rng, so still deterministic) the rare scene whose caps on item
    size left less than MIN_TOTAL_ML of food."""
    for _ in range(20):
        sc = _draw_scene(rng)
        if sum(s.volume_m3 for it in sc.food for s in it) * 1e6 >= MIN_TOTAL_ML:
            break
    return sc


def _draw_scene(rng: np.random.Generator) -> Scene:
    edges = VOLUME_BINS_ML
    b = int(rng.integers(len(edges) - 1))
    total_ml = float(np.exp(rng.uniform(np.log(edges[b]), np.log(edges[b + 1]))))
    vessel = "bowl" if total_ml < 400 and rng.uniform() < 0.4 else "plate"
    vessel_shapes: list[Shape] = []
    if vessel == "plate":
        floor_r = rng.uniform(0.095, 0.135) if total_ml < 450 else rng.uniform(0.115, 0.14)
        floor_z = rng.uniform(0.004, 0.015)
        outer = floor_r
        if rng.uniform() < 0.65:  # low, flaring rim
            flare, thick = rng.uniform(0.008, 0.02), rng.uniform(0.003, 0.005)
            rim = Ring(0, 0, floor_r, floor_r + flare, thick, rng.uniform(0.004, 0.010), z0=floor_z)
            vessel_shapes.append(rim)
            outer = floor_r + flare + thick
        vessel_shapes.insert(0, Cylinder(0, 0, outer, floor_z))
    else:
        floor_r = rng.uniform(0.085, 0.115)
        floor_z = rng.uniform(0.008, 0.015)
        thick = rng.uniform(0.004, 0.006)
        wall_h = rng.uniform(0.022, 0.04)
        flare = rng.uniform(0.02, 0.04)
        vessel_shapes = [Cylinder(0, 0, floor_r + thick, floor_z),
                         Ring(0, 0, floor_r, floor_r + flare, thick, wall_h, z0=floor_z)]
        outer = floor_r + flare + thick
    R_use = floor_r - FOOD_MARGIN_M - (0.004 if vessel == "bowl" else 0.0)

    n_items = int(rng.choice([1, 2, 3, 4], p=[0.3, 0.3, 0.25, 0.15] if total_ml < 450
                             else [0.4, 0.35, 0.15, 0.1]))
    fractions = rng.dirichlet(np.full(n_items, 2.0))
    vols = np.sort(total_ml * 1e-6 * fractions)[::-1]
    looks = list(FOOD_LOOKS)
    centres: list = []
    radii: list = []
    food: list[list[Shape]] = []
    kinds: list[str] = []
    item_looks: list[str] = []
    for v, frac in zip(vols, vols / vols.sum()):
        kind = str(rng.choice(FOOD_KINDS, p=[0.2, 0.15, 0.13, 0.1, 0.07, 0.15, 0.2]))
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
        food.append(_make_item(rng, kind, pos[0], pos[1], r, float(v), floor_z))
        kinds.append(kind)
        item_looks.append(str(rng.choice(looks)))
    if not food:
        raise RuntimeError("synthetic: no food item placed")
    return Scene(food=food, kinds=kinds, looks=item_looks, centres=centres, radii=radii,
                 vessel_shapes=vessel_shapes, vessel=vessel, floor_z=float(floor_z),
                 floor_r=float(floor_r), outer_r=float(outer), total_ml_target=total_ml,
                 wall_h=max([v.height for v in vessel_shapes if isinstance(v, Ring)], default=0.0),
                 heights=[float(_item_extent(it)[1][2] - floor_z) for it in food])


def dish_scene(seed: int, index: int) -> Scene:
    """The geometry `generate_dish(seed, index)` renders (drawn first from the same rng)."""
    return build_scene(np.random.default_rng([int(seed), int(index)]))


def generate_dish(seed: int, index: int, width: int = 640, height: int = 480,
                  noise: bool = True) -> Dish:
    """One synthetic dish, a pure function of (seed, index); geometry and volumes do not
    depend on the image size."""
    if width < 32 or height < 32:
        raise ValueError(f"width/height: image too small ({width}x{height}, need >= 32)")
    rng = np.random.default_rng([int(seed), int(index)])
    W, H = int(width), int(height)
    sc = build_scene(rng)
    food, kinds, item_looks = sc.food, sc.kinds, sc.looks
    centres, radii, floor_z = sc.centres, sc.radii, sc.floor_z
    vessel_shapes, vessel = sc.vessel_shapes, sc.vessel

    # ---- scene: food shapes first (labels < n_food are food), vessel, table
    shapes: list[Shape] = [s for item in food for s in item]
    item_of_shape = np.array([i for i, item in enumerate(food) for _ in item], np.int64)
    n_food = len(shapes)
    shapes += vessel_shapes + [Plane(0.0)]
    table_idx = len(shapes) - 1

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
    cam, cam_meta = _camera(rng, W, H, target, np.concatenate(pts), sc)

    # ---- geometry
    origin, dirs = cam.rays()
    depth, label, normals = render_full(shapes, cam, rays=(origin, dirs))
    hit = np.isfinite(depth)
    dflat, lflat = depth.ravel(), label.ravel()
    P = origin + np.where(np.isfinite(dflat), dflat, 0.0)[:, None] * dirs
    nflat = normals.reshape(-1, 3)

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
    sel = lflat == table_idx
    albedo[sel] = _table_albedo(P[sel], tex, table_style)
    plate_col = np.array([0.94, 0.94, 0.92])
    if rng.uniform() < 0.4:  # a tinted plate
        plate_col = 0.5 * plate_col + 0.5 * rng.uniform(0.4, 0.95, 3)
    sel = (lflat >= n_food) & (lflat < table_idx)
    n1 = _sample(tex, P[sel, 0] / 0.5 * 256, P[sel, 1] / 0.5 * 256)
    albedo[sel] = plate_col[None] * (1 + 0.02 * n1[:, None])
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
            t, _ = intersect_culled(s, light_pos, sdirs)
            blocked |= t < 1 - 1e-4
        shadow[idx[blocked]] = 1.0
    shadow = cv2.GaussianBlur(shadow.reshape(H, W).astype(np.float32), (0, 0),
                              1.5 * W / 640).ravel()
    shade = ambient + (1 - ambient) * lam * (1 - 0.85 * shadow)
    light_col = np.array([1.0, 0.97, 0.92]) * rng.uniform(0.9, 1.1)
    rgb = albedo * shade[:, None] * light_col[None]
    rgb = rgb.reshape(H, W, 3) + 0.008 * rng.standard_normal((H, W, 3), dtype=np.float32)
    rgb_u8 = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)

    # ---- outputs
    depth_clean = np.where(hit, depth, 0.0).astype(np.float32)
    mask = (label >= 0) & (label < n_food)
    items = np.zeros((H, W), np.int16)
    items[mask] = (item_of_shape[label[mask]] + 1).astype(np.int16)
    item_vols = [float(sum(s.volume_m3 for s in item) * 1e6) for item in food]
    meta = dict(cam_meta, seed=int(seed), index=int(index), vessel=vessel,
                floor_z_m=float(floor_z), floor_radius_m=sc.floor_r,
                vessel_outer_radius_m=sc.outer_r, target=target.tolist(),
                n_items=len(food), item_looks=item_looks, table=table_style["kind"],
                light_dir=L.tolist(), ambient=float(ambient), total_ml_target=sc.total_ml_target,
                R=cam.R.tolist(), t=cam.t.tolist())
    return Dish(rgb=rgb_u8,
                depth=_sensor_noise(rng, depth_clean) if noise else depth_clean.copy(),
                depth_clean=depth_clean, mask=mask, items=items, K=cam.K.copy(),
                item_volumes_ml=item_vols, item_kinds=kinds,
                volume_ml_true=float(sum(item_vols)), meta=meta)
