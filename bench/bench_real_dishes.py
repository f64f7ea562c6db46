"""Real Nutrition5k dishes: offline rig-aware masks and volume labels against hand annotations
and the scale, at both candidate focal lengths (the release publishes no intrinsics).

    python bench/bench_real_dishes.py [--root RELEASE_ROOT] [--overlay DIR] [--alone]
                                      [--synthetic-seed 11] [--synthetic-n 40]

RELEASE_ROOT: a Nutrition5k release (or a subset in its layout); default params.yaml data.root.
Annotations: tests/data/n5k_annotations/<dish_id>.json (a polygon traced by hand, rasterised
here) or .png (food = 255). Prints, per dish and focal length: mask IoU, support used, volume,
density (mass / volume), the stated uncertainty and suspect flags, all from the stages' own
entries (bench/stage_path.py: ingest's rig plane, the masks stage's vessel floor, the labels
stage), i.e. what `dvc repro labels` gives with data.root=RELEASE_ROOT. `--overlay DIR` writes
each dish's mask overlay there (look at it before trusting a number). `--alone` adds each dish
run as a release of its own (a copy holding only it): no other dish shows the platform or a plate.

A second table: the depth-free given masks of the evaluation (pipeline.masks.rgb, RGB only)
against the same annotations, and, so the rule is not judged on two dishes alone, against the
ground truth of synthetic rig-family dishes (640x480, seed 11: held out, the rule was tuned on
seed 7).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: bench.stage_path

import cv2
import numpy as np
import pandas as pd

from bench.stage_path import run_stages
from pipeline import io
from pipeline.config import Params, load_params
from pipeline.data.nutrition5k import scan_release
from pipeline.masks.cleanup import iou
from pipeline.masks.rgb import depth_free_mask, sam2_checkpoint_file

ANNOTATIONS = io.REPO_ROOT / "tests/data/n5k_annotations"
PAPER_F = 465.0   # px, implied by the paper's numbers (params nutrition5k.fx: the D435 colour camera)


def annotation(dish_id: str, shape: tuple[int, int] = (480, 640)) -> np.ndarray | None:
    """The hand annotation of a dish (food True): `<dish_id>.json`, a polygon traced on the RGB
    image (rasterised here, so the procedure stays code), else `<dish_id>.png`; None when absent."""
    poly = ANNOTATIONS / f"{dish_id}.json"
    if poly.is_file():
        pts = np.asarray(io.read_json(poly)["polygon_xy"], np.int32)
        out = np.zeros(shape, np.uint8)
        cv2.fillPoly(out, [pts], 1)
        return out.astype(bool)
    png = ANNOTATIONS / f"{dish_id}.png"
    return io.read_mask(png) if png.is_file() else None


def real_dish_table(root: Path, focals=None, params: Params | None = None,
                    overlay_dir: Path | None = None) -> list[dict]:
    """One row per (dish with an annotation, focal length; default: params' and the paper's),
    through the stages' own entries (bench/stage_path.py: what `dvc repro labels` runs with
    data.root=`root`). `overlay_dir`: also write each dish's mask overlay (green: mask, red:
    annotation outline) there."""
    p = params or load_params()
    focals = focals or (p.nutrition5k.fx, PAPER_F)
    rows = []
    for f in focals:
        n5k = dataclasses.replace(p.nutrition5k, fx=float(f), fy=float(f))
        with tempfile.TemporaryDirectory(dir=io.REPO_ROOT) as tmp:
            index, skipped, _, _ = run_stages(root, Path(tmp), dataclasses.replace(p, nutrition5k=n5k), workers=1)
            table = pd.concat([index, skipped], ignore_index=True)
            for r in table.to_dict("records"):
                ann = annotation(r["dish_id"])
                if ann is None:
                    continue
                path = r.get("mask_path")   # none: the dish was skipped (its reason in the table)
                mask = io.read_mask(io.resolve(path, [Path(tmp)])) if isinstance(path, str) and path else \
                    np.zeros_like(ann)
                mass, vol = float(r["mass_g"]), float(r["volume_ml"])
                if overlay_dir is not None:
                    _overlay(io.read_rgb(io.resolve(r["rgb_path"], [root])), mask, ann,
                             Path(overlay_dir) / f"{r['dish_id']}_f{f:.0f}.png")
                sup = r.get("support_json") if isinstance(r.get("support_json"), str) else "{}"
                rows.append({"dish_id": r["dish_id"], "f_px": f, "iou": iou(mask, ann),
                             "mask_px": int(mask.sum()), "support": r["support"], "mass_g": mass,
                             "volume_ml": vol, "density_g_ml": mass / max(vol, 1e-9),
                             "uncertainty": json.loads(sup or "{}").get("uncertainty"),
                             "suspect": r["suspect"] if isinstance(r["suspect"], str) and r["suspect"] else "-"})
    return rows


def _overlay(rgb: np.ndarray, mask: np.ndarray, ann: np.ndarray, path: Path) -> None:
    """The mask in green over the image, the annotation's outline in red."""
    out = rgb.copy()
    out[mask] = (0.5 * out[mask] + np.array([0, 127, 0])).astype(np.uint8)
    cs, _ = cv2.findContours(ann.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, cs, -1, (255, 0, 0), 2)
    io.write_rgb(path, out)


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
        ann = annotation(r["dish_id"])
        if ann is not None:
            mask, source = depth_free_mask(io.read_rgb(io.resolve(r["rgb_path"], [root])),
                                           p.masks.min_area_px, predictor)
            rows.append({"dish_id": r["dish_id"], "mask_source": source,
                         "iou": iou(mask, ann), "mask_px": int(mask.sum())})
    return rows


