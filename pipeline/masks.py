"""Food masks: ground truth (synthetic), geometry (height above the support), or SAM 2.

Geometry masks need no model: the table is the dominant plane of the scene, the plate (or bowl
floor) is the dominant plane of what stands on the table, and food is what rises above the
plate. Plate rims and bowl walls also rise above the floor, but they run round the vessel's
outer edge, so regions touching that edge are dropped. Seeds higher than `min_height_mm` grow
down to the support's noise floor (hysteresis), so thin food keeps its low margins. On the fixed
Nutrition5k rig the support is found differently (pipeline.rig_masks); with no release-wide rig
plane (synthetic data) a deep bowl on the dish's own surround plane gets that path's bowl surface.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from scipy import ndimage

from pipeline import io, suspect
from pipeline.parallel import map_dishes
from pipeline.geometry import backproject, fit_plane, height_above_plane
from pipeline.support import KINDS, Support

_MAX_FIT_POINTS = 20000
_MIN_RIM_PX = 200
_MAX_FLOOR_HEIGHT_M = 0.08  # a plate top / bowl floor sits at most this high above the table
                            # (a scale platform like Nutrition5k's raises it ~5 cm)
_DEEP_BOWL_M = 0.03         # a bowl surface rising more than this is a deep vessel (its floor
                            # is hidden under the food: the per-image plane misses it)


def _plane_on(points: np.ndarray, region: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
    """Robust plane through the back-projected `points` (HxWx3) of `region` (subsampled)."""
    pts = points[region]
    if len(pts) > _MAX_FIT_POINTS:
        pts = pts[np.random.default_rng(seed).choice(len(pts), _MAX_FIT_POINTS, replace=False)]
    return fit_plane(pts, seed=seed)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill enclosed holes (flood the background from the border)."""
    m = mask.astype(np.uint8)
    padded = np.pad(m, 1)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 1)
    holes = flood[1:-1, 1:-1] == 0
    return mask | holes


