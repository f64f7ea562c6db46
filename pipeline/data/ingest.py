"""Ingest: turn a data source into `data/raw/` (per-dish files) plus `data/raw/manifest.csv`.

The synthetic source renders dishes into `data/raw/<dish_id>/`; Nutrition5k is read in place
(the manifest points into the release, nothing is copied). The whole folder is built under a
temporary name and renamed at the end, so a killed ingest leaves no half-written `data/raw`.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import io
from pipeline.config import DataConfig, Nutrition5kConfig, or_default
from pipeline.data.nutrition5k import MANIFEST_COLUMNS
from pipeline.parallel import map_dishes


def _render_one(job: tuple[int, int, int, int, bool, str, str, dict | None, int | None, str]) -> dict:
    """Render and write one synthetic dish, or one wide scene (kind "room", the pretraining's),
    in a worker process."""
    from pipeline.data.synthetic import generate_dish, generate_room

    seed, index, width, height, noise, tmp_dir, final_dir, families, ring_px, kind = job
    if kind == "room":
        dish, dish_id = generate_room(seed, index, width=width, height=height), f"room_{index:05d}"
    else:
        dish = generate_dish(seed, index, width=width, height=height, noise=noise, families=families,
                             ring_px=ring_px)
        dish_id = f"syn_{index:05d}"
    out = Path(tmp_dir) / dish_id
    io.write_rgb(out / "rgb.png", dish.rgb)
    io.write_depth_png(out / "depth.png", dish.depth)
    io.write_mask(out / "mask_gt.png", dish.mask)
    final = Path(final_dir) / dish_id
    fx, fy, cx, cy = dish.K[0, 0], dish.K[1, 1], dish.K[0, 2], dish.K[1, 2]
    row = {"dish_id": dish_id, "rgb_path": io.rel_to_repo(final / "rgb.png"),
           "depth_path": io.rel_to_repo(final / "depth.png"),
           "gt_mask_path": io.rel_to_repo(final / "mask_gt.png"),
           "fx": fx, "fy": fy, "cx": cx, "cy": cy, "width": width, "height": height,
           "volume_ml_true": dish.volume_ml_true, "mass_g": dish.meta["mass_g"], "source_split": "",
           "n_items": len(dish.item_volumes_ml)}
    for k, v in dish.meta.items():
        if isinstance(v, (int, float, str, np.number)):
            row[k] = v
    return row


def ingest_synthetic(out_dir: Path, seed: int, n_dishes: int, width: int | None = None, height: int | None = None,
                     noise: bool | None = None, workers: int = 1, families: dict | None = None,
                     ring_px: int | None = None, n_rooms: int = 0) -> tuple[pd.DataFrame, dict]:
    """Render `n_dishes` synthetic dishes (and `n_rooms` wide scenes, the pretraining's) into
    `out_dir` (replaced atomically as a whole); width, height, noise: params `data:` (None: its
    default); `families`: scene-family mixture weights (params `data.families`, None: table only);
    `ring_px`: params `volume.ring_px`, the floor ring table views keep around the food."""
    width, height, noise = or_default(DataConfig, width=width, height=height, noise=noise)
    if n_dishes + n_rooms < 1:
        raise ValueError(f"data.n_dishes must be >= 1, got {n_dishes}")
    out_dir = Path(out_dir)
    with io.atomic_dir(out_dir) as tmp_dir:
        jobs = [(seed, i, width, height, noise, str(tmp_dir), str(out_dir), families, ring_px, "dish")
                for i in range(n_dishes)]
        jobs += [(seed, i, width, height, False, str(tmp_dir), str(out_dir), None, None, "room")
                 for i in range(n_rooms)]
        t0 = time.perf_counter()
        rows = map_dishes(_render_one, jobs, workers, "render dishes")
        seconds = time.perf_counter() - t0
        manifest = pd.DataFrame(rows)
        io.write_csv(tmp_dir / "manifest.csv", manifest)
    report = {"source": "synthetic", "n_found": n_dishes + n_rooms, "n_kept": len(manifest), "n_skipped": 0,
              "seconds": round(seconds, 2), "dishes_per_s": round((n_dishes + n_rooms) / max(seconds, 1e-9), 2),
              "scenes": {str(k): int(v) for k, v in manifest["scene"].value_counts().sort_index().items()}}
    return manifest, report


def ingest_nutrition5k(out_dir: Path, root: Path, cfg: Nutrition5kConfig, workers: int = 1,
                       max_rig_tilt_deg: float | None = None) -> tuple[pd.DataFrame, dict]:
    """Validate a Nutrition5k release in place and write only the manifest into `out_dir`.
    `cfg` is params.yaml's `nutrition5k` section (intrinsics, valid depth range);
    `max_rig_tilt_deg` its `suspect.max_rig_tilt_deg` (None: the default)."""
    from pipeline.data.nutrition5k import scan_release

    manifest, report = scan_release(Path(root), cfg.fx, cfg.fy, cfg.cx, cfg.cy,
                                    workers=workers, min_depth_m=cfg.min_depth_m,
                                    max_depth_m=cfg.max_depth_m,
                                    min_valid_fraction=cfg.min_valid_fraction)
    from pipeline.data.rig import RIG_PLANE_FILE, estimate_rig_plane

    try:  # one fixed camera: the plane around the scale platform is the same in every dish
        rig = estimate_rig_plane(manifest, [Path(root).resolve()], cfg.rig_plane_dishes,
                                 max_tilt_deg=max_rig_tilt_deg)
    except ValueError as e:
        rig = {"error": str(e)}
    with io.atomic_dir(out_dir) as tmp_dir:
        io.write_csv(tmp_dir / "manifest.csv", manifest)
        if "error" not in rig:
            io.write_json(tmp_dir / RIG_PLANE_FILE, rig)
    return manifest, {"source": "nutrition5k", **report, "rig_plane": rig}


def read_manifest(raw_dir: Path) -> pd.DataFrame:
    """The ingest manifest, validated."""
    return io.read_index(Path(raw_dir) / "manifest.csv", required=MANIFEST_COLUMNS)