def release_of(root: Path, dest: Path, dish_ids: set[str]) -> Path:
    """A copy at `dest` of the release at `root` holding only `dish_ids`, in its layout (metadata
    and split lines filtered): what a user who points data.root at a subset of Nutrition5k has."""
    for f in root.rglob("*"):
        rel = f.relative_to(root)
        if f.is_dir() or (rel.parts[0] == "imagery" and len(rel.parts) > 2 and rel.parts[2] not in dish_ids):
            continue
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if f.suffix in (".csv", ".txt"):
            out.write_text("".join(line for line in f.read_text().splitlines(keepends=True)
                                   if line.split(",")[0].strip() in dish_ids))
        else:
            shutil.copyfile(f, out)
    return dest


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
    ap.add_argument("--synthetic-n", type=int, default=40, help="synthetic rig-family dishes (0: none)")
    ap.add_argument("--overlay", type=Path, default=None, help="write mask overlays here")
    ap.add_argument("--alone", action="store_true",
                    help="also each annotated dish as a release of its own (at params' focal length)")
    args = ap.parse_args()
    params = load_params()
    root = Path(args.root or io.REPO_ROOT / params.data.root).resolve()
    rows = real_dish_table(root, params=params, overlay_dir=args.overlay)
    if not rows:
        raise SystemExit(f"{root}: no dish there has an annotation in {ANNOTATIONS}")
    if args.alone:   # a release of one dish: no other dish shows the platform or a plate
        for dish in sorted({r["dish_id"] for r in rows}):
            with tempfile.TemporaryDirectory() as tmp:
                alone = real_dish_table(release_of(root, Path(tmp), {dish}), focals=(params.nutrition5k.fx,),
                                        params=params, overlay_dir=args.overlay and args.overlay / "alone")
            rows += [dict(r, dish_id=f"{r['dish_id']}*") for r in alone]
    print(f"{'dish':17} {'f px':>6} {'IoU':>5} {'mask px':>8} {'support':>12} {'mass g':>7} "
          f"{'volume mL':>10} {'g/mL':>6} {'unc':>5}  suspect")
    for r in rows:
        unc = f"{r['uncertainty']:5.2f}" if r["uncertainty"] is not None else "    -"
        print(f"{r['dish_id']:17} {r['f_px']:6.1f} {r['iou']:5.3f} {r['mask_px']:8d} {r['support']:>12} "
              f"{r['mass_g']:7.0f} {r['volume_ml']:10.1f} {r['density_g_ml']:6.2f} {unc}  {r['suspect']}")
    if args.alone:
        print("* the dish alone: a release holding only it")

    print(f"\ngiven masks (depth-free, RGB only) vs annotation\n{'dish':17} {'source':>9} {'IoU':>5} {'mask px':>8}")
    for r in given_mask_table(root):
        print(f"{r['dish_id']:17} {r['mask_source']:>9} {r['iou']:5.3f} {r['mask_px']:8d}")
    if args.synthetic_n <= 0:   # the real dishes only
        return
    syn = synthetic_given_ious(args.synthetic_seed, args.synthetic_n)
    print(f"\ngiven masks vs ground truth, synthetic rig families (seed {args.synthetic_seed})\n"
          f"{'family':10} {'n':>3} {'IoU mean':>9} {'median':>7} {'p10':>6}")
    for fam, v in sorted(syn.items()) + [("all", [x for xs in syn.values() for x in xs])]:
        print(f"{fam:10} {len(v):3d} {np.mean(v):9.3f} {np.median(v):7.3f} {np.quantile(v, 0.1):6.3f}")


if __name__ == "__main__":
    main()
