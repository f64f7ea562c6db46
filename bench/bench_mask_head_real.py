"""The food-mask head on real Nutrition5k photos against hand annotations: an ILLUSTRATION (the model
was trained on synthetic dishes and never saw a real photo), written where the report reads it.

    python bench/bench_mask_head_real.py --root RELEASE_ROOT [--weights models/depth_anything_v2/stage2]

RELEASE_ROOT: a Nutrition5k release or a subset in its layout (default params.yaml data.root). For every
dish there with an annotation in tests/data/n5k_annotations/ (bench/bench_real_dishes.annotation): the IoU
with the annotation of the head's mask (what `predict` cuts with these weights), of the cut from the
model's predicted depth (the fallback) and of the RGB colour rule (the given masks on Nutrition5k),
each at the photo's resolution with params.yaml's K (nutrition5k.fx...). Writes
metrics/eval/<model>_mask_head_real.json with the weights' SHA-256: the report (stage `report`) shows it
beside the `<model>_e2e_head` row and says when it was computed on other weights than that row's.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: bench.*

from bench.bench_real_dishes import ANNOTATIONS, annotation
from pipeline import io
from pipeline.config import Params, load_params
from pipeline.data.nutrition5k import scan_release
from pipeline.evaluate.report import REAL_DISHES_SUFFIX
from pipeline.masks.cleanup import iou
from pipeline.masks.rgb import depth_free_mask
from pipeline.measure import food_mask, measure
from pipeline.paths import EVAL_METRICS_DIR, model_dir, repo_path

# what the two sample dishes are (tests/data/n5k_annotations/README.md)
SCENES = {"dish_1559845399": "plate", "dish_1568056217": "steel bowl"}
NOTE = ("illustration only: the model was trained on synthetic dishes and never saw a real photo; "
        "two dishes, IoU against hand annotations")


def real_mask_ious(root: Path, weights: Path, params: Params | None = None) -> dict:
    """The JSON the report reads: per annotated dish, the IoU of each mask source with the annotation."""
    from pipeline.models.inference import WEIGHTS_FILE, load_model, predict_arrays
    from pipeline.predict import inference_size

    p = params or load_params()
    model = load_model(weights)
    if not model.has_mask_head:
        raise ValueError(f"{weights}: these weights carry no food-mask head (model_cfg.<model>.mask_head: false)")
    n5k = p.nutrition5k
    manifest, _ = scan_release(root, n5k.fx, n5k.fy, n5k.cx, n5k.cy)
    dishes = []
    for r in manifest.to_dict("records"):
        ann = annotation(r["dish_id"])
        if ann is None:
            continue
        rgb = io.read_rgb(io.resolve(r["rgb_path"], [root]))
        K = io.K_from_row(r)
        res = predict_arrays(model, rgb, K, inference_size(weights, rgb.shape[:2], model.input_multiple))
        head = food_mask(res["food_prob"], p.masks.min_area_px)
        cut = measure(res["depth"], K, None, p.volume, p.masks).mask
        rule, _ = depth_free_mask(rgb, p.masks.min_area_px, None)
        dishes.append({"dish_id": r["dish_id"], "scene": SCENES.get(r["dish_id"], ""),
                       "iou_mask_head": round(iou(head, ann), 4), "iou_predicted_depth": round(iou(cut, ann), 4),
                       "iou_rgb_rule": round(iou(rule, ann), 4), "mask_head_px": int(head.sum()),
                       "annotation_px": int(ann.sum())})
    if not dishes:
        raise ValueError(f"{root}: no dish there has an annotation in {ANNOTATIONS}")
    w = Path(weights).resolve()   # repo-relative where it can be: the JSON is committed
    shown = w.relative_to(io.REPO_ROOT) if w.is_relative_to(io.REPO_ROOT) else w
    return {"model": model.name, "weights": str(shown), "note": NOTE, "dishes": dishes,
            "weights_sha256": io.sha256_file(Path(weights) / WEIGHTS_FILE)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=None, help="Nutrition5k release root (default: data.root)")
    ap.add_argument("--weights", type=Path, default=None, help="weights folder (default: models/<model>/stage2)")
    ap.add_argument("--model", default="depth_anything_v2")
    ap.add_argument("--out", type=Path, default=None, help="default: metrics/eval/<model>_mask_head_real.json")
    args = ap.parse_args()
    p = load_params()
    root = Path(args.root or io.REPO_ROOT / p.data.root).resolve()
    out = real_mask_ious(root, args.weights or model_dir(args.model, "stage2"), p)
    path = args.out or repo_path(EVAL_METRICS_DIR) / f"{out['model']}{REAL_DISHES_SUFFIX}.json"
    io.write_json(path, out)
    print(f"{'dish':17} {'scene':>10} {'head':>6} {'depth':>6} {'rule':>6}")
    for d in out["dishes"]:
        print(f"{d['dish_id']:17} {d['scene']:>10} {d['iou_mask_head']:6.3f} {d['iou_predicted_depth']:6.3f} "
              f"{d['iou_rgb_rule']:6.3f}")
    print(f"wrote {path} ({NOTE})")


if __name__ == "__main__":
    main()
