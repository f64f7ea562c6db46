"""Rehearsal of the real run: the README's `dvc exp run` recipe, as written, at the real sizes, on
this CPU, in a throw-away copy of the project, before anyone pays for GPU hours.

    nice -n 15 python bench/bench_rehearsal.py [--work /tmp/rehearsal] [--n-dishes 12] [--keep]

The recipe's `-S` settings are read from README.md's real-run block, except:
- the hub ids become random configs of the real architectures at the real sizes, saved as local
  checkpoints: Depth-Anything-V2-Small (DINOv2-S/14 + DPT, 24.8 M parameters, metric head,
  max_depth 20 as the Indoor checkpoints) and UniDepth v2 vits14 only if `unidepth` is importable;
- SAM 2.1 hiera-tiny gets random weights saved from its own config as a local `.pt`, paired with
  its own config (`sam2.1_hiera_t.yaml`; the recipe's large `.pt` needs `_l`);
- the data is a Nutrition5k-format tree of ~12 dishes (tests/fixtures/rig_release.py: the fixed
  overhead rig, plates, bowls, several items, steel, rails);
- one epoch per stage (pretrain, stage 1, stage 2; the pretrain stage on 24 synthetic dishes and 8 rooms),
  `trainer.devices=2` (DDP on 2 gloo CPU processes), `trainer.num_workers=1`.
Everything else (518x686, bf16-mixed, batch 4, SAM 2 masks, DDP) is the recipe's.

Prints per stage the wall time, the peak memory (summed RSS of the stage's processes: both DDP
ranks and loader workers; shared pages counted per process, so an upper bound), the per-image
train and inference cost on this CPU, and what the recipe implies for the full release
(~3,490 overhead dishes). Writes <work>/rehearsal.json.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from pipeline.paths import EVAL_TIMING_DIR  # noqa: E402

FULL_RELEASE_OVERHEAD = 3490      # Nutrition5k dishes with overhead RGB-D
RELEASE_TEST_SHARE = 0.2          # the release's depth split (dish_ids/splits/depth_test_ids.txt), about
N_EPOCHS = {"train.stage1.epochs": "1", "train.stage2.epochs": "1", "train.pretrain.epochs": "1",
            "train.pretrain.n_dishes": "24", "train.pretrain.n_rooms": "8"}
DA_SMALL = {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6,
            "out_indices": [3, 6, 9, 12], "neck_hidden_sizes": [48, 96, 192, 384],
            "fusion_hidden_size": 64, "head_hidden_size": 32, "max_depth": 20}


def readme_recipe(readme: Path = REPO / "README.md") -> list[tuple[str, str]]:
    """The (key, value) pairs of the README's real-run `dvc exp run` block, in order."""
    text = readme.read_text()
    m = re.search(r"```bash\n(pip install[^`]*?dvc exp run[^`]*?)```", text)
    if not m:
        raise ValueError(f"{readme}: no ```bash block with the real-run `dvc exp run` recipe")
    cmd = m.group(1)[m.group(1).index("dvc exp run"):].replace("\\\n", " ")
    toks = shlex.split(cmd.strip().splitlines()[0])
    pairs = [tuple(toks[i + 1].split("=", 1)) for i, t in enumerate(toks) if t == "-S"]
    return [(k, v) for k, v in pairs]


def unidepth_available() -> bool:
    import importlib.util
    return importlib.util.find_spec("unidepth") is not None


