"""Appearance of a synthetic dish: the table, vessel, rig and food albedos, brushed steel, and the
light (Lambert + ambient + soft shadows of the food from a far point light). Colour only: nothing
here moves geometry, depth or volumes."""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.data.food_items import FOOD_LOOKS
from pipeline.data.scene import PART
from pipeline.data.shapes import Frustum, Shape, intersect_culled
from pipeline.data.textures import sample_texture


def draw_table_style(rng: np.random.Generator, rig: bool) -> dict:
    """Surface under the dish: wood, cloth or stone for table scenes; the rig stands on a white
    laminate bench (the table draw still happens first, so table dishes keep their stream)."""
    style = dict(kind=str(rng.choice(["wood", "cloth", "stone"], p=[0.45, 0.3, 0.25])),
                 angle=rng.uniform(0, np.pi), period=rng.uniform(0.006, 0.03))
    if style["kind"] == "wood":
        base = np.array([0.55, 0.36, 0.2]) * rng.uniform(0.7, 1.2)
        style.update(c1=tuple(base), c2=tuple(base * rng.uniform(0.6, 0.8)))
    elif style["kind"] == "cloth":
        style["period"] = rng.uniform(0.01, 0.03)
        c1 = rng.uniform(0.3, 0.9, 3)
        style.update(c1=tuple(c1), c2=tuple(np.clip(c1 * 0.5 + 0.45, 0, 1)))
    else:
        style.update(c1=tuple(rng.uniform(0.35, 0.75) * np.array([1.0, 0.97, 0.92])))
    if rig:
        style = dict(kind="stone", angle=0.0, period=0.01,
                     c1=tuple(rng.uniform(0.72, 0.9) * np.array([1.0, 0.99, 0.96])))
    return style


def table_albedo(P: np.ndarray, tex: np.ndarray, style: dict) -> np.ndarray:
    """Surface colour at points P (N,3) for a `draw_table_style` style."""
    x, y = P[:, 0], P[:, 1]
    c, s = np.cos(style["angle"]), np.sin(style["angle"])
    xr, yr = c * x + s * y, -s * x + c * y
    if style["kind"] == "wood":
        warp = sample_texture(tex, xr / 2.0 * 256, yr / 0.6 * 256)
        grain = 0.5 + 0.5 * np.sin(2 * np.pi * yr / style["period"] + 4.0 * warp)
        fine = sample_texture(tex, xr / 0.4 * 256, yr / 0.03 * 256)
        a = np.asarray(style["c1"]), np.asarray(style["c2"])
        col = a[0][None] * (1 - grain[:, None]) + a[1][None] * grain[:, None]
        return col * (1 + 0.08 * fine[:, None])
    if style["kind"] == "cloth":
        cx = (np.floor(xr / style["period"]) % 2).astype(np.float32)
        cy = (np.floor(yr / style["period"]) % 2).astype(np.float32)
        w = 0.5 * (cx + cy)
        weave = sample_texture(tex, xr / 0.06 * 256, yr / 0.06 * 256)
        a = np.asarray(style["c1"]), np.asarray(style["c2"])
        col = a[0][None] * (1 - w[:, None]) + a[1][None] * w[:, None]
        return col * (1 + 0.07 * weave[:, None])
    n1 = sample_texture(tex, x / 1.5 * 256, y / 1.5 * 256)  # stone / laminate
    n2 = sample_texture(tex, x / 0.15 * 256, y / 0.15 * 256)
    return np.asarray(style["c1"])[None] * (1 + 0.10 * n1[:, None] + 0.05 * n2[:, None])


def vessel_albedo(rng: np.random.Generator, P: np.ndarray, tex: np.ndarray) -> np.ndarray:
    """Plate or bowl at points P (N,3): off-white, or tinted on 40 % of the dishes."""
    plate_col = np.array([0.94, 0.94, 0.92])
    if rng.uniform() < 0.4:  # a tinted plate
        plate_col = 0.5 * plate_col + 0.5 * rng.uniform(0.4, 0.95, 3)
    n1 = sample_texture(tex, P[:, 0] / 0.5 * 256, P[:, 1] / 0.5 * 256)
    return plate_col[None] * (1 + 0.02 * n1[:, None])


