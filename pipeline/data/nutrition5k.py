"""Nutrition5k, read in place from the release as published.

Layout used (everything else in the release is ignored):
  imagery/realsense_overhead/dish_<id>/{rgb.png, depth_raw.png}   16-bit depth, 1e-4 m, 0 = none
  metadata/dish_metadata_cafe{1,2}.csv   no header; dish_id, calories, mass, fat, carb, protein,
                                         then 7 fields per ingredient (rows are uneven)
  dish_ids/splits/depth_{train,test}_ids.txt

Only ~3,490 of the ~5,000 dishes have overhead imagery, and a few files are broken (a 0-byte
file, depths with 65535 / beyond-the-table values, one dish at ~1/10 scale). Every dish is
validated; a bad one is skipped with a counted reason, never fatal, so one broken PNG cannot
stop a 3,490-dish ingest.

Intrinsics are not published. The paper's 35.9 cm camera distance and 5.957e-3 cm² per pixel
imply f ≈ 465 px, but the D435 colour camera at 640x480 is ≈ 616.6 px and object sizes in real
dishes agree with 616, hence the default. Volumes scale as 1/(fx·fy): with f = 465 instead of
616.6 every volume would be (616.6/465)² ≈ 1.76x larger.
"""
from __future__ import annotations

import csv
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from pipeline import io
from pipeline.config import Nutrition5kConfig, or_default
from pipeline.parallel import map_dishes

MANIFEST_COLUMNS = ["dish_id", "rgb_path", "depth_path", "gt_mask_path", "fx", "fy", "cx", "cy",
                    "width", "height", "volume_ml_true", "mass_g", "source_split"]
EXTRA_COLUMNS = ["calories_kcal", "n_ingredients", "cafe", "depth_valid_fraction", "depth_median_m"]

WIDTH, HEIGHT = 640, 480
IMAGERY = Path("imagery/realsense_overhead")
METADATA = {"cafe1": Path("metadata/dish_metadata_cafe1.csv"),
            "cafe2": Path("metadata/dish_metadata_cafe2.csv")}
SPLITS = {"train": Path("dish_ids/splits/depth_train_ids.txt"),
          "test": Path("dish_ids/splits/depth_test_ids.txt")}

_DISH_FIELDS = 6
_INGR_FIELDS = 7

SKIP_REASONS = ("missing_file", "empty_file", "unreadable", "bad_format", "bad_size",
                "size_mismatch", "absurd_scale", "too_little_valid_depth")


def read_release_depth(path: str | Path, min_depth_m: float | None = None,
                       max_depth_m: float | None = None) -> np.ndarray:
    """A release depth in metres with out-of-range readings (65535, beyond the table) set to 0,
    the convention for 'no measurement'. Use this rather than io.read_depth_png on release files.
    The range: params `nutrition5k:` (None: its default)."""
    min_depth_m, max_depth_m = or_default(Nutrition5kConfig, min_depth_m=min_depth_m, max_depth_m=max_depth_m)
    d = io.read_depth_png(path)
    d[(d < min_depth_m) | (d > max_depth_m)] = 0.0
    return d


# --- metadata and split files -------------------------------------------------------------

def _float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        return float("nan")
    return v if np.isfinite(v) else float("nan")


