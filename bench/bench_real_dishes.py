"""Real Nutrition5k dishes: offline rig-aware masks and volume labels against hand annotations
and the scale, at both candidate focal lengths (the release publishes no intrinsics).

    python bench/bench_real_dishes.py [--root RELEASE_ROOT]

RELEASE_ROOT: a Nutrition5k release (or a subset in its layout); default params.yaml data.root.
Annotations: tests/data/n5k_annotations/<dish_id>.png (food = 255), drawn by hand. Prints, per
dish and focal length: mask IoU, support used, volume, density (mass / volume) and suspect
flags. The rig plane is fitted across the dishes given, as ingest does.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from pipeline import io, suspect  # noqa: E402
from pipeline.masks import food_mask, iou  # noqa: E402
from pipeline.nutrition5k import DEFAULT_CX, DEFAULT_CY, DEFAULT_FX, scan_release  # noqa: E402
from pipeline.rig import estimate_rig_plane, tilt_deg  # noqa: E402
from pipeline.support import volume_above_support  # noqa: E402

ANNOTATIONS = io.REPO_ROOT / "tests/data/n5k_annotations"
FOCALS = (DEFAULT_FX, 465.0)   # D435 colour at 640x480 (default) / implied by the paper's numbers


def real_dish_table(root: Path, focals=FOCALS, params: dict | None = None) -> list[dict]:
    """One row per (dish with an annotation, focal length)."""
    p = params or io.load_params()
    m, v = p["masks"], p["volume"]
    rows = []
    for f in focals:
        manifest, _ = scan_release(root, f, f, DEFAULT_CX, DEFAULT_CY)
        rig = estimate_rig_plane(manifest, [root], p["nutrition5k"].get("rig_plane_dishes", 64))
        plane = (np.asarray(rig["normal"]), rig["d"])
        for r in manifest.to_dict("records"):
            ann_path = ANNOTATIONS / f"{r['dish_id']}.png"
            if not ann_path.is_file():
                continue
            depth = io.read_dish_depth(r, [root])
            rgb = io.read_rgb(io.resolve(r["rgb_path"], [root]))
            K = io.K_from_row(r)
            mask, sup = food_mask(depth, K, m["min_height_mm"], m["min_area_px"], plane, rgb)
            res = volume_above_support(depth, mask, K, sup, v["method"], v["ring_px"], v["cell_mm"])
            mass = float(r["mass_g"])
            reasons = (suspect.mask_reasons(mask, mass, sup.kind, sup.inlier_fraction, p.get("suspect"),
                                            sup.floor_guess_m, sup.floor_wall_colour)
                       + suspect.label_reasons(res.volume_ml, mass, tilt_deg(res.plane_normal),
                                               sup.kind != "plane", p.get("suspect")))
            rows.append({"dish_id": r["dish_id"], "f_px": f, "iou": iou(mask, io.read_mask(ann_path)),
                         "mask_px": int(mask.sum()), "support": sup.kind, "mass_g": mass,
                         "volume_ml": res.volume_ml, "density_g_ml": mass / max(res.volume_ml, 1e-9),
                         "suspect": suspect.join(reasons) or "-"})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=None, help="Nutrition5k release root (default: data.root)")
    args = ap.parse_args()
    root = Path(args.root or io.REPO_ROOT / io.load_params()["data"]["root"]).resolve()
    rows = real_dish_table(root)
    if not rows:
        raise SystemExit(f"{root}: no dish there has an annotation in {ANNOTATIONS}")
    print(f"{'dish':17} {'f px':>6} {'IoU':>5} {'mask px':>8} {'support':>12} {'mass g':>7} "
          f"{'volume mL':>10} {'g/mL':>6}  suspect")
    for r in rows:
        print(f"{r['dish_id']:17} {r['f_px']:6.1f} {r['iou']:5.3f} {r['mask_px']:8d} {r['support']:>12} "
              f"{r['mass_g']:7.0f} {r['volume_ml']:10.1f} {r['density_g_ml']:6.2f}  {r['suspect']}")


if __name__ == "__main__":
    main()
