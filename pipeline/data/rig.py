"""The fixed Nutrition5k rig: one overhead camera, so one plane (the surface around the scale
platform) is the same in every dish. Knowing it lets masks separate dish from surround by height
without guessing a "table" per image (a bowl filling the frame leaves no table to guess from).

The plane is fitted per dish on the farthest valid pixels (the surround, ~0.41 m) and combined
across dishes by medians, so a dish with no surround in view cannot tilt it. Saved by ingest in
data/raw/rig_plane.json and read by the masks and labels stages. A fit tilted more than params
`suspect.max_rig_tilt_deg` against the camera is no overhead rig's (`max_tilt_deg`; None: the
default).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline import io
from pipeline.config import Nutrition5kConfig, SuspectConfig, or_default
from pipeline.geometry import backproject, fit_plane
from pipeline.geometry.plane import levels

RIG_PLANE_FILE = "rig_plane.json"
FAR_BAND_M = 0.015         # surround candidates: within this of the 97th depth percentile
INLIER_M = 0.004           # a surround pixel lies this close to its plane
MIN_FAR_PX = 2000          # fewer far pixels: the dish has no usable surround in view
MIN_DISH_INLIERS = 0.5     # per-dish fits with fewer inliers (of far pixels) are not used
_MAX_FIT_POINTS = 20000


def tilt_deg(normal: np.ndarray) -> float:
    """Angle (deg) between a plane's normal and the camera's optical axis."""
    return float(np.degrees(np.arccos(min(1.0, abs(float(normal[2]) / np.linalg.norm(normal))))))


def dish_far_plane(depth: np.ndarray, K: np.ndarray, seed: int = 0) -> dict | None:
    """Plane of the farthest surface of one dish (the rig's surround), or None when too
    little of it is in view. Returns normal, d, inlier fraction, number of far pixels."""
    valid = np.isfinite(depth) & (depth > 0)
    if valid.sum() < MIN_FAR_PX:
        return None
    far = valid & (depth > np.percentile(depth[valid], 97) - FAR_BAND_M)
    if far.sum() < MIN_FAR_PX:
        return None
    pts = backproject(depth, K)[far]
    if len(pts) > _MAX_FIT_POINTS:
        pts = pts[np.random.default_rng(seed).choice(len(pts), _MAX_FIT_POINTS, replace=False)]
    n, d = fit_plane(pts, seed=seed)
    inl = float(np.mean(np.abs(pts @ n + d) < INLIER_M))
    return {"normal": n.tolist(), "d": float(d), "inlier_fraction": round(inl, 4),
            "n_far_px": int(far.sum())}


def _usable(fit: dict | None, max_tilt_deg: float | None) -> bool:
    """A per-dish surround fit good enough to stand for the rig plane."""
    max_tilt_deg = or_default(SuspectConfig, max_rig_tilt_deg=max_tilt_deg)
    return bool(fit) and fit["inlier_fraction"] >= MIN_DISH_INLIERS \
        and tilt_deg(np.asarray(fit["normal"])) <= max_tilt_deg


def dish_rig_plane(depth: np.ndarray, K: np.ndarray, seed: int = 0, max_tilt_deg: float | None = None
                   ) -> tuple[np.ndarray, float] | None:
    """The surround plane of ONE dish as its rig plane, for data with no release-wide one
    (synthetic rig families): the same far-surface fit and acceptance as the release median;
    None when the dish shows too little of a level surround (e.g. an oblique table view)."""
    fit = dish_far_plane(depth, K, seed)
    return (np.asarray(fit["normal"], float), float(fit["d"])) if _usable(fit, max_tilt_deg) else None


FLOOR_MIN_M, FLOOR_MAX_M = 0.02, 0.12   # a vessel floor above the surround, when it stands
                                        # on a platform the depth sensor sees through (glass)


def dish_floor_height(depth: np.ndarray, K: np.ndarray, plane: dict | None,
                      max_tilt_deg: float | None = None) -> float | None:
    """Height (m) above the dish's surround plane of the lowest level surface between
    FLOOR_MIN_M and FLOOR_MAX_M: the floor of its plate when the platform under it is not seen
    in depth. None without a usable surround fit or such a level."""
    if not _usable(plane, max_tilt_deg):
        return None
    h = backproject(depth, K) @ np.asarray(plane["normal"]) + plane["d"]
    region = np.isfinite(h) & (depth > 0) & (h > FLOOR_MIN_M) & (h < FLOOR_MAX_M)
    lv = levels(np.nan_to_num(h), region, max(1500, int(0.03 * region.sum())))
    return min(lv) if lv else None


def combine_planes(fits: list[dict | None], floors: list[float | None] | None = None,
                   max_tilt_deg: float | None = None) -> dict:
    """Median plane over the dishes whose own fit was good (fixed camera: one plane).
    ValueError when no dish gave a usable fit."""
    good = [f for f in fits if _usable(f, max_tilt_deg)]
    if not good:
        raise ValueError(f"rig plane: none of {len(fits)} dishes shows enough of the surface "
                         "around the platform to fit it")
    N = np.array([f["normal"] for f in good])
    n = np.median(N, axis=0)
    n /= np.linalg.norm(n)
    d = np.array([f["d"] for f in good])
    return {"normal": [round(float(x), 6) for x in n], "d": round(float(np.median(d)), 6),
            "tilt_deg": round(tilt_deg(n), 3), "n_dishes": len(good), "n_tried": len(fits),
            "d_mad_mm": round(float(1e3 * np.median(np.abs(d - np.median(d)))), 3),
            "median_inlier_fraction": round(float(np.median([f["inlier_fraction"] for f in good])), 4),
            **_floor_stats(floors or [])}


def _floor_stats(floors: list[float | None]) -> dict:
    """The release's typical vessel floor above the surround (median of the dishes' lowest
    levels; dishes whose platform is seen in depth have none): where a bowl whose floor is
    hidden stands."""
    f = np.array([x for x in floors if x is not None])
    if len(f) < 1:
        return {}
    q1, med, q3 = np.percentile(f, [25, 50, 75])
    return {"floor_m": round(float(med), 5), "floor_iqr_m": round(float(q3 - q1), 5), "n_floor_dishes": len(f)}


def estimate_rig_plane(manifest, roots: list[Path] | None = None, max_dishes: int | None = None,
                       seed: int = 0, max_tilt_deg: float | None = None) -> dict:
    """The rig plane from up to `max_dishes` (params `nutrition5k.rig_plane_dishes`; None: its
    default) dishes spread evenly over the manifest."""
    max_dishes = or_default(Nutrition5kConfig, rig_plane_dishes=max_dishes)
    rows = manifest.to_dict("records")
    idx = np.unique(np.linspace(0, len(rows) - 1, min(max_dishes, len(rows))).astype(int))
    fits, floors = [], []
    for i in tqdm(idx, desc="rig plane", leave=False):
        row = rows[i]
        depth, K = io.read_dish_depth(row, roots), io.K_from_row(row)
        fits.append(dish_far_plane(depth, K, seed))
        floors.append(dish_floor_height(depth, K, fits[-1], max_tilt_deg))
    return combine_planes(fits, floors, max_tilt_deg)


MAX_SPREAD_MM = 5.0   # release-wide planes whose per-dish offsets spread more (MAD) are no rig:
                      # every dish gets its own plane


def read_rig_extras(raw_dir: Path) -> tuple[float | None, bool]:
    """(the release's typical vessel floor above the rig plane in m or None, whether the dishes
    agree on one plane: the spread of their surround offsets within MAX_SPREAD_MM)."""
    path = Path(raw_dir) / RIG_PLANE_FILE
    if not path.is_file():
        return None, True
    p = io.read_json(path)
    floor = float(p["floor_m"]) if "floor_m" in p else None
    return floor, float(p.get("d_mad_mm", 0.0)) <= MAX_SPREAD_MM


def read_rig_plane(raw_dir: Path) -> tuple[np.ndarray, float] | None:
    """(normal, d) saved by ingest, or None (synthetic data: no fixed rig)."""
    path = Path(raw_dir) / RIG_PLANE_FILE
    if not path.is_file():
        return None
    p = io.read_json(path)
    try:
        n = np.asarray(p["normal"], dtype=np.float64).reshape(3)
        d = float(p["d"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: not a rig plane file ({e})") from e
    return n / np.linalg.norm(n), d