def read_metadata(path: Path, cafe: str) -> tuple[dict[str, dict], dict]:
    """dish_id -> {mass_g, calories_kcal, n_ingredients, cafe}; plus counts of odd rows.

    Rows are uneven (7 fields per ingredient), so this uses csv, not pandas. Cafe 2 has zero
    macros but real masses; a mass <= 0 or unparsable becomes NaN (counted)."""
    out: dict[str, dict] = {}
    counts = {"rows": 0, "malformed_rows": 0, "bad_mass": 0, "duplicate_ids": 0}
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if not row or not row[0].strip():
                continue
            counts["rows"] += 1
            if len(row) < _DISH_FIELDS or (len(row) - _DISH_FIELDS) % _INGR_FIELDS:
                counts["malformed_rows"] += 1
            dish_id = row[0].strip()
            mass = _float(row[2]) if len(row) > 2 else float("nan")
            if not mass > 0:
                counts["bad_mass"] += 1
                mass = float("nan")
            if dish_id in out:
                counts["duplicate_ids"] += 1
                continue
            out[dish_id] = {"mass_g": mass,
                            "calories_kcal": _float(row[1]) if len(row) > 1 else float("nan"),
                            "n_ingredients": max(0, (len(row) - _DISH_FIELDS) // _INGR_FIELDS),
                            "cafe": cafe}
    return out, counts


def read_split_ids(path: Path) -> list[str]:
    """Dish ids of one split file (one per line, blank lines ignored)."""
    return [s.strip() for s in path.read_text().splitlines() if s.strip()]


# --- per-dish validation ------------------------------------------------------------------

def _read_checked(path: Path, flags: int) -> tuple[np.ndarray | None, str, str]:
    """(image, reason, detail); reason '' when readable."""
    if not path.is_file():
        return None, "missing_file", f"{path.name} missing"
    if path.stat().st_size == 0:
        return None, "empty_file", f"{path.name} is 0 bytes"
    img = cv2.imread(str(path), flags)
    if img is None:
        return None, "unreadable", f"{path.name} corrupt or truncated"
    return img, "", ""


def validate_dish(job: tuple[str, str, float, float, float]) -> dict:
    """Check one dish folder; returns status fields (runs in a worker process)."""
    dish_dir, dish_id, min_d, max_d, min_frac = job
    d = Path(dish_dir)
    out = {"dish_id": dish_id, "reason": "", "detail": "", "n_out_of_range": 0,
           "depth_valid_fraction": np.nan, "depth_median_m": np.nan}
    raw, reason, detail = _read_checked(d / "depth_raw.png", cv2.IMREAD_UNCHANGED)
    if not reason:
        if raw.ndim != 2 or raw.dtype != np.uint16:
            reason, detail = "bad_format", f"depth_raw.png is {raw.dtype} {raw.shape}, not 16-bit 1-channel"
        elif raw.shape != (HEIGHT, WIDTH):
            reason, detail = "bad_size", f"depth_raw.png is {raw.shape[1]}x{raw.shape[0]}, not {WIDTH}x{HEIGHT}"
    if not reason:
        rgb, reason, detail = _read_checked(d / "rgb.png", cv2.IMREAD_COLOR)
        if not reason and rgb.shape[:2] != raw.shape:
            reason, detail = "size_mismatch", f"rgb.png is {rgb.shape[1]}x{rgb.shape[0]}, depth is {WIDTH}x{HEIGHT}"
    if not reason:
        m = raw.astype(np.float64) * io.DEPTH_SCALE_M
        nonzero = (raw > 0) & (raw < 65535)
        in_range = (m >= min_d) & (m <= max_d)
        out["n_out_of_range"] = int((raw > 0).sum() - in_range.sum())
        med = float(np.median(m[nonzero])) if nonzero.any() else float("nan")
        frac = float(in_range.mean())
        out["depth_median_m"], out["depth_valid_fraction"] = round(med, 4), round(frac, 4)
        if not np.isfinite(med) or not min_d <= med <= max_d:
            reason, detail = "absurd_scale", f"median depth {med:.4f} m outside [{min_d}, {max_d}] m"
        elif frac < min_frac:
            reason, detail = "too_little_valid_depth", f"{frac:.1%} of pixels in range, need {min_frac:.0%}"
    out["reason"], out["detail"] = reason, detail
    return out


# --- the scan -----------------------------------------------------------------------------

def check_release_root(root: Path) -> None:
    """ValueError naming the first expected path that is missing."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"data.root={root}: not a folder (expected a Nutrition5k release)")
    for rel in [IMAGERY, *METADATA.values(), *SPLITS.values()]:
        if not (root / rel).exists():
            raise ValueError(f"data.root={root}: not a Nutrition5k release, {rel} is missing")


def scan_release(root: Path, fx: float, fy: float, cx: float, cy: float, workers: int = 1, *,
                 min_depth_m: float | None = None, max_depth_m: float | None = None,
                 min_valid_fraction: float | None = None) -> tuple[pd.DataFrame, dict]:
    """Validate every overhead dish of a release; return (manifest, report for metrics/ingest.json).
    The valid depth range and share: params `nutrition5k:` (None: its default).

    Manifest paths point into the release (relative to the repo root, nothing is copied)."""
    min_depth_m, max_depth_m, min_valid_fraction = or_default(
        Nutrition5kConfig, min_depth_m=min_depth_m, max_depth_m=max_depth_m, min_valid_fraction=min_valid_fraction)
    root = Path(root)
    check_release_root(root)
    for name, v in (("fx", fx), ("fy", fy)):
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"nutrition5k.{name} must be a positive focal length in px, got {v}")
    t0 = time.perf_counter()
    meta: dict[str, dict] = {}
    meta_counts = {}
    for cafe, rel in METADATA.items():
        rows, counts = read_metadata(root / rel, cafe)
        meta_counts[cafe] = counts
        for k, v in rows.items():
            meta.setdefault(k, v)
    split_of: dict[str, str] = {}
    split_ids = {s: read_split_ids(root / rel) for s, rel in SPLITS.items()}
    for s in ("train", "test"):  # test wins if an id is listed in both
        split_of.update({i: s for i in split_ids[s]})

    dirs = sorted(p for p in (root / IMAGERY).iterdir() if p.is_dir() and p.name.startswith("dish_"))
    jobs = [(str(p), p.name, min_depth_m, max_depth_m, min_valid_fraction) for p in dirs]
    checks = map_dishes(validate_dish, jobs, workers, "validate nutrition5k", chunksize=16)

    rows, skipped = [], {r: [] for r in SKIP_REASONS}
    details = {}
    for p, c in zip(dirs, checks):
        if c["reason"]:
            skipped[c["reason"]].append(c["dish_id"])
            details[c["dish_id"]] = c["detail"]
            continue
        m = meta.get(c["dish_id"], {})
        rows.append({"dish_id": c["dish_id"], "rgb_path": io.rel_to_repo(p / "rgb.png"),
                     "depth_path": io.rel_to_repo(p / "depth_raw.png"), "gt_mask_path": "",
                     "fx": float(fx), "fy": float(fy), "cx": float(cx), "cy": float(cy),
                     "width": WIDTH, "height": HEIGHT, "volume_ml_true": np.nan,
                     "mass_g": m.get("mass_g", np.nan), "source_split": split_of.get(c["dish_id"], ""),
                     "calories_kcal": m.get("calories_kcal", np.nan),
                     "n_ingredients": m.get("n_ingredients", 0), "cafe": m.get("cafe", ""),
                     "depth_valid_fraction": c["depth_valid_fraction"],
                     "depth_median_m": c["depth_median_m"], "min_depth_m": min_depth_m,
                     "max_depth_m": max_depth_m, "_oor": c["n_out_of_range"]})
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS + EXTRA_COLUMNS
                            + ["min_depth_m", "max_depth_m", "_oor"])
    n_oor = manifest.pop("_oor")
    seconds = time.perf_counter() - t0

    imaged = {p.name for p in dirs}
    no_imagery = {s: sorted(set(ids) - imaged) for s, ids in split_ids.items()}
    kept = set(manifest["dish_id"])
    report = {
        "n_found": len(dirs), "n_kept": len(manifest), "n_skipped": len(dirs) - len(manifest),
        "skipped": {r: len(v) for r, v in skipped.items()},
        "n_dishes_with_out_of_range_pixels": int((n_oor > 0).sum()),
        "n_out_of_range_pixels": int(n_oor.sum()),
        "n_kept_without_metadata": int(manifest["mass_g"].isna().sum()),
        "n_kept_per_source_split": {s or "none": int((manifest["source_split"] == s).sum())
                                    for s in ("train", "test", "")},
        "split_ids_without_imagery": {s: len(v) for s, v in no_imagery.items()},
        "split_ids_skipped_as_bad": {s: len((set(ids) & imaged) - kept) for s, ids in split_ids.items()},
        "metadata": meta_counts,
        "intrinsics": {"fx": fx, "fy": fy, "cx": cx, "cy": cy},
        "depth_range_m": [min_depth_m, max_depth_m], "min_valid_fraction": min_valid_fraction,
        "seconds": round(seconds, 2), "ms_per_dish": round(1000 * seconds / max(len(dirs), 1), 2),
        "skipped_ids": {r: v for r, v in skipped.items() if v},
        "skipped_details": details,
        "split_ids_without_imagery_ids": no_imagery,
    }
    return manifest, report
