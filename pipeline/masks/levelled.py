"""Food levelled flush in a bowl: its floor is hidden, so the label is an estimate from what is
known on the rig, with an uncertainty (issues 18, 27).

Known: the bowl stands on the base (platform or surround), so its inner floor lies about
FLOOR_M above it; its rim and the inner wall between the rim and the food are seen. The wall
below the food is the best fit to the visible wall among three families of bowls: power-law
walls r(z) = r_f + (r_t - r_f) ((z - z_f) / (z_t - z_f))^p on a flat floor (p < 1 round, p = 1 a
cone; a grid of p and floor widths), spherical caps and cones (least squares, closing where
they close or cut flat at the floor), each standing on the expected floor (among the shapes the
wall cannot tell apart, the spherical cap: cavity_estimate). The wall barely places the floor:
over floors from 6 mm below to 24 mm above the expected one the best shape's RMS changes by a
few % at most (149 rendered bowls); footed bowls lean to their foot (25 of 47 fit best 9 mm or
more up), and so do a fifth of the bowls without one (21 of 102), so a fit picking the floor
picks noise for most bowls. The food under the level is the cavity below it. Its uncertainty
adds, in quadrature, the cavity's change over the families whose best fits tie with the best
(within TIE of its RMS, loosened the further below the wall seen the shape must be followed),
the largest change when the wall is refitted without each quarter of its pixels, the largest
change when the floor lies at either end of its range (FLOOR_UNC_M), and MODEL_UNC for what no
refit shows. A floor that would make the bowl deeper than MAX_DEPTH_RATIO times its rim radius
is not the bowl's (a platform the depth does not see stands under it): the uncertainty is then 1
(nothing seen places the floor). A bowl on a foot is not seen from above: its label is high by
the foot's slab (docs/contracts.md).
The result is a bowl_surface support (the one volume implementation,
pipeline.masks.support.volume_above_support, integrates it).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipeline.masks.support import Support

FLOOR_M = 0.006          # a bowl's inner floor above what it stands on (bottom and foot) ...
FLOOR_UNC_M = 0.003      # ... give or take this
P_GRID = np.linspace(0.45, 1.0, 12)   # wall exponents of round to conical bowls ...
MAX_FLOOR_SHARE = 0.5    # a bowl's flat floor spans at most this share of its rim radius (wider: a cup, a pot)
SHARE_GRID = np.linspace(0.0, MAX_FLOOR_SHARE, 6)  # ... the flat floors of the power-law walls
MAX_LIFT_M = 0.010       # a cap or cone closes at most this far above the floor
MIN_WALL_PX = 200        # fewer visible wall pixels: no estimate
CONTACT_WEIGHT = 0.25    # the food's contact ring with the wall, as a share of the wall pixels
FIT_PX = 10000           # wall pixels fitted at most (an even stride: a shape has few parameters)
TRIM = 3.0               # a wall pixel this many robust sigmas off the best shape is not wall
TIE = 0.005              # shapes fitting within this share of the best RMS: the wall cannot tell
JACKKNIFE = 4            # refits, each without one of this many bands of wall pixels (image rows)
SHAPE_SPREAD = 2.0       # uncertainty: the tied shapes' largest change, this times the refits'
FLOOR_SPREAD = 1.0       # largest change, this times the largest change over the floor heights
MODEL_UNC = 0.05         # and this (rendered and real walls are not the fitted curves), added
                         # in quadrature (chosen on bowl trees of seeds 41-48, not the bench's)
MAX_DEPTH_RATIO = 1.15   # a bowl is at most about a hemisphere deep (cavity depth / rim radius 1),
                         # give or take a lip or a foot: a floor deeper than this is not its floor

Radius = Callable[[np.ndarray], np.ndarray]


def levelled_bowl(r: np.ndarray, z: np.ndarray, level: float, rim_h: float, normal, d: float,
                  centre, floor_m: float | None = None, contact_r: float | None = None) -> Support | None:
    """The bowl surface under food levelled at height `level` (m above the base plane
    normal.X + d = 0), from the visible wall pixels' radii `r` and heights `z`; None when
    too little wall is seen. `floor_m`: the floor's height above the base when known otherwise
    (the release's vessel floor), else FLOOR_M. `contact_r`: the radius where the food meets
    the wall (a point of the wall at `level`, weighted as CONTACT_WEIGHT of the wall pixels: a
    bowl filled near its rim shows little wall). The floor may lie FLOOR_UNC_M off `floor_m`.
    `uncertainty`: relative half-width of the cavity volume (module docstring)."""
    z_floor = FLOOR_M if floor_m is None else float(floor_m)
    if level - z_floor < 0.004:
        return None
    wall = (z > level + 0.004) & (z < rim_h - 0.002)
    r, z = r[wall], z[wall]
    n_contact = 0 if contact_r is None else max(MIN_WALL_PX // 2, int(CONTACT_WEIGHT * len(r)))
    if len(r) + n_contact < MIN_WALL_PX or rim_h - level < (0.003 if contact_r is not None else 0.008):
        return None
    step = max(1, len(r) // FIT_PX)
    r, z = r[::step], z[::step]
    n_contact = 0 if contact_r is None else max(MIN_WALL_PX // 2, int(CONTACT_WEIGHT * len(r)))

    # the further below the wall seen it must be followed, the less an RMS difference tells
    tie = TIE * max(1.0, (level - z_floor) / max(float(z.max() - z.min()), 1e-3))

    def fit(keep: np.ndarray | None, floor: float) -> tuple[float, float, WallShape]:
        rr, zz = (r, z) if keep is None else (r[keep], z[keep])
        if n_contact:
            rr, zz = np.r_[rr, np.full(n_contact, contact_r)], np.r_[zz, np.full(n_contact, level)]
        return cavity_estimate(rr, zz, floor, level, rim_h, tie)

    vol, tied, pick = fit(None, z_floor)
    vol = max(vol, 1e-6)
    bands = np.array_split(np.arange(len(r)), JACKKNIFE) if len(r) >= JACKKNIFE * MIN_WALL_PX else []
    shape_dev = max([abs(fit(np.setdiff1d(np.arange(len(r)), b), z_floor)[0] - vol) for b in bands], default=0.0)
    floor_dev = max(abs(fit(None, z_floor + dz)[0] - vol) for dz in (-FLOOR_UNC_M, FLOOR_UNC_M))
    unc = float(np.sqrt((tied / vol) ** 2 + (SHAPE_SPREAD * shape_dev / vol) ** 2
                        + (FLOOR_SPREAD * floor_dev / vol) ** 2 + MODEL_UNC ** 2))
    if deeper_than_a_bowl(rim_h, z_floor, float(pick.radius(np.array([rim_h]))[0])):
        unc = 1.0
    zs = np.linspace(pick.z_bottom, rim_h, 40)
    radii = np.maximum.accumulate(np.maximum(pick.radius(zs), 1e-4) + np.arange(len(zs)) * 1e-7)
    return Support("bowl_surface", [float(x) for x in normal], float(d),
                   [float(centre[0]), float(centre[1])], [0.0] + [round(float(x), 5) for x in radii],
                   [round(pick.z_bottom, 5)] + [round(float(x), 5) for x in zs],
                   round(float(np.mean(np.abs(r - pick.radius(z)) < 0.004)), 4),
                   uncertainty=round(unc, 4), wall_exponent=round(float(pick.exponent), 3))


def deeper_than_a_bowl(rim_h: float, floor: float, rim_r: float) -> bool:
    """A floor lying further below a rim of radius `rim_r` (at `rim_h`) than any bowl is deep
    (MAX_DEPTH_RATIO rim radii): not the bowl's floor."""
    return rim_h - floor > MAX_DEPTH_RATIO * rim_r


def cavity_estimate(r: np.ndarray, z: np.ndarray, z_f: float, level: float,
                    rim_h: float, tie: float = TIE) -> tuple[float, float, WallShape]:
    """(cavity mL under `level` of the best-fitting shape, the largest change to it among the
    shapes the wall cannot tell apart, that shape). The shapes are fitted on the wall pixels
    twice, the second time without those TRIM robust sigmas off the best one (food heaped
    against the wall, a rim's shadow); the families' best shapes within `tie` of the best RMS
    are tied, and among them a spherical cap is taken when one is tied: a band of wall near
    the rim fits a cone, a power law and a cap alike, and the cap (one radius) is the simplest
    bowl through it (the others read round bowls 10-40 % high; cones untie by their RMS)."""
    keep = np.ones(len(r), dtype=bool)
    for _ in range(2):
        shapes = wall_shapes(r[keep], z[keep], z_f, level, rim_h)
        best = min(shapes, key=lambda s: s.rms)
        res = r - best.radius(z)
        sigma = max(1.4826 * float(np.median(np.abs(res[keep]))), 0.001)
        new = np.abs(res) < TRIM * sigma
        if new.sum() < MIN_WALL_PX // 2 or (new == keep).all():
            break
        keep = new
    # shapes the wall cannot tell apart: a spherical cap, the bowl of one radius, when one is among them
    caps = [s for s in shapes if s.family == "sphere" and s.rms <= (1 + tie) * best.rms]
    best = min(caps, key=lambda s: s.rms) if caps else best
    vol = best.cavity_ml(level)
    fam_best = {}
    for s in shapes:
        if s.family not in fam_best or s.rms < fam_best[s.family].rms:
            fam_best[s.family] = s
    tied = max(abs(s.cavity_ml(level) - vol) for s in fam_best.values() if s.rms <= (1 + tie) * best.rms)
    return vol, tied, best


class WallShape:
    """One bowl shape fitted to the visible wall: radius(z) from its bottom z_bottom up."""

    def __init__(self, family: str, radius: Radius, z_bottom: float, rms: float, exponent: float,
                 plausible: bool = True):
        self.family, self.radius, self.z_bottom, self.rms, self.exponent = family, radius, z_bottom, rms, exponent
        self.plausible = plausible

    def floor_share(self, rim_h: float) -> float:
        """The flat floor's radius (where the shape is cut at its bottom) over its rim radius."""
        r_floor, r_rim = self.radius(np.array([self.z_bottom, rim_h]))
        return float(r_floor / max(float(r_rim), 1e-9))

    def cavity_ml(self, level: float) -> float:
        zs = np.linspace(self.z_bottom, max(level, self.z_bottom), 200)
        return float(np.trapezoid(np.pi * self.radius(zs) ** 2, zs) * 1e6)


def wall_shapes(r: np.ndarray, z: np.ndarray, z_f: float, level: float,
                rim_h: float) -> list[WallShape]:
    """The plausible bowl shapes of every family (module docstring) standing on the floor height
    `z_f`, fitted to the wall pixels: a cone or cap cut flat at the floor wider than
    MAX_FLOOR_SHARE of its rim radius (the power laws' own limit) is a cup or a pot, not a bowl;
    a band of wall near the rim would otherwise tie it with a round bowl's cap and flag most
    round bowls filled high."""
    shapes = _power_shapes(r, z, z_f, rim_h) + _sphere_shapes(r, z, z_f, level) \
        + _cone_shapes(r, z, z_f, level)
    return [s for s in shapes if s.plausible and s.floor_share(rim_h) <= MAX_FLOOR_SHARE + 1e-9]


def _rms(radius: Radius, r: np.ndarray, z: np.ndarray) -> float:
    return float(np.sqrt(np.mean((radius(z) - r) ** 2)))


def _power_shapes(r: np.ndarray, z: np.ndarray, z_f: float, rim_h: float) -> list[WallShape]:
    """Power-law walls standing on the floor height, for every exponent in P_GRID and flat
    floor share in SHARE_GRID (a grid, not a free fit: a band of wall near the rim cannot
    tell the floor's width); only the rim radius is fitted."""
    out = []
    for p in P_GRID:
        for share in SHARE_GRID:
            u = share + (1 - share) * np.clip((z - z_f) / (rim_h - z_f), 0, 1) ** p
            rt = float(np.sum(r * u) / max(float(np.sum(u * u)), 1e-12))
            rms = float(np.sqrt(np.mean((rt * u - r) ** 2)))

            def radius(zz, rt=rt, share=share, p=p):
                return rt * (share + (1 - share) * np.clip((zz - z_f) / (rim_h - z_f), 0, 1) ** p)
            out.append(WallShape("power", radius, z_f, rms, p))
    return out


def _sphere_shapes(r: np.ndarray, z: np.ndarray, z_f: float, level: float) -> list[WallShape]:
    """Spherical caps centred on the axis (a round bowl): the least-squares sphere through the
    wall (r^2 + z^2 = 2 zc z + c), closing where it closes or cut flat at the floor height,
    and the sphere closing exactly on the floor. Implausible when the free sphere's centre lies
    below the wall seen (it would narrow upwards) or it closes above the food's level."""
    out = []
    (zc, c), *_ = np.linalg.lstsq(np.c_[2 * z, np.ones_like(z)], r ** 2 + z ** 2, rcond=None)
    R2 = float(c + zc * zc)
    if R2 > 0 and zc > float(z.max()) - 0.002:
        R = float(np.sqrt(R2))

        def free(zz, R=R, zc=float(zc)):
            return np.sqrt(np.maximum(R * R - (zz - zc) ** 2, 0.0))
        bottom = max(float(zc) - R, z_f)
        out.append(WallShape("sphere", free, bottom, _rms(free, r, z), 0.5, _closes_low(bottom, z_f, level)))
    dz = z - z_f
    R = float(np.sum((r ** 2 + dz ** 2) * dz) / max(float(np.sum(2 * dz ** 2)), 1e-12))

    def anchored(zz, R=R):
        return np.sqrt(np.maximum(2 * R * (zz - z_f) - (zz - z_f) ** 2, 0.0))
    out.append(WallShape("sphere", anchored, z_f, _rms(anchored, r, z), 0.5, R > 0))
    return out


def _cone_shapes(r: np.ndarray, z: np.ndarray, z_f: float, level: float) -> list[WallShape]:
    """The least-squares cone through the wall (r = a + b z), closing at its tip or cut flat
    at the floor height; none when it does not widen upwards."""
    b, a = np.polyfit(z, r, 1)
    if b <= 0:
        return []

    def cone(zz, a=float(a), b=float(b)):
        return np.maximum(a + b * zz, 0.0)
    bottom = max(-a / b, z_f)
    return [WallShape("cone", cone, bottom, _rms(cone, r, z), 1.0, _closes_low(bottom, z_f, level))]


def _closes_low(bottom: float, z_f: float, level: float) -> bool:
    """A cavity closing below the food's level and at most MAX_LIFT_M above the floor (higher,
    the bowl would stand on a foot, which an overhead view cannot tell from a wall's curve)."""
    return bottom < level - 0.004 and bottom <= z_f + MAX_LIFT_M


def radius_at(support: Support, height: float) -> float:
    """Radius of the fitted bowl surface at a height above the base plane."""
    return float(np.interp(height, support.heights[1:], support.radii[1:]))


def cavity_ml(support: Support, level: float) -> float:
    """Volume (mL) of the fitted bowl surface's cavity from its floor up to `level`."""
    z, r = np.asarray(support.heights[1:]), np.asarray(support.radii[1:])
    zs = np.linspace(z[0], max(level, z[0]), 200)
    return float(np.trapezoid(np.pi * np.interp(zs, z, r) ** 2, zs) * 1e6)
