"""The masks stage: one food mask per dish (ground truth, geometry or SAM 2) with its support and
suspect flags, and a depth-free given mask per dish for the evaluation (ground truth on synthetic
dishes, RGB-only on Nutrition5k), written atomically with failures counted, never dropped."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import io, suspect
from pipeline.config import MasksConfig, Params, SuspectConfig
from pipeline.masks.cleanup import iou
from pipeline.masks.from_depth import food_mask
from pipeline.masks.levelled import FLOOR_M
from pipeline.masks.support import KINDS, Support
from pipeline.masks.vessel_floor import release_floor
from pipeline.parallel import map_dishes


@dataclass
class MaskSettings:
    """What every per-dish mask job needs: params `masks:` and `suspect:`, the data roots index
    paths may point into, and (Nutrition5k) the fixed rig's plane from ingest."""
    masks: MasksConfig = field(default_factory=MasksConfig)
    suspect: SuspectConfig = field(default_factory=SuspectConfig)
    roots: list[Path] = field(default_factory=list)
    rig_plane: tuple[np.ndarray, float] | None = None
    rig_floor_m: float | None = None   # the release's typical vessel floor above the rig plane
    rig_fits: bool = True     # False: the dishes' surround offsets spread too much for one plane
    # no rig plane (synthetic): the dishes' own surround planes already fitted (release_floor)
    surround_planes: dict[str, tuple[np.ndarray, float] | None] = field(default_factory=dict)


def _given_one(row: dict, cfg: MaskSettings, out_dir: str, predictor: object = None) -> dict:
    """The dish's depth-free mask for the given evaluation setting: its ground truth where it has
    one (synthetic), else one read from the RGB image alone (pipeline.masks.rgb), written to
    `<out_dir>/given/<dish_id>.png`. Never reads the depth."""
    gt = row.get("gt_mask_path")
    if isinstance(gt, str) and gt:
        return {"given_mask_path": gt, "given_mask_source": "gt_mask", "given_mask_status": "ok"}
    from pipeline.masks.rgb import depth_free_mask
    try:
        rgb = io.read_rgb(io.resolve(row["rgb_path"], cfg.roots))
        mask, source = depth_free_mask(rgb, cfg.masks.min_area_px, predictor)
        io.write_mask(Path(out_dir) / GIVEN_DIR / f"{row['dish_id']}.png", mask)
    except ValueError as e:
        return {"given_mask_path": "", "given_mask_source": "", "given_mask_status": f"error: {e}"}
    return {"given_mask_path": f"{GIVEN_DIR}/{row['dish_id']}.png", "given_mask_source": source,
            "given_mask_status": "ok" if mask.any() else "empty"}


GIVEN_DIR = "given"   # <masks dir>/given/: the depth-free masks of dishes without a ground truth


def _mask_one(job: tuple[dict, MaskSettings, str], predictor: object = None,
              given_predictor: object = None) -> dict:
    """Make, write and score one dish's mask and its depth-free given mask (runs in a worker
    process for geometry)."""
    row, cfg, out_dir = job
    method, m = cfg.masks.method, cfg.masks
    out = {"dish_id": row["dish_id"], "mask_path": "", "mask_status": "ok", "mask_px": 0,
           "mask_iou_gt": np.nan, "support": "plane", "support_json": "", "support_plane": "", "suspect": "",
           **_given_one(row, cfg, out_dir, given_predictor)}
    try:
        support = Support("plane")
        if method == "gt":
            if not isinstance(row.get("gt_mask_path"), str) or not row["gt_mask_path"]:
                raise ValueError(f"{row['dish_id']}: masks.method=gt needs a ground-truth mask "
                                 "(synthetic data only); use geometry or sam2")
            mask = io.read_mask(io.resolve(row["gt_mask_path"], cfg.roots))
        else:
            depth = io.read_dish_depth(row, cfg.roots)
            K = io.K_from_row(row)
            rgb = io.read_rgb(io.resolve(row["rgb_path"], cfg.roots))
            fitted = {"surround_plane": cfg.surround_planes[row["dish_id"]]} \
                if row["dish_id"] in cfg.surround_planes else {}
            mask, support = food_mask(depth, K, m.min_height_mm, m.min_area_px, cfg.rig_plane, rgb,
                                      suspect_cfg=cfg.suspect, rig_floor_m=cfg.rig_floor_m,
                                      rig_fits=cfg.rig_fits, **fitted)
            if method == "sam2":
                from pipeline.masks.sam2 import sam2_food_mask
                mask = sam2_food_mask(predictor, rgb, depth, K, m.min_height_mm, m.min_area_px,
                                      prompt_mask=mask)
        path = Path(out_dir) / f"{row['dish_id']}.png"
        io.write_mask(path, mask)
        out["mask_px"] = int(mask.sum())
        out["mask_status"] = "ok" if mask.any() else "empty"
        out["support"], out["support_json"] = support.kind, support.to_json()
        out["support_plane"] = support.plane_source or ""
        out["suspect"] = suspect.join(suspect.mask_reasons(
            mask, float(row.get("mass_g", np.nan)), support.kind, support.inlier_fraction,
            cfg.suspect, support.floor_guess_m, support.floor_wall_colour, support.uncertainty))
        if isinstance(row.get("gt_mask_path"), str) and row["gt_mask_path"]:
            out["mask_iou_gt"] = iou(mask, io.read_mask(io.resolve(row["gt_mask_path"], cfg.roots)))
    except ValueError as e:
        out["mask_status"] = f"error: {e}"
    return out


