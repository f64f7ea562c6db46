"""What the food stands on, and the food's volume above it.

Four kinds (the `support` column of masks.csv / index.csv):
- plane:        fitted on the ring around the food (estimate_volume's default; synthetic scenes)
- plate_floor:  the plane of a plate's floor, fitted inside the dish (Nutrition5k plates stand
                on the scale platform, ~5 cm above the rig plane)
- bowl_surface: a bowl's inner surface under the food, which no pixel shows: a surface of
                revolution about the bowl's axis whose height never falls outwards (bowls are
                convex), taken as the lower envelope of the visible inner wall: at radius r
                it is the lowest wall seen at any radius >= r, so the hidden floor under the
                food is as low as the lowest wall seen around it; under a level part ringed
                by wall (food filling the bowl) it is continued from the wall's shape
- platform:     the rig plane itself (food with no vessel found)

Volume above a bowl surface = volume above the flat plane through the bowl's lowest point
(pipeline.geometry.estimate_volume, the one volume implementation) minus the part of the bowl
that rises above that plane under the food's footprint. Food levelled in a bowl (a support with
an `uncertainty`): the sum of each pixel's column between the bowl surface and the food's top
times its footprint (the difference above, of a height-map integral and a per-pixel one, came
out ~4 % low where most of the flat volume is bowl; a level top hides nothing from the camera).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

import numpy as np

from pipeline.config import VolumeConfig, or_default
from pipeline.geometry import VolumeResult, estimate_volume, plane_basis, rays

_FLOOR_SHARE = 0.4   # a bowl's flat floor spans about this share of the fitted radius
WALL_RISE_M = 0.005  # profile bins this far above the surface's lowest level are the wall
KINDS = ("plane", "plate_floor", "bowl_surface", "platform")


@dataclass
class Support:
    kind: str
    normal: list[float] | None = None    # base plane n.X + d = 0 (None for kind == plane)
    d: float | None = None
    centre: list[float] | None = None    # bowl: axis position in the plane's (e1, e2) coords (m)
    radii: list[float] | None = None     # bowl: profile radii (m, increasing) ...
    heights: list[float] | None = None   # ... and surface heights there (m above the plane)
    inlier_fraction: float = float("nan")  # fraction of the fitting pixels on the surface
    floor_guess_m: float | None = None   # bowl: how far the hidden floor was continued below
                                         # the level surface seen (food filling the bowl)
    uncertainty: float | None = None     # bowl with food levelled in it: relative half-width
                                         # of the volume under the level (pipeline.masks.levelled)
    wall_exponent: float | None = None   # ... and the fitted wall shape (1: cone, < 1: round)
    plane_source: str | None = None      # 'release': the release-wide rig plane's normal;
                                         # 'dish': this dish's own (the release's did not fit)
    floor_wall_colour: float | None = None  # bowl with an inner wall: colour match
                                         # (Bhattacharyya, 0-1) of the bare surface under the
                                         # food and the wall above it

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None})

    @staticmethod
    def from_json(text: str) -> Support:
        try:
            s = Support(**json.loads(text))
        except (TypeError, ValueError) as e:
            raise ValueError(f"support: not a support description ({e}): {text[:80]!r}") from e
        if s.kind not in KINDS:
            raise ValueError(f"support: kind must be one of {KINDS}, got {s.kind!r}")
        return s

    def plane(self) -> tuple[np.ndarray, float] | None:
        return None if self.normal is None else (np.asarray(self.normal, float), float(self.d))


def surface_height(support: Support, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Height (m, above the base plane) of the support surface at plane coords (a, b)."""
    if support.kind != "bowl_surface":
        return np.zeros_like(a)
    r = np.hypot(a - support.centre[0], b - support.centre[1])
    return np.interp(r, support.radii, support.heights)