def _largest_component(mask: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros_like(mask)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def geometry_mask(depth: np.ndarray, K: np.ndarray, min_height_mm: float = 4.0,
                  min_area_px: int = 150, seed: int = 0, grow: bool = True) -> np.ndarray:
    """Food = connected regions higher than `min_height_mm` above the local support plane,
    grown (`grow`) down to the support's noise floor so thin and spreading food keeps its
    low margins (hysteresis)."""
    depth = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    if valid.sum() < 100:
        raise ValueError("depth has fewer than 100 valid pixels: cannot find the table")
    thr = min_height_mm * 1e-3
    points = backproject(depth, K)
    table_n, table_d = _plane_on(points, valid, seed)
    h_table = height_above_plane(depth, K, table_n, table_d)
    ht = np.nan_to_num(h_table, nan=-1.0)
    above = valid & (ht > thr)
    border = np.zeros_like(valid)
    border[[0, -1], :] = border[:, [0, -1]] = True
    vessel = _fill_holes(_largest_component(above))
    # Default: the dominant plane is the support; rims/walls show up as rings or reach the frame.
    low = _noise_floor(ht, valid & (np.abs(ht) < thr)) if grow else thr
    food = _drop_touching(clean_mask(_grown(above, valid & (ht > low), border), min_area_px), border)
    if vessel.sum() > 0.02 * depth.size:
        # Is the biggest thing above it a plate/bowl? Then its floor is the dominant plane
        # inside it and the food stands on that floor, surrounded by it.
        floor_n, floor_d = _plane_on(points, vessel & valid, seed)
        h_floor = np.nan_to_num(height_above_plane(depth, K, floor_n, floor_d), nan=-1.0)
        on_floor = (np.abs(h_floor) < thr) & vessel & valid
        eroded = cv2.erode(vessel.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        edge = (vessel & ~eroded) | border
        low_f = _noise_floor(h_floor, on_floor) if grow else thr
        on_vessel = clean_mask(_grown(vessel & valid & (h_floor > thr),
                                      vessel & valid & (h_floor > low_f), edge), min_area_px)
        floor_h = np.nanmedian(h_table[on_floor]) if on_floor.any() else np.inf
        level = abs(float(np.dot(floor_n, table_n))) > np.cos(np.deg2rad(15))
        if (level and floor_h < _MAX_FLOOR_HEIGHT_M and on_vessel.any()
                and on_floor.sum() > 0.25 * (vessel & valid).sum()
                and _ring_fraction(on_vessel, on_floor) > 0.4):
            food = on_vessel
    return food


def _grown(strong: np.ndarray, weak: np.ndarray, edge: np.ndarray) -> np.ndarray:
    """Seeds not touching `edge` (rims, walls, frame), grown through the weak pixels whose
    regions do not touch it either (growth must not glue food to a rim)."""
    seeds = _drop_touching(strong, edge)
    return seeds | hysteresis(seeds, _drop_touching(weak, edge))


def hysteresis(strong: np.ndarray, weak: np.ndarray) -> np.ndarray:
    """Pixels of `weak` connected to a pixel of `strong` (grow confident seeds down to the
    noise floor, so the low margins of spreading food are kept)."""
    n, labels = cv2.connectedComponents((weak | strong).astype(np.uint8), connectivity=8)
    hit = np.unique(labels[strong])
    return np.isin(labels, hit[hit > 0])


def _noise_floor(h: np.ndarray, on: np.ndarray, lo_m: float = 0.0015) -> float:
    """3 sigma (robust) of heights of pixels on a flat support, at least `lo_m`."""
    v = h[on & np.isfinite(h)]
    if len(v) < 50:
        return lo_m
    return max(lo_m, 3 * 1.4826 * float(np.median(np.abs(v - np.median(v)))))


def _drop_rings(mask: np.ndarray) -> np.ndarray:
    """Remove ring-shaped regions (a plate rim seen from above encloses far more than it covers)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    out = mask.copy()
    for k in range(1, n):
        x, y, w, h, area = stats[k]
        if area < _MIN_RIM_PX:  # specks cannot be rims; skip the flood fill
            continue
        comp = labels[y:y + h, x:x + w] == k
        if _fill_holes(comp).sum() > 2 * area:
            out[y:y + h, x:x + w] &= ~comp
    return out


def _ring_fraction(mask: np.ndarray, support: np.ndarray, width: int = 7) -> float:
    """Fraction of the ring just outside `mask` that lies on `support`."""
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    ring = cv2.dilate(mask.astype(np.uint8), k).astype(bool) & ~mask
    return float((ring & support).sum() / max(ring.sum(), 1))


def _drop_arcs(mask: np.ndarray, max_half_width_px: float = 10.0, min_elongation: float = 8.0
               ) -> np.ndarray:
    """Remove long thin regions: pieces of a plate rim left after noise broke its ring.
    Food, even a small piece, is about as wide as it is long."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return mask
    half_width = ndimage.maximum(cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3),
                                 labels, index=np.arange(1, n))
    w, h = stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT]
    length = np.maximum(w, h)
    fill = stats[1:, cv2.CC_STAT_AREA] / (w * h)  # a broken ring fills little of its box
    arc = (((half_width <= max_half_width_px) & (length > min_elongation * half_width))
           | ((fill < 0.12) & (length > 60)))
    return mask & ~np.isin(labels, 1 + np.flatnonzero(arc))


def _drop_touching(mask: np.ndarray, edge: np.ndarray) -> np.ndarray:
    """Remove connected regions of `mask` that touch `edge` (rims, walls)."""
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    touching = np.unique(labels[edge & mask])
    return mask & ~np.isin(labels, touching[touching > 0])