def make_da_small(out: Path) -> int:
    """A random Depth-Anything-V2-Small (real dims, metric head) saved in transformers format,
    its decoder re-initialised as `pipeline` does for a fresh head (a plausible ~0.4 m output
    instead of transformers' saturated sigmoid). Returns the parameter count."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    from pipeline.models.depth_anything import DepthAnythingV2
    s = DA_SMALL
    n = s["num_hidden_layers"]
    bb = Dinov2Config(image_size=518, patch_size=14, hidden_size=s["hidden_size"], num_hidden_layers=n,
                      num_attention_heads=s["num_attention_heads"], out_indices=s["out_indices"],
                      out_features=[f"stage{i}" for i in s["out_indices"]], reshape_hidden_states=False)
    cfg = DepthAnythingConfig(backbone_config=bb, reassemble_hidden_size=s["hidden_size"],
                              neck_hidden_sizes=s["neck_hidden_sizes"], fusion_hidden_size=s["fusion_hidden_size"],
                              head_hidden_size=s["head_hidden_size"], depth_estimation_type="metric",
                              max_depth=s["max_depth"])
    torch.manual_seed(0)
    model = DepthAnythingV2(DepthAnythingForDepthEstimation(cfg))
    model.reset_decoder(0.4, seed=0)
    model.net.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def make_sam2_tiny(out: Path, config: str = "configs/sam2.1/sam2.1_hiera_t.yaml") -> int:
    """SAM 2.1 hiera-tiny with random weights, saved from its own config as sam2's loader reads
    a released .pt ({"model": state_dict})."""
    import torch

    from pipeline.masks.sam2 import load_sam2_predictor
    pred = load_sam2_predictor(None, config, seed=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": pred.model.state_dict()}, out)
    return sum(p.numel() for p in pred.model.parameters())


def make_project(root: Path) -> None:
    """pipeline/, stages/, dvc.yaml, params.yaml in a fresh git + DVC repository with one commit."""
    root.mkdir(parents=True)
    for d in ("pipeline", "stages"):
        shutil.copytree(REPO / d, root / d, ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("dvc.yaml", "params.yaml", ".gitignore"):
        if (REPO / f).is_file():
            shutil.copy(REPO / f, root / f)
    run = {"cwd": root, "check": True, "capture_output": True}
    subprocess.run(["git", "init", "-q"], **run)
    subprocess.run(["dvc", "init", "-q"], **run)
    subprocess.run(["dvc", "config", "core.analytics", "false"], **run)
    subprocess.run(["git", "add", "-A"], **run)
    subprocess.run(["git", "-c", "user.name=rehearsal", "-c", "user.email=r@localhost", "commit", "-qm", "init"], **run)


class Monitor(threading.Thread):
    """Polls the process tree under `pid`: per stage command (python -m stages.X ...), first and
    last time seen, the peak of the summed RSS of its processes (ranks, workers) and their CPU
    seconds (user + system, last reading per process: robust to other jobs on the machine,
    unlike the wall time)."""

    def __init__(self, pid: int, every_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s, self.stop = pid, every_s, threading.Event()
        self.stages: dict[str, dict] = {}
        self.cpu: dict[int, tuple[str, float]] = {}   # pid -> (stage, user + system seconds)

    @staticmethod
    def _key(cmd: list[str]) -> str | None:
        if "-m" in cmd:
            i = cmd.index("-m")
            if i + 1 < len(cmd) and cmd[i + 1].startswith("stages."):
                return " ".join(cmd[i + 1:])
        return None

    def run(self) -> None:
        import psutil
        try:
            top = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self.stop.is_set():
            now, rss = time.time(), {}
            try:
                procs = top.children(recursive=True)
            except psutil.Error:
                break
            owner: dict[int, str] = {}
            for p in procs:
                try:
                    key = self._key(p.cmdline())
                    if key is None:   # a loader worker or DDP rank: the stage of its nearest stage parent
                        for a in p.parents():
                            if a.pid in owner:
                                key = owner[a.pid]
                                break
                    if key is None:
                        continue
                    owner[p.pid] = key
                    rss[key] = rss.get(key, 0) + p.memory_info().rss
                    t = p.cpu_times()
                    self.cpu[p.pid] = (key, t.user + t.system)
                except psutil.Error:
                    continue
            for key, b in rss.items():
                s = self.stages.setdefault(key, {"start": now, "end": now, "peak_rss_gb": 0.0})
                s["end"] = now
                s["peak_rss_gb"] = max(s["peak_rss_gb"], b / 2**30)
            for key, s in self.stages.items():
                s["cpu_s"] = sum(c for k, c in self.cpu.values() if k == key)
            self.stop.wait(self.every_s)


def run_recipe(root: Path, sets: list[tuple[str, str]], log: Path) -> tuple[int, dict, float]:
    """`dvc exp run` with the settings; (exit code, per-stage monitor records, wall seconds)."""
    args = ["dvc", "exp", "run", "-n", "rehearsal"]
    for k, v in sets:
        args += ["-S", f"{k}={v}"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}   # stages import the copy's code
    env.update({"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "SAM2_BUILD_CUDA": "0"})
    t0 = time.time()
    with open(log, "w") as f:
        f.write("$ " + shlex.join(args) + "\n")
        f.flush()
        proc = subprocess.Popen(args, cwd=root, env=env, stdout=f, stderr=subprocess.STDOUT)
        mon = Monitor(proc.pid)
        mon.start()
        rc = proc.wait()
        mon.stop.set()
        mon.join()
    return rc, mon.stages, time.time() - t0


def stage_names(log_text: str) -> dict[str, str]:
    """command (after `python -m `) -> DVC stage name, from dvc's 'Running stage' lines."""
    out = {}
    for m in re.finditer(r"Running stage '([^']+)':\s*\n> python -m (.+)", log_text):
        out[m.group(2).strip()] = m.group(1)
    return out


