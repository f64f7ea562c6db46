"""Two-process DDP on the CPU (gloo): a real tiny stage-1 run of stages/train.py.

One launch has a batch without any valid depth on one rank only, and a NaN loss injected on
rank 1 in epoch 1: both ranks must stop with the same error (no hang). The re-run resumes
from the epoch-0 checkpoint under DDP, and every file is written once, by rank 0.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_training import make_index, small_params

REPO = Path(__file__).resolve().parent.parent

# Runs stages/train.py; with DDP_NAN_EPOCH set, rank 1's first training batch of that epoch
# gets a NaN loss. Lightning's launcher re-runs this same script for rank 1.
WRAPPER = '''
import os
from pipeline.train.module import DepthLitModule
orig = DepthLitModule._stats
def stats(self, out, batch, **kw):
    loss, vec, skipped = orig(self, out, batch, **kw)
    bad = os.environ.get("DDP_NAN_EPOCH")
    if (bad is not None and self.trainer.training and self.global_rank == 1
            and self.current_epoch == int(bad) and not skipped):
        loss, vec = loss * float("nan"), vec * float("nan")
    return loss, vec, skipped
DepthLitModule._stats = stats
from stages import train  # run as the main script would be (sys.argv stays ours for rank 1)
train.main()
'''


def ddp_project(root: Path) -> Path:
    """pipeline/ + stages/ + tiny params (2 CPU processes, ddp) + 5 train / 3 val dishes."""
    for d in ("pipeline", "stages"):
        shutil.copytree(REPO / d, root / d, ignore=shutil.ignore_patterns("__pycache__"))
    p = small_params(epochs1=3)
    p["train"].update({"batch_size": 1})
    p["trainer"].update({"accelerator": "cpu", "devices": 2, "strategy": "ddp", "threads": 1})
    (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    make_index(root / "data" / "dishes", n_train=5, n_val=3, rel_root=root, no_depth=(2,))
    (root / "ddp_run.py").write_text(WRAPPER)
    return root


def train(root: Path, **env: str) -> subprocess.CompletedProcess:
    e = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **env}
    e.pop("DDP_NAN_EPOCH", None)
    e.update(env)
    return subprocess.run([sys.executable, "ddp_run.py", "--model", "depth_anything_v2", "--stage", "1"],
                          cwd=root, env=e, capture_output=True, text=True, timeout=400)


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path: Path):
    root = ddp_project(tmp_path / "proj")
    ck, live = root / "checkpoints/depth_anything_v2/stage1", root / "dvclive/depth_anything_v2/stage1"
    metrics = root / "metrics/train/depth_anything_v2_stage1.json"

    r = train(root, DDP_NAN_EPOCH="1")
    log = r.stdout + r.stderr
    assert r.returncode != 0, log[-3000:]
    # the same clear error on both ranks, raised together (a lone rank would leave the other hanging)
    assert log.count("non-finite training loss on rank(s) [1] at epoch 1") >= 2, log[-3000:]
    assert (ck / "last.ckpt").is_file() and not metrics.exists()

    r = train(root)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    m = json.loads(metrics.read_text())
    assert m["world_size"] == 2 and m["resumed"] is True
    assert [row["epoch"] for row in m["curve"]] == [1, 2]  # epoch 0 came from the checkpoint
    # the dish without depth reached one rank per epoch: skipped there, a zero step on both
    assert m["skipped_batches"] == 2
    # validation gathered from both ranks, DistributedSampler's padded repeat counted once
    assert m["val_reference_vs_fullres_label"]["n_dishes"] == 3
    assert all(k in m["curve"][-1] for k in ("val/volume_ape", "train/depth", "val/depth", "train/volume"))
    # DVCLive written by rank 0 only and continued across the resume
    steps = (live / "plots/metrics/val/volume_ape.tsv").read_text().split()[2::2]
    assert steps == ["0", "1", "2"]
    assert (root / "models/depth_anything_v2/stage1/model.safetensors").is_file()
    assert (ck / "config_hash.txt").read_text().strip().endswith("finished")
