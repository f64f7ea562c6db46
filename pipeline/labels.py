"""GT volume labels: the volume under the measured depth over the mask, per dish.

The label is what the pipeline would compute from a perfect depth sensor; on synthetic
dishes it is compared with the analytic truth (`volume_ml_true`) so the label error of the
geometry and the masks is known before any model is trained.
"""
from __future__ import annotations


import numpy as np
import pandas as pd

from pipeline import io
from pipeline.parallel import map_dishes
from pipeline.geometry import estimate_volume
from pipeline.metrics import volume_metrics


def _label_one(job: tuple[dict, dict]) -> dict:
    row, cfg = job
    out = {"dish_id": row["dish_id"], "volume_ml": np.nan, "label_status": "ok"}
    try:
        if row.get("mask_status", "ok") != "ok":
            raise ValueError(f"no usable mask ({row['mask_status']})")
        depth = io.read_dish_depth(row, cfg["roots"])
        mask = io.read_mask(io.resolve(row["mask_path"], cfg["roots"]), shape=depth.shape)
        K = io.K_from_row(row)
        res = estimate_volume(depth, mask, K, method=cfg["method"], ring_px=cfg["ring_px"],
                              cell_mm=cfg["cell_mm"])
        out["volume_ml"] = res.volume_ml
        out["plane_nz"] = float(res.plane_normal[2])
        out["n_holes"] = res.n_holes
        if cfg.get("with_gt_mask") and isinstance(row.get("gt_mask_path"), str) and row["gt_mask_path"]:
            gt_mask = io.read_mask(io.resolve(row["gt_mask_path"], cfg["roots"]), shape=depth.shape)
            out["volume_ml_gt_mask"] = estimate_volume(
                depth, gt_mask, K, method=cfg["method"], ring_px=cfg["ring_px"],
                cell_mm=cfg["cell_mm"]).volume_ml
    except ValueError as e:
        out["label_status"] = f"skipped: {e}"
    return out


def label_error(pred: pd.Series, true: pd.Series, prefix: str) -> dict:
    """The evaluation's volume metrics (pipeline.metrics), for labels against the truth."""
    ok = pred.notna() & true.notna() & (true > 0)
    m = volume_metrics(true[ok].to_numpy(), pred[ok].to_numpy())
    return {f"{prefix}_{k.removeprefix('volume_')}": v if k == "n" else round(float(v), 4)
            for k, v in m.items()}


def make_labels(df: pd.DataFrame, cfg: dict, workers: int = 1) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Label every dish; return (index of labelled dishes, skipped dishes with reasons, report)."""
    if cfg["method"] not in ("heightmap", "columns"):
        raise ValueError(f"volume.method must be heightmap or columns, got {cfg['method']!r}")
    jobs = [(r, cfg) for r in df.to_dict("records")]
    rows = map_dishes(_label_one, jobs, workers, f"labels ({cfg['method']})")
    labelled = df.merge(pd.DataFrame(rows), on="dish_id", how="left", validate="one_to_one")
    ok = labelled["label_status"] == "ok"
    index, skipped = labelled[ok].reset_index(drop=True), labelled[~ok].reset_index(drop=True)
    report = {"method": cfg["method"], "n_dishes": len(labelled), "n_labelled": int(ok.sum()),
              "n_skipped": int((~ok).sum()),
              "n_per_split": {s: int((index["split"] == s).sum()) for s in ("train", "val", "test")}}
    if "volume_ml_true" in index and index["volume_ml_true"].notna().any():
        report.update(label_error(index["volume_ml"], index["volume_ml_true"], "label"))
        if "volume_ml_gt_mask" in index:
            report.update(label_error(index["volume_ml_gt_mask"], index["volume_ml_true"],
                                      "label_gt_mask"))
    return index, skipped, report