def clean_mask(mask: np.ndarray, min_area_px: int) -> np.ndarray:
    """Close small gaps, drop rims, fill holes (depth holes inside food), drop specks."""
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    m = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, k)
    m = _drop_rings(m.astype(bool)).astype(np.uint8)
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, k)
    m = _drop_arcs(m.astype(bool)).astype(np.uint8)
    m = _fill_holes(m.astype(bool)).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    keep = np.zeros(n, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area_px
    return keep[labels]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def food_mask(depth: np.ndarray, K: np.ndarray, min_height_mm: float = 4.0,
              min_area_px: int = 150, rig_plane: tuple[np.ndarray, float] | None = None,
              rgb: np.ndarray | None = None, seed: int = 0) -> tuple[np.ndarray, Support]:
    """The offline food mask and its support: rig-aware when the rig plane is known
    (Nutrition5k), else the per-image geometry mask (support: plane fitted around the food)."""
    from pipeline.rig_masks import rig_mask
    if rig_plane is not None:
        return rig_mask(depth, K, rig_plane, min_height_mm, min_area_px, seed, rgb)
    # no release-wide rig plane (synthetic): a deep vessel standing on a level surround seen
    # in this image gets the rig's bowl-surface support; anything else the per-image geometry
    from pipeline.rig import dish_rig_plane
    plane = dish_rig_plane(depth, K, seed)
    if plane is not None:
        food, support = rig_mask(depth, K, plane, min_height_mm, min_area_px, seed, rgb)
        # a deep bowl, or food filling a bowl (kept so that it is flagged bowl_floor)
        if support.kind == "bowl_surface" and (_bowl_depth(support) > _DEEP_BOWL_M
                                               or suspect.floor_hidden(support.floor_wall_colour)):
            return food, support
    return geometry_mask(depth, K, min_height_mm, min_area_px, seed), Support("plane")


def _bowl_depth(support: Support) -> float:
    """Rise (m) of a fitted bowl surface from its lowest point to the highest wall fitted."""
    return float(max(support.heights) - min(support.heights)) if support.heights else 0.0


def _given_one(row: dict, cfg: dict, out_dir: str, predictor: object = None) -> dict:
    """The dish's depth-free mask for the given evaluation setting: its ground truth where it has
    one (synthetic), else one read from the RGB image alone (pipeline.rgb_masks), written to
    `<out_dir>/given/<dish_id>.png`. Never reads the depth."""
    gt = row.get("gt_mask_path")
    if isinstance(gt, str) and gt:
        return {"given_mask_path": gt, "given_mask_source": "gt_mask", "given_mask_status": "ok"}
    from pipeline.rgb_masks import depth_free_mask
    try:
        rgb = io.read_rgb(io.resolve(row["rgb_path"], cfg["roots"]))
        mask, source = depth_free_mask(rgb, int(cfg.get("min_area_px", 150)), predictor)
        io.write_mask(Path(out_dir) / GIVEN_DIR / f"{row['dish_id']}.png", mask)
    except ValueError as e:
        return {"given_mask_path": "", "given_mask_source": "", "given_mask_status": f"error: {e}"}
    return {"given_mask_path": f"{GIVEN_DIR}/{row['dish_id']}.png", "given_mask_source": source,
            "given_mask_status": "ok" if mask.any() else "empty"}


GIVEN_DIR = "given"   # <masks dir>/given/: the depth-free masks of dishes without a ground truth


def _mask_one(job: tuple[dict, str, dict, str], predictor: object = None,
              given_predictor: object = None) -> dict:
    """Make, write and score one dish's mask and its depth-free given mask (runs in a worker
    process for geometry)."""
    row, method, cfg, out_dir = job
    out = {"dish_id": row["dish_id"], "mask_path": "", "mask_status": "ok", "mask_px": 0,
           "mask_iou_gt": np.nan, "support": "plane", "support_json": "", "suspect": "",
           **_given_one(row, cfg, out_dir, given_predictor)}
    try:
        support = Support("plane")
        if method == "gt":
            if not isinstance(row.get("gt_mask_path"), str) or not row["gt_mask_path"]:
                raise ValueError(f"{row['dish_id']}: masks.method=gt needs a ground-truth mask "
                                 "(synthetic data only); use geometry or sam2")
            mask = io.read_mask(io.resolve(row["gt_mask_path"], cfg["roots"]))
        else:
            depth = io.read_dish_depth(row, cfg["roots"])
            K = io.K_from_row(row)
            rgb = io.read_rgb(io.resolve(row["rgb_path"], cfg["roots"]))
            mask, support = food_mask(depth, K, cfg["min_height_mm"], cfg["min_area_px"],
                                      cfg.get("rig_plane"), rgb)
            if method == "sam2":
                from pipeline.sam2_masks import sam2_food_mask
                mask = sam2_food_mask(predictor, rgb, depth, K, cfg["min_height_mm"],
                                      cfg["min_area_px"], prompt_mask=mask)
        path = Path(out_dir) / f"{row['dish_id']}.png"
        io.write_mask(path, mask)
        out["mask_px"] = int(mask.sum())
        out["mask_status"] = "ok" if mask.any() else "empty"
        out["support"], out["support_json"] = support.kind, support.to_json()
        out["suspect"] = suspect.join(suspect.mask_reasons(
            mask, float(row.get("mass_g", np.nan)), support.kind, support.inlier_fraction,
            cfg.get("suspect"), support.floor_guess_m, support.floor_wall_colour))
        if isinstance(row.get("gt_mask_path"), str) and row["gt_mask_path"]:
            out["mask_iou_gt"] = iou(mask, io.read_mask(io.resolve(row["gt_mask_path"], cfg["roots"])))
    except ValueError as e:
        out["mask_status"] = f"error: {e}"
    return out


def make_masks(df: pd.DataFrame, out_dir: Path, method: str, cfg: dict,
               workers: int = 1) -> tuple[pd.DataFrame, dict]:
    """Write `<out_dir>/<dish_id>.png` for every dish; return the per-dish table and a report.

    A dish whose mask fails (unreadable depth, no table) is kept in the table with its reason
    and counted; it never stops the stage. Every dish also gets a depth-free mask for the given
    evaluation setting (`given_mask_path`, `given_mask_source`, `given_mask_status`): its ground
    truth, or on Nutrition5k one read from the RGB only (SAM 2 when `cfg["sam2_checkpoint"]` is
    a local file, else the colour rule), failures counted the same way.
    """
    if method not in ("gt", "geometry", "sam2"):
        raise ValueError(f"masks.method must be gt, geometry or sam2, got {method!r}")
    out_dir = Path(out_dir)
    records = df.to_dict("records")
    from pipeline.rgb_masks import sam2_checkpoint_file
    local_sam2 = sam2_checkpoint_file(cfg.get("sam2_checkpoint"))
    needs_given = any(not (isinstance(r.get("gt_mask_path"), str) and r["gt_mask_path"]) for r in records)
    with io.atomic_dir(out_dir) as tmp:
        jobs = [(r, method, cfg, str(tmp)) for r in records]
        if method == "sam2" or (local_sam2 is not None and needs_given):  # one model in one process
            from pipeline.sam2_masks import load_sam2_predictor
            predictor = load_sam2_predictor(cfg["sam2_checkpoint"], cfg["sam2_config"])
            one = partial(_mask_one, predictor=predictor,
                          given_predictor=predictor if local_sam2 is not None else None)
            rows = map_dishes(one, jobs, 1, f"masks ({method})")
        else:
            rows = map_dishes(_mask_one, jobs, workers, f"masks ({method})")
        table = pd.DataFrame(rows)
        ok = table["mask_status"] == "ok"
        table["mask_path"] = [io.rel_to_repo(out_dir / f"{d}.png") if k else ""
                              for d, k in zip(table["dish_id"], ok)]
        own = table["given_mask_path"].str.startswith(f"{GIVEN_DIR}/")
        table.loc[own, "given_mask_path"] = [io.rel_to_repo(out_dir / p) for p in table.loc[own, "given_mask_path"]]
        io.write_csv(tmp / "masks.csv", table)
    ious = table["mask_iou_gt"].dropna()
    report = {"method": method, "n_dishes": len(table), "n_ok": int(ok.sum()),
              "n_empty": int((table["mask_status"] == "empty").sum()),
              "n_failed": int(table["mask_status"].str.startswith("error").sum()),
              **suspect.count(table["suspect"]),
              "given_mask_source": table["given_mask_source"].replace("", "none").value_counts().to_dict(),
              "n_given_empty": int((table["given_mask_status"] == "empty").sum()),
              "n_given_failed": int(table["given_mask_status"].str.startswith("error").sum()),
              "support": {k: int((table["support"] == k).sum()) for k in KINDS}}
    if len(ious):
        report.update({"iou_mean": round(float(ious.mean()), 4),
                       "iou_median": round(float(ious.median()), 4),
                       "iou_p10": round(float(ious.quantile(0.1)), 4),
                       "n_iou_below_0_5": int((ious < 0.5).sum())})
    return table, report
