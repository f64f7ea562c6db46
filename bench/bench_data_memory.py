"""Peak memory and throughput of the training data loader for 100 and 1,000 dishes.

    python bench/bench_data_memory.py [--dishes 100 1000] [--size 518 686] [--workers 2]

Dishes are synthetic (686x518 px, so a 518x686 input keeps their aspect), written once to a
temporary folder. Each data-set size runs in a fresh process that builds the training
DishDataModule (augmentations on), iterates one epoch and reports the peak resident memory
of itself plus its DataLoader workers (sampled every 20 ms; shared pages count once per
process, so this is an upper bound). Target: peak(1,000) / peak(100) <= 1.3.
It also times one training step of the params model at that size on this machine and says
whether the loader keeps up; on a GPU, bench/gpu_check.py measures the real data wait.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


class PeakRSS:
    """Polls the summed RSS of this process and its children in a thread."""

    def __init__(self, interval_s: float = 0.02) -> None:
        import psutil
        self.proc, self.interval, self.peak = psutil.Process(), interval_s, 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        total = 0
        for p in [self.proc] + self.proc.children(recursive=True):
            try:
                total += p.memory_info().rss
            except Exception:  # a worker that just exited
                pass
        self.peak = max(self.peak, total)
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.sample()


def child(args: argparse.Namespace) -> None:
    """One measurement: setup + one epoch over `args.n` dishes; prints a JSON line."""
    import torch
    from tqdm import tqdm

    from pipeline.config import load_params
    from pipeline.train.datamodule import DishDataModule, train_augment
    torch.set_num_threads(1)
    params = load_params()
    size = (args.size[0], args.size[1])
    with PeakRSS() as mem:
        base = mem.sample()
        t0 = time.time()
        dm = DishDataModule(args.index, size, args.batch_size, train_augment(params, "depth_anything_v2"),
                            seed=0, num_workers=args.workers, max_dishes=args.n,
                            work_scale=params.train.work_scale,
                            allowed_roots=[Path(args.index).parent])
        dm.setup("fit")
        t_setup = time.time() - t0
        n, t1 = 0, time.time()
        for batch in tqdm(dm.train_dataloader(), desc=f"{args.n} dishes", leave=False):
            n += len(batch["image"])
        t_epoch = time.time() - t1
    print(json.dumps({"n": args.n, "peak_rss_mb": mem.peak / 2**20, "base_rss_mb": base / 2**20,
                      "setup_s": t_setup, "samples": n, "samples_per_s": n / t_epoch}))


def step_time(size: tuple[int, int], batch_size: int) -> float:
    """Seconds of one training step (forward + backward + AdamW) of the params model here."""
    import torch

    from pipeline.config import load_params
    from pipeline.models import build_model, config_for
    torch.set_num_threads(1)
    cfg = config_for(load_params(), "depth_anything_v2")
    model = build_model("depth_anything_v2", cfg, seed=0).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.rand(batch_size, 3, *size)
    K = torch.eye(3).repeat(batch_size, 1, 1)
    times = []
    for _ in range(3):
        t = time.time()
        loss = model(x, K)["depth"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.time() - t)
    return min(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dishes", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--size", type=int, nargs=2, default=[518, 686], metavar=("H", "W"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--index", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: tests.fixtures
    from tests.fixtures.quick_dishes import write_dishes
    h, w = args.size
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        index = write_dishes(Path(tmp), max(args.dishes), width=w, height=h)
        rows = []
        for n in args.dishes:
            cmd = [sys.executable, __file__, "--child", "--index", str(index), "--n", str(n),
                   "--size", str(h), str(w), "--workers", str(args.workers),
                   "--batch-size", str(args.batch_size)]
            r = subprocess.run(cmd, capture_output=True, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
            if r.returncode:
                sys.exit(f"measurement for {n} dishes failed:\n{r.stderr[-3000:]}")
            rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    step = step_time((h, w), args.batch_size)
    print(f"\ninput {h}x{w}, batch {args.batch_size}, {args.workers} DataLoader workers, "
          f"augmentations on, one epoch each")
    print(f"{'dishes':>7} {'peak RSS MB':>12} {'(start MB)':>11} {'setup s':>8} {'samples/s':>10}")
    for r in rows:
        print(f"{r['n']:>7} {r['peak_rss_mb']:>12.0f} {r['base_rss_mb']:>11.0f} "
              f"{r['setup_s']:>8.2f} {r['samples_per_s']:>10.1f}")
    ratio = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    print(f"peak RSS ratio {rows[-1]['n']}/{rows[0]['n']} dishes: {ratio:.2f} (target <= 1.3)")
    need = args.batch_size / step
    have = min(r["samples_per_s"] for r in rows)
    print(f"training step of the params model here: {step:.2f} s per batch of {args.batch_size} "
          f"= {need:.1f} samples/s needed; loader gives {have:.1f} -> "
          f"{'keeps up' if have >= need else 'does NOT keep up'}")
    print(f"per worker {have / max(args.workers, 1):.1f} samples/s: a GPU step of T s per batch of B "
          f"needs about B / (T x {have / max(args.workers, 1):.1f}) workers")


if __name__ == "__main__":
    main()
