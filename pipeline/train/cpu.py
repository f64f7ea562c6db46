"""CPU numerics pinned before torch loads (trainer.portable_cpu); no torch import here.

The kernels' instruction set and MKL's code path are fixed (AVX2) and `run_stage` turns oneDNN
off and uses `trainer.threads`: the same CPU type then gives identical weights. Another x86-64
CPU type still differs in the last bits somewhere (measured: a fresh clone on another machine
moved given-mask MAPE by ~4 pp), and training turns last bits into a different run within noise:
the same report within noise and the same verdicts, not the same hashes."""
from __future__ import annotations

import os

from pipeline.config import Params

PORTABLE_CPU_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}


def pin_cpu_numerics(params: Params) -> None:
    if params.trainer.portable_cpu:
        for k, v in PORTABLE_CPU_ENV.items():
            os.environ.setdefault(k, v)
