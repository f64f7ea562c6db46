"""Per-dish work over a process pool, in order, with a progress bar.

Stages run one function per dish; `spawn` keeps workers free of the parent's threads and
torch state, and the results come back in job order so outputs are deterministic."""
from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Sequence
from typing import TypeVar

from tqdm import tqdm

J = TypeVar("J")
R = TypeVar("R")


def map_dishes(fn: Callable[[J], R], jobs: Sequence[J], workers: int, desc: str,
               chunksize: int = 4) -> list[R]:
    """[fn(j) for j in jobs], on `workers` processes when > 1, showing progress."""
    bar = dict(total=len(jobs), desc=desc, unit="dish")
    if workers > 1 and len(jobs) > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            return list(tqdm(pool.imap(fn, jobs, chunksize=chunksize), **bar))
    return [fn(j) for j in tqdm(jobs, **bar)]