def food_albedo(P: np.ndarray, tex: np.ndarray, fine: np.ndarray, look: str,
                seed_off: float) -> np.ndarray:
    """`tex`: broad fractal noise; `fine`: grain-sized noise (no visible tiling)."""
    base, low, high = FOOD_LOOKS[look]
    x, y, z = P[:, 0] + seed_off, P[:, 1] - seed_off, P[:, 2]
    n_low = sample_texture(tex, (x + 0.7 * z) / 0.8 * 256, (y + 0.4 * z) / 0.8 * 256)
    n_high = sample_texture(fine, (x + 0.5 * z) / 0.15 * 256, (y - 0.5 * z) / 0.15 * 256)
    col = np.asarray(base)[None] * (1 + low * n_low[:, None] + high * n_high[:, None])
    if look == "greens":  # leafy: mix of darker and yellower patches
        mix = np.clip(0.5 + n_low, 0, 1)[:, None]
        col = col * (1 - 0.4 * mix) + np.array([0.45, 0.62, 0.2])[None] * 0.4 * mix
    if look in ("rice", "beans"):  # grains: small bright specks on a darker base
        n_g = sample_texture(fine, (x - 0.3 * z) / 0.08 * 256, (y + 0.6 * z) / 0.08 * 256)
        col = col * (0.82 + 0.22 * (n_g[:, None] > 0.05))
    return col



def rig_albedo(rng: np.random.Generator, albedo: np.ndarray, parts: np.ndarray,
               P: np.ndarray, tex: np.ndarray) -> None:
    """Colours of the rig: light grey platform, near-black rails and cable."""
    sel = parts == PART["platform"]
    col = rng.uniform(0.6, 0.85) * np.array([0.95, 0.97, 1.0])
    n1 = sample_texture(tex, P[sel, 0] / 0.3 * 256, P[sel, 1] / 0.3 * 256)
    albedo[sel] = col[None] * (1 + 0.04 * n1[:, None])
    for name, lo, hi in (("rail", 0.06, 0.16), ("cable", 0.03, 0.10)):
        sel = parts == PART[name]
        albedo[sel] = rng.uniform(lo, hi) * np.array([1.0, 0.97, 0.95])[None]


def steel_colour(rng: np.random.Generator, d: np.ndarray, n: np.ndarray, L: np.ndarray,
                 tex: np.ndarray, shade: np.ndarray) -> np.ndarray:
    """Brushed steel: a blurred environment seen in the mirror direction (streaks that follow
    the bowl's curvature) plus a sharp highlight of the light."""
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    r = d - 2 * np.sum(d * n, axis=1, keepdims=True) * n
    env = sample_texture(tex, np.arctan2(r[:, 1], r[:, 0]) / np.pi * 128, (1 + r[:, 2]) * 40)
    spec = np.clip(r @ L, 0, 1) ** 40
    base = rng.uniform(0.6, 0.85) * np.array([0.97, 0.96, 0.95])
    k = (0.3 + 0.7 * (0.5 + 0.5 * env)) * (0.55 + 0.45 * shade)
    return base[None] * k[:, None] + 0.8 * spec[:, None]



def light(rng: np.random.Generator, food: list[Shape], P: np.ndarray, normals: np.ndarray,
          hit: np.ndarray, target: np.ndarray, floor_z: float, H: int, W: int
          ) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """A far point light: (direction L, ambient, per-pixel shade, light colour). Shade is
    Lambert + ambient, darkened by the soft shadows the food solids cast (shadow rays only
    near the food, where a shadow can fall). P, normals: (H*W, 3) hit points and normals."""
    l_el, l_az = np.deg2rad(rng.uniform(35, 80)), rng.uniform(0, 2 * np.pi)
    L = np.array([np.cos(l_el) * np.cos(l_az), np.cos(l_el) * np.sin(l_az),
                  np.sin(l_el)])
    ambient = rng.uniform(0.3, 0.5)
    lam = np.clip(normals[:, 0] * L[0] + normals[:, 1] * L[1] + normals[:, 2] * L[2], 0, 1)
    shadow = np.zeros(H * W)
    light_pos = np.array([target[0], target[1], 0.0]) + 3.0 * L
    lo = np.min([s.bounds()[0] for s in food], axis=0)
    hi = np.max([s.bounds()[1] for s in food], axis=0)
    reach = (hi[2] - floor_z) / np.tan(l_el) + 0.01
    near = hit.ravel() & (P[:, 0] > lo[0] - reach) & (P[:, 0] < hi[0] + reach) \
        & (P[:, 1] > lo[1] - reach) & (P[:, 1] < hi[1] + reach) & (lam > 0)
    idx = np.nonzero(near)[0]
    if idx.size:
        sdirs = P[idx] - light_pos  # t = 1 at the surface point
        blocked = np.zeros(idx.size, bool)
        for s in food:
            if isinstance(s, Frustum):  # a bowl's food layer shades nothing in view
                continue
            t, _ = intersect_culled(s, light_pos, sdirs)
            blocked |= t < 1 - 1e-4
        shadow[idx[blocked]] = 1.0
    shadow = cv2.GaussianBlur(shadow.reshape(H, W).astype(np.float32), (0, 0),
                              1.5 * W / 640).ravel()
    shade = ambient + (1 - ambient) * lam * (1 - 0.85 * shadow)
    light_col = np.array([1.0, 0.97, 0.92]) * rng.uniform(0.9, 1.1)
    return L, ambient, shade, light_col
