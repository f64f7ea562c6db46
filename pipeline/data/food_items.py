"""The food catalogue of the synthetic dishes: the solid kinds an item can take (each with an
exact volume, sized to a target volume inside its footprint circle) and the looks (albedo and
texture classes) it can wear; `pipeline.data.density` gives each look a bulk density."""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.data.shapes import Box, Cone, Cylinder, Ellipsoid, HeightField, Shape, SphereCap
from pipeline.data.textures import noise_texture

MAX_FOOD_H_M = 0.09
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


def _solve_cap_height(volume: float, a: float) -> float:
    """Height h of a spherical cap with base radius a and volume V: h^3 + 3a^2 h = 6V/pi."""
    p, q = 3 * a * a, -6 * volume / np.pi
    disc = np.sqrt(q * q / 4 + p ** 3 / 27)
    return float(np.cbrt(-q / 2 + disc) + np.cbrt(-q / 2 - disc))


def noisy_mound(rng: np.random.Generator, cx: float, cy: float, r: float, volume: float,
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
    tex = noise_texture(rng, size=64, base=4, octaves=3)
    noise = cv2.resize(tex, (n + 2, n + 2), interpolation=cv2.INTER_LINEAR)
    hgt = bump * (1 + 0.25 * noise)
    hgt[0], hgt[-1], hgt[:, 0], hgt[:, -1] = 0, 0, 0, 0
    hgt = np.clip(hgt, 0, None)
    hf = HeightField(cx - r - cell, cy - r - cell, cell, hgt, z0=z0)
    c = min(volume / hf.volume_m3, min(MAX_FOOD_H_M, 1.3 * r) / hgt.max())
    return HeightField(cx - r - cell, cy - r - cell, cell, hgt * c, z0=z0, n_bisect=n_bisect)


def pack_circle(rng: np.random.Generator, centres: list, radii: list, r: float, R: float,
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


def make_item(rng: np.random.Generator, kind: str, x: float, y: float, r: float,
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
        return [noisy_mound(rng, x, y, r, volume, z0)]
    if kind == "pile":
        n_try = int(rng.integers(4, 12))
        piece_r = r * rng.uniform(0.22, 0.36)
        cs: list = []
        rs: list = []
        for _ in range(n_try):
            pr = piece_r * rng.uniform(0.75, 1.0)
            pos = pack_circle(rng, cs, rs, pr, r, 0.002, tries=60)
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


def item_extent(shapes: list[Shape]) -> tuple[np.ndarray, np.ndarray]:
    los, his = zip(*(s.bounds() for s in shapes))
    return np.min(los, axis=0), np.max(his, axis=0)

