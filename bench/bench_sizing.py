"""Size the small copy by measurement: a sweep of model width/depth, input size and stage-0
data, scored on the validation split (never the test split).

Each row runs the stages' own entries (`python -m stages.pretrain`, `python -m stages.train
--stage 1/2`) with its params, in a copy of the committed repository that shares the fine-tuning
data the earlier stages wrote (data/raw, data/interim, data/masks, data/dishes, hard-linked), and
reads what the stages wrote (metrics/train/*.json). The stage-0 score is stage 1's `val_start`:
the stage-0 weights on the same validation dishes before any fine-tuning.

    dvc repro labels                                  # the fine-tuning data, once
    python bench/bench_sizing.py --lane today,rooms1k --lane rooms4k_official,rooms4k
    python bench/bench_sizing.py                      # print the table of the rows already run

Lanes run side by side (one core each: trainer.threads is 1), rows of a lane one after the
other; a row with `pretrain_from` reuses that row's stage 0 (same lane, earlier). The row whose
params are params.yaml's (`height2`) is the committed default; its stage 0 (rooms4k_official's,
the same pretrain params) is what `dvc repro pretrain@<m>` writes on this CPU type.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipeline import io

ROOT = io.REPO_ROOT / ".bench_sizing"
MODEL = "depth_anything_v2"
DATA = ("data/raw", "data/interim", "data/masks", "data/dishes")
P = "train.pretrain."
BEFORE = {P + "n_rooms": 0, P + "n_dishes": 320, P + "width": 640, P + "height": 480,
          P + "val_fraction": 0.15, P + "epochs": 12, f"model_cfg.{MODEL}.max_depth": 2}
WIDE = {f"model_cfg.{MODEL}.tiny": {"hidden_size": 96, "num_layers": 6, "num_heads": 3,
                                    "neck_hidden_sizes": [32, 64, 96, 128], "fusion_hidden_size": 64,
                                    "head_hidden_size": 32}}
OFFICIAL = {"train.recipe_stage0.lr_decoder": 5.0e-5,  # DA-V2's official rates (recipe_pretrained)
            "train.recipe_stage0.lr_encoder": 5.0e-6}
NO_HEIGHT = {"loss.w_height": 0.0}  # the rows run before the height term became the default
SHORT = {"train.stage1.epochs": 4, "train.stage2.epochs": 4}  # the costly rows: half the fine-tuning
# every row's evaluate / baselines / compare stages score the validation split: never the test split
VAL_EVAL = {"eval.split": "val"}
EVAL_STAGES = (["stages.evaluate", MODEL], ["stages.baselines"], ["stages.compare"])
ROWS: dict[str, dict] = {
    "today": {"what": "stage 0 as before: 320 table dishes, 12 epochs, max_depth 2",
              "set": {**BEFORE, **OFFICIAL, **NO_HEIGHT}},
    "rooms1k": {"what": "1,000 rooms + 320 table dishes, 10 epochs",
                "set": {P + "n_rooms": 1000, P + "n_dishes": 320, P + "epochs": 10, **OFFICIAL, **NO_HEIGHT}},
    "rooms4k_official": {"what": "4,000 rooms + 640 table dishes, 4 epochs", "set": {**OFFICIAL, **NO_HEIGHT}},
    "rooms4k": {"what": "rooms4k_official's stage 0, fine-tuning LRs x10 (no height term)",
                "set": {"loss.w_height": 0.0}, "pretrain_from": "rooms4k_official"},
    "wide": {"what": "hidden 96, 6 layers (~3x compute); rooms1k's data, 3 epochs; fine-tuning 4 + 4 epochs "
                     "at recipe_stage0",
             "set": {**WIDE, P + "n_rooms": 1000, P + "n_dishes": 320, P + "epochs": 3, **SHORT, **NO_HEIGHT}},
    "input2x": {"what": "input 252x336 (~5x compute); rooms1k's scenes at 640x480, 2 epochs; fine-tuning 4 + 4 epochs",
                "set": {f"model_cfg.{MODEL}.size": [252, 336], P + "n_rooms": 1000, P + "n_dishes": 320,
                        P + "width": 640, P + "height": 480, P + "epochs": 2, **SHORT, **OFFICIAL,
                        **NO_HEIGHT}},
    "wvol1": {"what": "rooms4k with loss.w_volume 1.0 (the volume term 10x)",
              "set": {"loss.w_volume": 1.0, **NO_HEIGHT}, "pretrain_from": "rooms4k_official"},
    "height2": {"what": "rooms4k with loss.w_height 2.0, each food pixel's height above the support plane "
                        "(params.yaml)", "set": {}, "pretrain_from": "rooms4k_official"},
    "height2_enc5x": {"what": "height2 with the encoder's fine-tuning LR x5 (2.5e-4)",
                      "set": {"train.recipe_stage0.lr_encoder": 2.5e-4}, "pretrain_from": "rooms4k_official"},
    "input2x_r4k": {"what": "rooms4k's stage 0 fine-tuned at 252x336 (~3x compute), 4 + 4 epochs",
                    "set": {f"model_cfg.{MODEL}.size": [252, 336], **SHORT, **NO_HEIGHT},
                    "pretrain_from": "rooms4k_official"},
    "height8": {"what": "height2 with loss.w_height 8.0 (the per-pixel height term 4x)",
                "set": {"loss.w_height": 8.0}, "pretrain_from": "rooms4k_official"},
    "input168": {"what": "rooms4k's stage 0 fine-tuned at 168x224 (1.8x the pixels)",
                 "set": {f"model_cfg.{MODEL}.size": [168, 224], **NO_HEIGHT}, "pretrain_from": "rooms4k_official"},
}


def set_key(params: dict, dotted: str, value) -> None:
    node = params
    *path, last = dotted.split(".")
    for k in path:
        node = node.setdefault(k, {})
    node[last] = value


def prepare(row: str) -> Path:
    """A copy of the committed tree (git archive HEAD) with the row's params and the data."""
    work = ROOT / row
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=io.REPO_ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(work)], input=archive, check=True)
    for d in DATA:
        src = io.REPO_ROOT / d
        if not src.exists():
            raise SystemExit(f"error: {d} is missing: run `dvc repro labels` first")
        (work / d).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-al", str(src), str(work / d)], check=True)
    params = yaml.safe_load((work / "params.yaml").read_text())
    for k, v in {**VAL_EVAL, **ROWS[row]["set"]}.items():
        set_key(params, k, v)
    io.write_text(work / "params.yaml", yaml.safe_dump(params, sort_keys=False))
    return work