def make_masks(df: pd.DataFrame, out_dir: Path, cfg: MaskSettings,
               workers: int = 1) -> tuple[pd.DataFrame, dict]:
    """Write `<out_dir>/<dish_id>.png` for every dish; return the per-dish table and a report.

    A dish whose mask fails (unreadable depth, no table) is kept in the table with its reason
    and counted; it never stops the stage. Every dish also gets a depth-free mask for the given
    evaluation setting (`given_mask_path`, `given_mask_source`, `given_mask_status`): its ground
    truth, or on Nutrition5k one read from the RGB only (SAM 2 when `masks.sam2_checkpoint` is
    a local file, else the colour rule), failures counted the same way.
    """
    method = cfg.masks.method
    out_dir = Path(out_dir)
    records = df.to_dict("records")
    from pipeline.masks.rgb import sam2_checkpoint_file
    local_sam2 = sam2_checkpoint_file(cfg.masks.sam2_checkpoint)
    needs_given = any(not (isinstance(r.get("gt_mask_path"), str) and r["gt_mask_path"]) for r in records)
    with io.atomic_dir(out_dir) as tmp:
        jobs = [(r, cfg, str(tmp)) for r in records]
        if method == "sam2" or (local_sam2 is not None and needs_given):  # one model in one process
            from pipeline.masks.sam2 import load_sam2_predictor
            predictor = load_sam2_predictor(cfg.masks.sam2_checkpoint, cfg.masks.sam2_config)
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


def masks_from_files(split_csv: Path, raw_dir: Path, out_dir: Path, p: Params,
                     roots: list[Path]) -> tuple[pd.DataFrame, dict]:
    """The masks stage on the files earlier stages wrote: split.csv and, on Nutrition5k, the rig
    plane in `raw_dir` (ingest); the release's vessel floor is re-estimated robustly from the
    dishes themselves (pipeline.masks.vessel_floor). One entry for the stage and the benches."""
    from pipeline.data.rig import read_rig_extras, read_rig_plane

    df = io.read_index(split_csv, required=["dish_id", "split", "rgb_path", "depth_path",
                                            "fx", "fy", "cx", "cy"])
    if "mass_g" not in df:
        df["mass_g"] = float("nan")
    rig = read_rig_plane(raw_dir)   # Nutrition5k: the fixed rig's plane
    floor_m, fits = read_rig_extras(raw_dir)
    cfg = MaskSettings(p.masks, p.suspect, roots, rig, floor_m, fits)
    if rig is None:   # synthetic rig families: each dish's own plane, the platforms the dishes
        # show; with none seen nothing says where the vessels stand (a glass platform may hide)
        found = release_floor(df, cfg, p.nutrition5k.rig_plane_dishes, no_evidence_m=None)
        cfg.surround_planes = found.surround_planes
    else:   # the rig (no platform, no plate seen: the vessels stand on its stated floor or on the
        # surround); a camera pose per dish: each dish's own surround plane (the floor's height
        # above it holds in any pose)
        found = release_floor(df, cfg if fits else replace(cfg, rig_plane=None), p.nutrition5k.rig_plane_dishes,
                              no_evidence_m=FLOOR_M, stated_m=p.nutrition5k.vessel_floor_m)
    cfg.rig_floor_m = found.floor_m
    table, report = make_masks(df, out_dir, cfg, workers=p.data.workers)
    report["vessel_floor_m"] = cfg.rig_floor_m   # what the masks stood on, and ingest's beside it
    report["vessel_floor_from"] = {"used": found.source, "dishes_showing": found.evidence}
    if rig is not None:
        report["vessel_floor_ingest_m"] = floor_m
    return table, report