def per_image_costs(root: Path) -> dict[str, dict]:
    """Per stage: train seconds per training image (metrics/train, the stage's own timer over its
    epochs incl. validation) and mean inference seconds per test image (the evaluation's timing logs, logs/eval)."""
    out: dict[str, dict] = {}
    for p in sorted((root / "metrics/train").glob("*.json")):
        m = json.loads(p.read_text())
        out[p.stem] = {"n_train": m.get("n_train"), "n_val": m.get("n_val"), "epochs": m.get("epochs_run"),
                       "world_size": m.get("world_size")}
    for p in sorted((root / EVAL_TIMING_DIR).glob("*_infer_s.csv")):
        df = pd.read_csv(p)
        if len(df):
            out[f"eval:{p.stem.removesuffix('_infer_s')}"] = {"n_test": len(df),
                                                             "infer_s_per_image": round(float(df["infer_s"].mean()), 2)}
    return out


def train_seconds(log_text: str) -> dict[str, float]:
    """'<model> stage k: ... in S s' / '<model> pretrain: ... in S s' lines of the stages."""
    out = {}
    for m in re.finditer(r"^(\S+) (stage \d|pretrain): .* in ([\d.]+) s;", log_text, re.M):
        out[f"{m.group(1)}_{m.group(2).replace(' ', '')}"] = float(m.group(3))
    return out