def run(work: Path, args: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    with open(log, "a") as f:
        r = subprocess.run([sys.executable, "-m", *args], cwd=work, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode:
        raise RuntimeError(f"{work.name}: {' '.join(args)} failed (exit {r.returncode}), see {log}")
    return round(time.perf_counter() - t0, 1)


def finished_pretrain(work: Path) -> float | None:
    """Wall seconds of a stage 0 that already finished in `work` (from its files' times: the
    row's params.yaml is written just before the stage starts, its metrics when it ends), else None."""
    ckpt = work / f"checkpoints/{MODEL}/pretrain/config_hash.txt"
    metrics = work / f"metrics/train/{MODEL}_pretrain.json"
    if not (ckpt.is_file() and metrics.is_file() and ckpt.read_text().strip().endswith("finished")):
        return None
    return round(metrics.stat().st_mtime - (work / "params.yaml").stat().st_mtime, 1)


def run_row(row: str, reuse: bool = False) -> dict:
    """Stage 0 (or a copy of another row's), stage 1, stage 2 of one row; its result.json.
    `reuse`: keep a stage 0 that already finished in the row's folder (a bench run cut short)."""
    done = finished_pretrain(ROOT / row) if reuse and (ROOT / row).is_dir() else None
    work = ROOT / row if done is not None else prepare(row)
    log = work / "bench.log"
    walls = {}
    src = ROWS[row].get("pretrain_from")
    if done is not None:
        walls["pretrain"] = done
    elif src:
        shutil.copytree(ROOT / src / f"models/{MODEL}/pretrain", work / f"models/{MODEL}/pretrain",
                        dirs_exist_ok=True)
        walls["pretrain"] = None
    else:
        walls["pretrain"] = run(work, ["stages.pretrain", "--model", MODEL], log)
    for k in (1, 2):
        walls[f"stage{k}"] = run(work, ["stages.train", "--model", MODEL, "--stage", str(k)], log)
    return finish_row(row, work, walls)


def val_eval(work: Path) -> dict:
    """The evaluation stages' own entries on the validation split (eval.split: val, set in every
    row): the stage-2 and stage-0 models against area x height, paired, per family."""
    params = yaml.safe_load((work / "params.yaml").read_text())
    set_key(params, "eval.split", "val")
    io.write_text(work / "params.yaml", yaml.safe_dump(params, sort_keys=False))
    shutil.rmtree(work / "metrics/eval", ignore_errors=True)  # the archive's test-split rows (mass included)
    for args in EVAL_STAGES:
        run(work, args, work / "bench.log")
    return json.loads((work / "metrics/compare.json").read_text())["models"][MODEL]["given"]


def finish_row(row: str, work: Path, walls: dict) -> dict:
    """Score a row whose stages have run: the validation-split evaluation; ROOT/<row>.json."""
    compare = val_eval(work)
    out = {"row": row, "what": ROWS[row]["what"], "set": ROWS[row]["set"], "wall_s": walls,
           "params": yaml.safe_load((work / "params.yaml").read_text())}
    for name in ("pretrain", "stage1", "stage2"):
        p = work / f"metrics/train/{MODEL}_{name}.json"
        out[name] = json.loads(p.read_text()) if p.is_file() else None
    out["val_compare"] = compare
    io.write_json(ROOT / f"{row}.json", out)
    print(f"{row}: done {walls}", flush=True)
    return out


def ms_per_image(res: dict) -> float | None:
    """Stage 2's wall time per training image stepped (forward, backward, AdamW, data, and its
    share of validation): what the stage costs per image on this CPU."""
    s2 = res.get("stage2")
    if not s2 or not res["wall_s"].get("stage2"):
        return None
    return 1000 * res["wall_s"]["stage2"] / (s2["n_train"] * s2["epochs_run"])


def fmt(ape: float | None, ci: list | None) -> str:
    if ape is None:
        return "–"
    return f"{ape:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{ape:.3f}"


def rig_vs_area_height(res: dict) -> str:
    """The issue's target on the validation split: stage 2 - area x height on the rig families,
    median APE, percentage points with the paired bootstrap interval."""
    c = ((res.get("val_compare") or {}).get("by_family") or {}).get("rig", {}).get("vs_baseline_area_height")
    if not c:
        return "–"
    return (f"{100 * c['median_ape_diff']:+.1f} [{100 * c['median_ape_ci_low']:+.1f}, "
            f"{100 * c['median_ape_ci_high']:+.1f}] (n {c['n_dishes']})")


def rig_height_slope(row: str) -> str:
    """Does the model see the food's height on the rig? Slope and correlation of the predicted
    against the true mean food height (mm above the support plane, given masks) over the rig
    dishes of the validation split: 1 / 1 reads it, 0 predicts one height for every dish."""
    p = ROOT / row / f"metrics/eval/{MODEL}.csv"
    res = json.loads((ROOT / f"{row}.json").read_text())
    if not res.get("val_compare") or not p.is_file():  # not scored on the validation split
        return "–"
    df = pd.read_csv(p)
    df = df[(df["scene"] != "table") & df["height_bias_mm"].notna() & df["food_height_mm"].notna()]
    if len(df) < 3:
        return "–"
    true, pred = df["food_height_mm"].to_numpy(), (df["food_height_mm"] + df["height_bias_mm"]).to_numpy()
    return f"{np.polyfit(true, pred, 1)[0]:.2f} / {np.corrcoef(true, pred)[0, 1]:.2f}"


def table() -> str:
    rows = []
    for name in ROWS:
        p = ROOT / f"{name}.json"
        if p.is_file():
            rows.append(json.loads(p.read_text()))
    lines = ["| row | what | model | input | stage-0 images | ms / image | stage-0 wall s | "
             "val APE stage 0 | val APE stage 1 | val APE stage 2 | stage-1 curve | fine-tune wall s | "
             "val rig: stage 2 - area x height, median APE pp | val rig height slope / corr |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cfg = r["params"]["model_cfg"][MODEL]
        t = cfg["tiny"]
        pc = r["params"]["train"]["pretrain"]
        s1, s2 = r["stage1"], r["stage2"]
        start = s1.get("val_start") or {}
        curve = " ".join(f"{c['val/volume_ape']:.2f}" for c in s1["curve"])
        ms = ms_per_image(r)
        lines.append(
            f"| {r['row']} | {ROWS.get(r['row'], r)['what']} | h{t['hidden_size']} L{t['num_layers']} | "
            f"{cfg['size'][0]}x{cfg['size'][1]} | {pc['n_rooms']} + {pc['n_dishes']} | "
            f"{ms:.0f} | {r['wall_s']['pretrain'] or '(shared)'} | "
            f"{fmt(start.get('val_volume_ape'), start.get('val_volume_ape_ci95'))} | "
            f"{fmt(s1['val_volume_ape'], s1['val_volume_ape_ci95'])} | "
            f"{fmt(s2['val_volume_ape'], s2['val_volume_ape_ci95'])} | {curve} | "
            f"{r['wall_s']['stage1'] + r['wall_s']['stage2']:.0f} | {rig_vs_area_height(r)} | "
            f"{rig_height_slope(r['row'])} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lane", action="append", default=[], help="comma-separated rows run one after the other")
    ap.add_argument("--reuse", action="store_true", help="keep a row's finished stage 0 from an earlier run")
    ap.add_argument("--eval", default="", help="comma-separated rows already run: (re)score them on the "
                    "validation split (evaluate, baselines, compare) and rewrite their results")
    args = ap.parse_args()
    for row in [r for r in args.eval.split(",") if r]:
        res = json.loads((ROOT / f"{row}.json").read_text())
        finish_row(row, ROOT / row, res["wall_s"])
    lanes = [[r for r in lane.split(",") if r] for lane in args.lane]
    unknown = [r for lane in lanes for r in lane if r not in ROWS]
    if unknown:
        raise SystemExit(f"error: --lane: unknown rows {unknown} (known: {list(ROWS)})")
    if lanes:
        with ThreadPoolExecutor(len(lanes)) as pool:
            list(pool.map(lambda lane: [run_row(r, args.reuse) for r in lane], lanes))
    print(table())


if __name__ == "__main__":
    main()
