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
SHARE_GRID = np.linspace(0.0, 0.5, 6)  # ... and flat floors spanning this share of the rim radius
                         # (0: a round bowl, a spherical cap, or a cone to its tip)
FIT_SLACK = 1.25         # wall shapes whose RMS is within this factor of the best are plausible
MIN_WALL_PX = 200        # fewer visible wall pixels: no estimate
CONTACT_WEIGHT = 0.25    # the food's contact ring with the wall, as a share of the wall pixels
CLOSING_MIN_BAND_M = 0.02  # a cap or cone is followed down only from a wall band this tall


def levelled_bowl(r: np.ndarray, z: np.ndarray, level: float, rim_h: float, normal, d: float,
                  centre, floor_m: float | None = None, contact_r: float | None = None) -> Support | None:
    """The bowl surface under food levelled at height `level` (m above the base plane
    normal.X + d = 0), from the visible wall pixels' radii `r` and heights `z`; None when
    too little wall is seen. `floor_m`: the floor's height above the base when known otherwise
    (the release's vessel floor), else FLOOR_M. `contact_r`: the radius where the food meets
    the wall (a point of the wall at `level`, weighted as CONTACT_WEIGHT of the wall pixels: a
    bowl filled near its rim shows little wall). `uncertainty`: relative half-range of the
    cavity volume."""
    z_floor = FLOOR_M if floor_m is None else float(floor_m)
    if level - z_floor < 0.004:
        return None
    wall = (z > level + 0.004) & (z < rim_h - 0.002)
    r, z = r[wall], z[wall]
    if contact_r is not None:
        k = max(MIN_WALL_PX // 2, int(CONTACT_WEIGHT * len(r)))
        r, z = np.r_[r, np.full(k, contact_r)], np.r_[z, np.full(k, level)]
    if len(r) < MIN_WALL_PX or rim_h - level < (0.003 if contact_r is not None else 0.008):
        return None
    # the visible upper wall rarely tells the shape below the level: every bowl shape that fits
    # it about as well as the best one is kept (a spherical cap or a cone extrapolated down to
    # where it closes, a power-law wall down to the rig's floor); the estimate is the middle of
    # their cavity volumes, the spread its uncertainty. A cap or cone closing above the rig's
    # floor is a bowl on a foot.
    shapes = _power_shapes(r, z, z_floor, rim_h) + _closing_shapes(r, z, z_floor, level, rim_h)
    best_rms = min(s.rms for s in shapes)
    ok = [s for s in shapes if s.rms <= FIT_SLACK * best_rms + 2e-4 and s.plausible] or \
        [min(shapes, key=lambda s: s.rms)]
    vols = [s.cavity_ml(level) for s in ok]
    mid = 0.5 * (max(vols) + min(vols))
    unc = float((max(vols) - min(vols)) / 2 / max(mid, 1e-6))
    pick = min(ok, key=lambda s: abs(s.cavity_ml(level) - mid))
    zs = np.linspace(pick.z_bottom, rim_h, 40)
    radii = np.maximum.accumulate(np.maximum(pick.radius(zs), 1e-4) + np.arange(len(zs)) * 1e-7)
    return Support("bowl_surface", [float(x) for x in normal], float(d),
                   [float(centre[0]), float(centre[1])], [0.0] + [round(float(x), 5) for x in radii],
                   [round(pick.z_bottom, 5)] + [round(float(x), 5) for x in zs],
                   round(float(np.mean(np.abs(r - pick.radius(z)) < 0.004)), 4),
                   uncertainty=round(unc, 4), wall_exponent=round(float(pick.exponent), 3))


class WallShape:
    """One bowl shape fitted to the visible wall: radius(z) from its bottom z_bottom up."""

    def __init__(self, radius, z_bottom: float, rms: float, exponent: float, plausible: bool = True):
        self.radius, self.z_bottom, self.rms, self.exponent = radius, z_bottom, rms, exponent
        self.plausible = plausible

    def cavity_ml(self, level: float) -> float:
        zs = np.linspace(self.z_bottom, max(level, self.z_bottom), 200)
        return float(np.trapezoid(np.pi * self.radius(zs) ** 2, zs) * 1e6)


def _power_shapes(r: np.ndarray, z: np.ndarray, z_floor: float, rim_h: float) -> list[WallShape]:
    """Power-law walls standing on the floor (+- FLOOR_UNC_M), for every exponent in P_GRID and
    flat floor share in SHARE_GRID (a grid, not a free fit: a band of wall near the rim cannot
    tell the floor's width); only the rim radius is fitted."""
    out = []
    for p in P_GRID:
        for share in SHARE_GRID:
            for z_f in (z_floor - FLOOR_UNC_M, z_floor, z_floor + FLOOR_UNC_M):
                u = share + (1 - share) * np.clip((z - z_f) / (rim_h - z_f), 0, 1) ** p
                rt = float(np.sum(r * u) / max(float(np.sum(u * u)), 1e-12))
                rms = float(np.sqrt(np.mean((rt * u - r) ** 2)))

                def radius(zz, rt=rt, share=share, p=p, z_f=z_f):
                    return rt * (share + (1 - share) * np.clip((zz - z_f) / (rim_h - z_f), 0, 1) ** p)
                out.append(WallShape(radius, z_f, rms, p))
    return out


def _closing_shapes(r: np.ndarray, z: np.ndarray, z_floor: float, level: float, rim_h: float
                    ) -> list[WallShape]:
    """A spherical cap (centred on the axis) and a cone through the wall's two ends seen (where
    the food meets it and at the rim), followed down until they close or reach the floor (then
    a flat floor there): a band of wall a few cm tall cannot tell their curvature, its ends
    pin them. Implausible when they close above the food's level or open downwards."""
    low, top = z <= np.percentile(z, 5), z >= np.percentile(z, 95)
    zc_, rc = float(np.median(z[low])), float(np.median(r[low]))
    zt, rt = float(np.median(z[top])), float(np.median(r[top]))
    if zt - zc_ < CLOSING_MIN_BAND_M or rt <= rc:
        return []
    out = []
    zc = (rt ** 2 - rc ** 2 + zt ** 2 - zc_ ** 2) / (2 * (zt - zc_))    # sphere centre height
    R = float(np.hypot(rc, zc_ - zc))

    def sphere(zz, R=R, zc=zc):
        return np.sqrt(np.maximum(R * R - (zz - zc) ** 2, 0.0))
    bottom = max(zc - R, z_floor)
    out.append(WallShape(sphere, bottom, float(np.sqrt(np.mean((sphere(z) - r) ** 2))), 0.5,
                         bottom < level - 0.004 and zc > zt))
    b = (rt - rc) / (zt - zc_)

    def cone(zz, b=b):
        return np.maximum(rc + b * (zz - zc_), 0.0)
    bottom = max(zc_ - rc / b, z_floor)
    out.append(WallShape(cone, bottom, float(np.sqrt(np.mean((cone(z) - r) ** 2))), 1.0,
                         bottom < level - 0.004))
    return out


def radius_at(support: Support, height: float) -> float:
    """Radius of the fitted bowl surface at a height above the base plane."""
    return float(np.interp(height, support.heights[1:], support.radii[1:]))


def cavity_ml(support: Support, level: float) -> float:
    """Volume (mL) of the fitted bowl surface's cavity from its floor up to `level`."""
    z, r = np.asarray(support.heights[1:]), np.asarray(support.radii[1:])
    zs = np.linspace(z[0], max(level, z[0]), 200)
    return float(np.trapezoid(np.pi * np.interp(zs, z, r) ** 2, zs) * 1e6)
