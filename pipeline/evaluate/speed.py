"""Inference time per image and peak memory of several depth models, measured in one process on the
same images, so the rows of the distillation's table are comparable with each other (not with another
machine's). Time: ms of the model's forward pass on one image already resized to its input size
(`pipeline.models.inference.model_input`; the resizing of a photo to and from it costs every model the
same and would hide a tiny model's difference), median over the images and rounds after a warm-up, the
models interleaved round by round. On a GPU wall time (synchronised); on the CPU the CPU time of the one
thread that runs it (torch set to one thread while timing), which other processes on a shared machine do
not inflate. Peak memory: on a GPU `torch.cuda.max_memory_allocated` above what was allocated before the
pass; on the CPU the peak of the bytes torch allocates during one pass (torch.profiler's allocation
events in time order): the working memory a pass needs beyond the loaded weights (`weights_mb`)."""
from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from pipeline.models import DepthModel
from pipeline.models.inference import model_input


def cpu_peak_mb(model: DepthModel, x: torch.Tensor, K: torch.Tensor) -> float:
    """Peak MB torch allocates during one forward pass on the CPU (allocations minus frees, in order)."""
    from torch.profiler import ProfilerActivity, profile
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        model(x, K.clone())
    cur = peak = 0
    for e in sorted(prof.events(), key=lambda e: e.time_range.start):
        cur += e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
        peak = max(peak, cur)
    return peak / 2**20


def measure_pass(model: DepthModel, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]
                 ) -> tuple[list[float], float]:
    """(ms per image, peak memory MB of a pass above the start) of `model` over `batches`."""
    cuda = next(model.parameters()).device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    clock = time.perf_counter if cuda else time.thread_time
    times = []
    with torch.inference_mode():
        for x, K in batches:
            t0 = clock()
            model(x, K.clone())
            if cuda:
                torch.cuda.synchronize()
            times.append(1000.0 * (clock() - t0))
    peak = ((torch.cuda.max_memory_allocated() - base) / 2**20 if cuda
            else cpu_peak_mb(model, *batches[0]))
    return times, peak


def speed_table(models: dict[str, tuple[DepthModel, tuple[int, int]]],
                inputs: Sequence[tuple[np.ndarray, np.ndarray]], warmup: int = 2, rounds: int = 3) -> dict:
    """{name: {size, params_m, weights_mb, infer_ms_median, infer_ms_mean, peak_mem_mb}} for every
    model (its input size beside it), all on the same `inputs` (RGB uint8, K), in this process."""
    if not inputs:
        raise ValueError("speed: no images to time")
    batches = {n: [model_input(m.eval(), rgb, K, size) for rgb, K in inputs] for n, (m, size) in models.items()}
    times: dict[str, list[float]] = {n: [] for n in models}
    peaks: dict[str, float] = {}
    threads = torch.get_num_threads()
    cpu = not any(next(m.parameters()).device.type == "cuda" for m, _ in models.values())
    if cpu:
        torch.set_num_threads(1)   # one thread's CPU time is what `thread_time` measures
    try:
        for n, (m, _) in models.items():   # warm-up: first-call allocations and kernel choice
            measure_pass(m, batches[n][:warmup])
        for _ in range(rounds):
            for n, (m, _) in models.items():
                t, peak = measure_pass(m, batches[n])
                times[n] += t
                peaks[n] = max(peak, peaks.get(n, 0.0))
    finally:
        torch.set_num_threads(threads)
    out = {}
    for n, (m, size) in models.items():
        params = sum(p.numel() for p in m.parameters())
        out[n] = {"size": list(size), "params_m": round(params / 1e6, 4),
                  "weights_mb": round(sum(p.numel() * p.element_size() for p in m.parameters()) / 2**20, 3),
                  "infer_ms_median": round(float(np.median(times[n])), 2),
                  "infer_ms_mean": round(float(np.mean(times[n])), 2),
                  "peak_mem_mb": round(float(peaks[n]), 3)}
    return out


def device_note() -> str:
    """Where and how the table was measured (it is only comparable within one run)."""
    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}, wall time"
    return "CPU, one torch thread, that thread's CPU time"