def implied_full_release(sets: dict[str, str], devices_recipe: int) -> list[str]:
    """Image and epoch counts the recipe implies for the full release."""
    val = 0.15
    n_test = round(FULL_RELEASE_OVERHEAD * RELEASE_TEST_SHARE)
    n_trainval = FULL_RELEASE_OVERHEAD - n_test
    n_val = round(val * n_trainval)
    n_train = n_trainval - n_val
    bs = int(sets.get("train.batch_size", 4))
    e1, e2 = int(sets.get("train.stage1.epochs", 8)), int(sets.get("train.stage2.epochs", 8))
    steps = math.ceil(n_train / (bs * devices_recipe))
    return [f"full release: {FULL_RELEASE_OVERHEAD} overhead dishes -> ~{n_train} train / {n_val} val / "
            f"{n_test} test (release test share ~{RELEASE_TEST_SHARE:.0%}, split.val_fraction {val})",
            f"per epoch: {n_train} train + {n_val} val images; {steps} optimizer steps at batch "
            f"{bs} x {devices_recipe} GPUs",
            f"stage 1: {e1} epochs = {e1 * n_train} train images; stage 2: {e2} epochs = {e2 * n_train}; "
            f"evaluation: {n_test} test images x 2 checkpoints (stage 2, stage 0) per model",
            "pretrain@: trains nothing (model_cfg.<m>.pretrained is a real checkpoint: it is stage 0)"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None, help="throw-away folder (default: a new temp dir)")
    ap.add_argument("--n-dishes", type=int, default=16)
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="rehearsal-"))
    if work.exists() and any(work.iterdir()):
        raise SystemExit(f"error: --work {work} is not empty")
    root, ckpt, release = work / "project", work / "checkpoints", work / "nutrition5k"
    t0 = time.time()
    from tests.fixtures.rig_release import write_release
    truth = write_release(release, args.n_dishes, seed=0, pose="fixed", test_share=0.25)
    n_da = make_da_small(ckpt / "da-v2-small-random")
    n_sam = make_sam2_tiny(ckpt / "sam2.1_hiera_tiny_random.pt")
    make_project(root)
    prep_s = time.time() - t0
    print(f"prepared in {prep_s:.0f} s: {len(truth)} dishes ({(truth['split'] == 'test').sum()} test), "
          f"DA-V2-Small random {n_da / 1e6:.2f} M params, SAM 2.1 hiera-tiny random {n_sam / 1e6:.1f} M params")

    recipe = readme_recipe()
    uni = unidepth_available()
    subst = {"data.root": str(release),
             "model_cfg.depth_anything_v2.pretrained": str(ckpt / "da-v2-small-random"),
             "masks.sam2_checkpoint": str(ckpt / "sam2.1_hiera_tiny_random.pt"),
             "masks.sam2_config": "configs/sam2.1/sam2.1_hiera_t.yaml",
             "trainer.devices": "2", "trainer.num_workers": "1"}
    if not uni:
        subst["models"] = "[depth_anything_v2]"
    sets, changed = [], []
    for k, v in recipe:
        if k.startswith("model_cfg.unidepth_v2.pretrained"):
            v2 = "null" if uni else None   # random vits14 config (unidepth's own classes)
        else:
            v2 = subst.get(k, N_EPOCHS.get(k, v))
        if v2 is None:
            changed.append(f"{k}={v} -> dropped (unidepth not importable)")
            continue
        if v2 != v:
            changed.append(f"{k}={v} -> {v2}")
        sets.append((k, v2))
    for k, v in N_EPOCHS.items():
        if k not in dict(sets):
            sets.append((k, v))
            changed.append(f"{k}={v} (added)")
    print("recipe substitutions:\n  " + "\n  ".join(changed))
    if not uni:
        print("UniDepth v2: the `unidepth` package is not importable here: its row is left out")

    log = work / "dvc_exp_run.log"
    rc, mon, wall = run_recipe(root, sets, log)
    text = log.read_text()
    names = stage_names(text)
    secs = train_seconds(text)
    costs = per_image_costs(root)
    rows = []
    for cmd, s in sorted(mon.items(), key=lambda kv: kv[1]["start"]):
        rows.append({"stage": names.get(cmd, cmd), "wall_s": round(s["end"] - s["start"], 1),
                     "cpu_s": round(s.get("cpu_s", 0.0), 1), "peak_rss_gb": round(s["peak_rss_gb"], 2)})
    for r in rows:
        m = re.match(r"(train_stage(\d)|pretrain)@(.+)", r["stage"])
        if m:
            key = f"{m.group(3)}_{'stage' + m.group(2) if m.group(2) else 'pretrain'}"
            c, t = costs.get(key, {}), secs.get(key)
            if c and c.get("n_train"):
                n_img = max(1, c["epochs"]) * c["n_train"]
                r["train_cpu_s_per_image"] = round(r["cpu_s"] / n_img, 2)   # whole stage: startup, val included
                if t:
                    r["train_wall_s_per_image"] = round(t / n_img, 2)      # the stage's own fit timer
                r["images"] = (f"{c['n_train']} train + {c['n_val']} val x {c['epochs']} epoch(s), "
                               f"world {c['world_size']}")
        if r["stage"] in ("ingest", "masks", "labels"):   # per release dish (masks: SAM 2 twice per dish)
            r["cpu_s_per_dish"] = round(r["cpu_s"] / max(1, args.n_dishes), 2)
        m = re.match(r"evaluate@(.+)", r["stage"])
        if m:
            ev = [v for k, v in costs.items() if k.startswith(f"eval:{m.group(1)}")]
            if ev:
                r["infer_s_per_image"] = round(sum(v["infer_s_per_image"] for v in ev) / len(ev), 2)
                r["images"] = f"{ev[0]['n_test']} test x {len(ev)} rows"
    df = pd.DataFrame(rows)
    print(f"\n`dvc exp run` exit code {rc}, {wall:.0f} s wall (+{prep_s:.0f} s preparation); log {log}")
    print(df.to_markdown(index=False) if hasattr(df, "to_markdown") else df.to_string(index=False))
    devices = int(dict(recipe).get("trainer.devices", 8))
    print("\n" + "\n".join(implied_full_release(dict(sets) | {"train.stage1.epochs": dict(recipe).get(
        "train.stage1.epochs", "8"), "train.stage2.epochs": dict(recipe).get("train.stage2.epochs", "8")}, devices)))
    if rc != 0:
        tail = "\n".join(text.splitlines()[-25:])
        print(f"\nFAILED; last lines of the log:\n{tail}")
    (work / "rehearsal.json").write_text(json.dumps({"rc": rc, "wall_s": wall, "prep_s": prep_s, "rows": rows,
                                                     "substitutions": changed, "costs": costs}, indent=1))
    if not args.keep and rc == 0:
        shutil.rmtree(root, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
