"""Food levelled flush in a bowl: its floor is hidden, so the label is an estimate from what is
known on the rig, with an uncertainty (issue 18).

Known: the bowl stands on the base (platform or surround), so its inner floor lies about
FLOOR_M above it; its rim and the inner wall between the rim and the food are seen. The wall is
modelled as r(z) = r_f + (r_t - r_f) ((z - z_f) / (z_t - z_f))^p (flat floor of radius r_f at z_f,
rim radius r_t at z_t; p < 1 a round bowl, p = 1 a cone), fitted on the visible wall for every p
in a range; the food under the level is the cavity below it. The uncertainty is the spread of
that volume over the wall shapes that fit the visible wall about as well as the best one and
over the floor height +- FLOOR_UNC_M. The result is a bowl_surface support (the one volume
implementation, pipeline.masks.support.volume_above_support, integrates it).
"""
from __future__ import annotations

import numpy as np

from pipeline.masks.support import Support

FLOOR_M = 0.006          # a bowl's inner floor above what it stands on (bottom and foot) ...
FLOOR_UNC_M = 0.003      # ... give or take this
P_GRID = np.linspace(0.45, 1.0, 12)   # wall exponents of round to conical bowls ...
FLOOR_SHARE = (0.0, 0.7)  # ... and flat floors spanning up to this share of the rim radius
                         # (0: a round bowl, a spherical cap, or a cone to its tip)
FIT_SLACK = 1.25         # wall shapes whose RMS is within this factor of the best are plausible
MIN_WALL_PX = 200        # fewer visible wall pixels: no estimate


def _fit(r: np.ndarray, z: np.ndarray, z_f: float, z_t: float, p: float) -> tuple[float, float, float]:
    """(r_f, r_t, rms) of the wall model with exponent p (linear least squares in r_f, r_t)."""
    s = np.clip((z - z_f) / (z_t - z_f), 0, 1) ** p
    A = np.c_[1 - s, s]
    (rf, rt), *_ = np.linalg.lstsq(A, r, rcond=None)
    rf = float(np.clip(rf, 0.0, rt))
    return rf, float(rt), float(np.sqrt(np.mean((A @ [rf, rt] - r) ** 2)))


def _cavity_ml(rf: float, rt: float, p: float, z_f: float, z_t: float, level: float) -> float:
    z = np.linspace(z_f, level, 200)
    rr = rf + (rt - rf) * np.clip((z - z_f) / (z_t - z_f), 0, 1) ** p
    return float(np.trapezoid(np.pi * rr ** 2, z) * 1e6)


def levelled_bowl(r: np.ndarray, z: np.ndarray, level: float, rim_h: float, normal, d: float,
                  centre, floor_m: float | None = None) -> Support | None:
    """The bowl surface under food levelled at height `level` (m above the base plane
    normal.X + d = 0), from the visible wall pixels' radii `r` and heights `z`; None when
    too little wall is seen. `floor_m`: the floor's height above the base when known otherwise
    (the release's typical vessel floor), else FLOOR_M. `uncertainty`: relative half-range of
    the cavity volume."""
    z_floor = FLOOR_M if floor_m is None else float(floor_m)
    if level - z_floor < 0.004:
        return None
    wall = (z > level + 0.004) & (z < rim_h - 0.002)
    if wall.sum() < MIN_WALL_PX or rim_h - level < 0.008:
        return None
    r, z = r[wall], z[wall]
    # the visible upper wall rarely tells the shape below the level: every typical bowl shape
    # that fits it is kept; the estimate is the middle of their volumes, the spread its uncertainty
    fits = [(p, *_fit(r, z, z_floor, rim_h, p)) for p in P_GRID]
    best_rms = min(f[3] for f in fits)
    ok = [f for f in fits if f[3] <= FIT_SLACK * best_rms + 2e-4
          and FLOOR_SHARE[0] <= f[1] / max(f[2], 1e-6) <= FLOOR_SHARE[1]] or \
        [min(fits, key=lambda f: f[3])]
    vols = [_cavity_ml(f[1], f[2], f[0], z_f, rim_h, level)
            for f in ok for z_f in (z_floor - FLOOR_UNC_M, z_floor, z_floor + FLOOR_UNC_M)]
    mid = 0.5 * (max(vols) + min(vols))
    unc = float((max(vols) - min(vols)) / 2 / max(mid, 1e-6))
    p, rf, rt, _ = min(ok, key=lambda f: abs(_cavity_ml(f[1], f[2], f[0], z_floor, rim_h, level) - mid))
    zs = np.linspace(z_floor, rim_h, 40)
    radii = rf + (rt - rf) * ((zs - z_floor) / (rim_h - z_floor)) ** p
    radii = np.maximum.accumulate(np.maximum(radii, 1e-4) + np.arange(len(zs)) * 1e-7)
    return Support("bowl_surface", [float(x) for x in normal], float(d),
                   [float(centre[0]), float(centre[1])], [0.0] + [round(float(x), 5) for x in radii],
                   [round(z_floor, 5)] + [round(float(x), 5) for x in zs],
                   round(float(np.mean(np.abs(_model(r, z, rf, rt, p, z_floor, rim_h)) < 0.004)), 4),
                   uncertainty=round(unc, 4), wall_exponent=round(float(p), 3))


def _model(r, z, rf, rt, p, z_f, z_t):
    return r - (rf + (rt - rf) * np.clip((z - z_f) / (z_t - z_f), 0, 1) ** p)


def radius_at(support: Support, height: float) -> float:
    """Radius of the fitted bowl surface at a height above the base plane."""
    return float(np.interp(height, support.heights[1:], support.radii[1:]))


def cavity_ml(support: Support, level: float) -> float:
    """Volume (mL) of the fitted bowl surface's cavity from its floor up to `level`."""
    z, r = np.asarray(support.heights[1:]), np.asarray(support.radii[1:])
    zs = np.linspace(z[0], max(level, z[0]), 200)
    return float(np.trapezoid(np.pi * np.interp(zs, z, r) ** 2, zs) * 1e6)