def fit_bowl(X: np.ndarray, n: np.ndarray, d: float, centre: np.ndarray, r_max: float,
             bin_m: float = 0.005, q: float = 10.0, min_px: int = 100, band_m: float = 0.006
             ) -> Support:
    """Bowl surface under the food from the points X (Nx3, the vessel's inside: food and wall)
    above the plane (n, d): per radial bin the `q`-th percentile height (the wall where it
    shows, food where it covers the bin), then the running minimum from the rim inwards
    (a bowl's surface does not rise towards its axis)."""
    e1, e2 = plane_basis(n)
    h = X @ n + d
    r = np.hypot(X @ e1 - centre[0], X @ e2 - centre[1])
    edges = np.arange(0.0, r_max + bin_m, bin_m)
    mids, lows = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        s = h[(r >= lo) & (r < hi)]
        if len(s) >= min_px:
            mids.append(0.5 * (lo + hi))
            lows.append(float(np.percentile(s, q)))
    if not lows:
        raise ValueError("bowl: too few valid pixels inside the bowl to fit its surface")
    seen = np.minimum.accumulate(np.asarray(lows)[::-1])[::-1]
    prof = np.maximum(_under_level(np.asarray(mids), seen), 0.0)
    inside = r < r_max
    inl = float(np.mean(np.abs(h[inside] - np.interp(r[inside], mids, prof)) < band_m))
    return Support("bowl_surface", [float(x) for x in n], float(d),
                   [float(centre[0]), float(centre[1])], [round(m, 4) for m in mids],
                   [round(float(x), 5) for x in prof], round(inl, 4),
                   round(float(np.max(seen - prof)), 4))


def _under_level(r: np.ndarray, prof: np.ndarray, rise_m: float = WALL_RISE_M, min_bins: int = 3
                 ) -> np.ndarray:
    """Continue the visible wall under a level surface inside it. The level part of the
    lower envelope may be a bare floor or the top of food that fills the bowl from wall to
    wall (then the floor is hidden): there the surface is a typical bowl shape, a flat floor
    out to _FLOOR_SHARE of the radius and a wall h = a + b (r - r_floor)^2 fitted on the
    wall bins (> `rise_m` above the level), where it lies lower. A bare floor leaves the
    fit at or above it (nothing changes); a guessed floor is flagged (suspect bowl_floor)."""
    wall = prof > prof.min() + rise_m
    if wall.sum() < min_bins:
        return prof
    rf = _FLOOR_SHARE * r[-1]                  # a typical bowl's flat floor radius
    A = np.c_[np.ones(int(wall.sum())), np.maximum(r[wall] - rf, 0) ** 2]
    (a, b), *_ = np.linalg.lstsq(A, prof[wall], rcond=None)
    if b <= 0:
        return prof
    inner = r < r[wall].min()
    return np.where(inner, np.minimum(prof, a + b * np.maximum(r - rf, 0) ** 2), prof)


def volume_above_support(depth: np.ndarray, mask: np.ndarray, K: np.ndarray, support: Support,
                         method: str | None = None, ring_px: int | None = None,
                         cell_mm: float | None = None) -> VolumeResult:
    """Food volume between the food's top and its support (see the module docstring); the
    result's plane is the flat plane used (for a bowl: through its lowest point). Mask pixels
    without depth (sensors drop them along the food's outline) are filled by the geometry from
    the food side (`estimate_volume`; `n_holes` counts them). method, ring_px, cell_mm: params
    `volume:` (None: its default)."""
    method, ring_px, cell_mm = or_default(VolumeConfig, method=method, ring_px=ring_px, cell_mm=cell_mm)
    if support.kind == "plane":
        return estimate_volume(depth, mask, K, method, ring_px, cell_mm)
    n, d = support.plane()
    if support.kind != "bowl_surface":
        return estimate_volume(depth, mask, K, method, ring_px, cell_mm, plane=(n, d))
    # flat plane through the bowl's lowest point, then subtract the bowl above it
    h0 = float(min(support.heights))
    levelled = support.uncertainty is not None   # food levelled in a bowl: per-pixel columns below
    res = estimate_volume(depth, mask, K, "columns" if levelled else method, ring_px, cell_mm,
                          plane=(n, d - h0))
    ys, xs = np.nonzero(mask)
    z = depth[ys, xs].astype(np.float64)
    ok = np.isfinite(z) & (z > 0)
    if not ok.any():
        return res
    z = np.where(ok, z, np.median(z[ok]))          # holes: the food's median depth
    r = rays(np.asarray(K, float), ys, xs)
    X = r * z[:, None]
    area = z * z / (K[0, 0] * K[1, 1] * np.abs(r @ n))   # footprint of each pixel on the plane
    e1, e2 = plane_basis(n)
    rise = surface_height(support, X @ e1, X @ e2) - h0
    top = X @ n + d - h0                         # the bowl never rises above the food
    if levelled:
        # food levelled in a bowl: its top hides nothing, so each pixel's column from the bowl
        # surface up is exact; the difference of two integrals done differently lost ~4 %
        return replace(res, volume_ml=float(np.sum(np.maximum(top - rise, 0.0) * area)) * 1e6,
                       height_map=None)
    bowl_ml = float(np.sum(np.minimum(rise, np.maximum(top, 0)) * area)) * 1e6
    return replace(res, volume_ml=max(res.volume_ml - bowl_ml, 0.0), height_map=None)
