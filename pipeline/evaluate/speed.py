"""Inference time per image and peak memory of several depth models, measured in one process on the
same images, so the rows of the distillation's table are comparable with each other (not with another
machine's). Time: wall ms of the model's forward pass on one image already resized to its input size
(`pipeline.models.inference.model_input`; the resizing of a photo to and from it is the same cost for
every model and would hide a tiny model's difference), median over the images and rounds after a
warm-up, the models interleaved round by round (a slow phase of a shared machine hits them all). Peak
memory: on a GPU `torch.cuda.max_memory_allocated` above what was allocated before the pass; on the
CPU the process's peak resident set (Linux VmHWM, reset through /proc/self/clear_refs after freed memory
is handed back to the system) above its resident set before the pass: the working memory a pass needs
beyond the loaded weights, which are given apart (`weights_mb`)."""
from __future__ import annotations

import ctypes
import gc
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pipeline.models import DepthModel
from pipeline.models.inference import model_input

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(key: str) -> int | None:
    """A `VmRSS` / `VmHWM` line of /proc/self/status in kB (None off Linux)."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_cpu_peak() -> int | None:
    """Hand freed heap back to the system, reset the peak resident set; the resident set now (kB)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        CLEAR_REFS.write_text("5")
    except OSError:
        return None
    return _status_kb("VmRSS")


def measure_pass(model: DepthModel, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]
                 ) -> tuple[list[float], float | None]:
    """(ms per image, peak memory MB above the start) of one forward pass of `model` over `batches`."""
    cuda = next(model.parameters()).device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _reset_cpu_peak()
    times = []
    with torch.inference_mode():
        for x, K in batches:
            t0 = time.perf_counter()
            model(x, K.clone())
            if cuda:
                torch.cuda.synchronize()
            times.append(1000.0 * (time.perf_counter() - t0))
    if cuda:
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        hwm = _status_kb("VmHWM")
        peak = None if base is None or hwm is None else max(0, hwm - base) / 1024
    return times, peak


def speed_table(models: dict[str, tuple[DepthModel, tuple[int, int]]],
                inputs: Sequence[tuple[np.ndarray, np.ndarray]], warmup: int = 2, rounds: int = 3) -> dict:
    """{name: {size, params_m, weights_mb, infer_ms_median, infer_ms_mean, peak_mem_mb}} for every
    model (its input size beside it), all on the same `inputs` (RGB uint8, K), in this process."""
    if not inputs:
        raise ValueError("speed: no images to time")
    batches = {n: [model_input(m.eval(), rgb, K, size) for rgb, K in inputs] for n, (m, size) in models.items()}
    times: dict[str, list[float]] = {n: [] for n in models}
    peaks: dict[str, list[float]] = {n: [] for n in models}
    for n, (m, _) in models.items():   # warm-up: first-call allocations and kernel choice
        measure_pass(m, batches[n][:warmup])
    for _ in range(rounds):
        for n, (m, _) in models.items():
            t, peak = measure_pass(m, batches[n])
            times[n] += t
            if peak is not None:
                peaks[n].append(peak)
    out = {}
    for n, (m, size) in models.items():
        params = sum(p.numel() for p in m.parameters())
        out[n] = {"size": list(size), "params_m": round(params / 1e6, 4),
                  "weights_mb": round(sum(p.numel() * p.element_size() for p in m.parameters()) / 2**20, 3),
                  "infer_ms_median": round(float(np.median(times[n])), 2),
                  "infer_ms_mean": round(float(np.mean(times[n])), 2),
                  "peak_mem_mb": round(float(max(peaks[n])), 2) if peaks[n] else None}
    return out


def device_note() -> str:
    """Where the table was measured (it is only comparable within one run)."""
    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}"
    return f"CPU, {torch.get_num_threads()} torch thread(s)"
