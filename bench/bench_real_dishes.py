"""Real Nutrition5k dishes: offline rig-aware masks and volume labels against hand annotations
and the scale, at both candidate focal lengths (the release publishes no intrinsics).

    python bench/bench_real_dishes.py [--root RELEASE_ROOT] [--synthetic-seed 11] [--synthetic-n 40]

RELEASE_ROOT: a Nutrition5k release (or a subset in its layout); default params.yaml data.root.
Annotations: tests/data/n5k_annotations/<dish_id>.png (food = 255), drawn by hand. Prints, per
dish and focal length: mask IoU, support used, volume, density (mass / volume) and suspect
flags. The rig plane is fitted across the dishes given, as ingest does.

A second table: the depth-free given masks of the evaluation (pipeline.masks.rgb, RGB only)
against the same annotations, and, so the rule is not judged on two dishes alone, against the
ground truth of synthetic rig-family dishes (640x480, seed 11: held out, the rule was tuned on
seed 7).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from pipeline import io, suspect
from pipeline.config import Params, load_params
from pipeline.data.nutrition5k import scan_release
from pipeline.data.rig import estimate_rig_plane, tilt_deg
from pipeline.masks.cleanup import iou
from pipeline.masks.from_depth import food_mask
from pipeline.masks.rgb import depth_free_mask, sam2_checkpoint_file
from pipeline.masks.support import volume_above_support

ANNOTATIONS = io.REPO_ROOT / "tests/data/n5k_annotations"
PAPER_F = 465.0   # px, implied by the paper's numbers (params nutrition5k.fx: the D435 colour camera)


def real_dish_table(root: Path, focals=None, params: Params | None = None) -> list[dict]:
    """One row per (dish with an annotation, focal length; default: params' and the paper's)."""
    p = params or load_params()
    n5k = p.nutrition5k
    focals = focals or (n5k.fx, PAPER_F)
    m, v = p.masks, p.volume
    rows = []
    for f in focals:
        manifest, _ = scan_release(root, f, f, n5k.cx, n5k.cy)
        rig = estimate_rig_plane(manifest, [root], p.nutrition5k.rig_plane_dishes,
                                 max_tilt_deg=p.suspect.max_rig_tilt_deg)
        plane = (np.asarray(rig["normal"]), rig["d"])
        for r in manifest.to_dict("records"):
            ann_path = ANNOTATIONS / f"{r['dish_id']}.png"
            if not ann_path.is_file():
                continue
            depth = io.read_dish_depth(r, [root])
            rgb = io.read_rgb(io.resolve(r["rgb_path"], [root]))
            K = io.K_from_row(r)
            mask, sup = food_mask(depth, K, m.min_height_mm, m.min_area_px, plane, rgb, suspect_cfg=p.suspect)
            res = volume_above_support(depth, mask, K, sup, v.method, v.ring_px, v.cell_mm)
            mass = float(r["mass_g"])
            reasons = (suspect.mask_reasons(mask, mass, sup.kind, sup.inlier_fraction, p.suspect,
                                            sup.floor_guess_m, sup.floor_wall_colour, sup.uncertainty)
                       + suspect.label_reasons(res.volume_ml, mass, tilt_deg(res.plane_normal),
                                               sup.kind != "plane", p.suspect))
            rows.append({"dish_id": r["dish_id"], "f_px": f, "iou": iou(mask, io.read_mask(ann_path)),
                         "mask_px": int(mask.sum()), "support": sup.kind, "mass_g": mass,
                         "volume_ml": res.volume_ml, "density_g_ml": mass / max(res.volume_ml, 1e-9),
                         "suspect": suspect.join(reasons) or "-"})
    return rows


def _given_predictor(params: Params):
    """SAM 2 when masks.sam2_checkpoint is a local file (as the masks stage), else None."""
    m = params.masks
    if sam2_checkpoint_file(m.sam2_checkpoint) is None:
        return None
    from pipeline.masks.sam2 import load_sam2_predictor
    return load_sam2_predictor(m.sam2_checkpoint, m.sam2_config)


def given_mask_table(root: Path, params: Params | None = None) -> list[dict]:
    """One row per annotated dish: IoU of the depth-free given mask (RGB only) with the annotation."""
    p = params or load_params()
    predictor = _given_predictor(p)
    n5k = p.nutrition5k
    manifest, _ = scan_release(root, n5k.fx, n5k.fy, n5k.cx, n5k.cy)
    rows = []
    for r in manifest.to_dict("records"):
        ann_path = ANNOTATIONS / f"{r['dish_id']}.png"
        if ann_path.is_file():
            mask, source = depth_free_mask(io.read_rgb(io.resolve(r["rgb_path"], [root])),
                                           p.masks.min_area_px, predictor)
            rows.append({"dish_id": r["dish_id"], "mask_source": source,
                         "iou": iou(mask, io.read_mask(ann_path)), "mask_px": int(mask.sum())})
    return rows


def synthetic_given_ious(seed: int, n: int, params: Params | None = None) -> dict[str, list[float]]:
    """IoU of the depth-free given mask with the ground truth, per synthetic rig family."""
    from pipeline.data.scene import FAMILIES
    from pipeline.data.synthetic import generate_dish

    p = params or load_params()
    predictor = _given_predictor(p)
    rig = {k: 1.0 for k in FAMILIES if k != "table"}
    out: dict[str, list[float]] = {}
    for i in range(n):
        d = generate_dish(seed, i, width=640, height=480, families=rig)
        mask, _ = depth_free_mask(d.rgb, p.masks.min_area_px, predictor)
        out.setdefault(d.meta.get("scene", "?"), []).append(iou(mask, d.mask))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=None, help="Nutrition5k release root (default: data.root)")
    ap.add_argument("--synthetic-seed", type=int, default=11, help="held-out synthetic seed (tuned on 7)")
    ap.add_argument("--synthetic-n", type=int, default=40, help="synthetic rig-family dishes")
    args = ap.parse_args()
    root = Path(args.root or io.REPO_ROOT / load_params().data.root).resolve()
    rows = real_dish_table(root)
    if not rows:
        raise SystemExit(f"{root}: no dish there has an annotation in {ANNOTATIONS}")
    print(f"{'dish':17} {'f px':>6} {'IoU':>5} {'mask px':>8} {'support':>12} {'mass g':>7} "
          f"{'volume mL':>10} {'g/mL':>6}  suspect")
    for r in rows:
        print(f"{r['dish_id']:17} {r['f_px']:6.1f} {r['iou']:5.3f} {r['mask_px']:8d} {r['support']:>12} "
              f"{r['mass_g']:7.0f} {r['volume_ml']:10.1f} {r['density_g_ml']:6.2f}  {r['suspect']}")

    print(f"\ngiven masks (depth-free, RGB only) vs annotation\n{'dish':17} {'source':>9} {'IoU':>5} {'mask px':>8}")
    for r in given_mask_table(root):
        print(f"{r['dish_id']:17} {r['mask_source']:>9} {r['iou']:5.3f} {r['mask_px']:8d}")
    syn = synthetic_given_ious(args.synthetic_seed, args.synthetic_n)
    print(f"\ngiven masks vs ground truth, synthetic rig families (seed {args.synthetic_seed})\n"
          f"{'family':10} {'n':>3} {'IoU mean':>9} {'median':>7} {'p10':>6}")
    for fam, v in sorted(syn.items()) + [("all", [x for xs in syn.values() for x in xs])]:
        print(f"{fam:10} {len(v):3d} {np.mean(v):9.3f} {np.median(v):7.3f} {np.quantile(v, 0.1):6.3f}")


if __name__ == "__main__":
    main()
