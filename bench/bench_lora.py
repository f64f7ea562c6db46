"""Stage-2 encoder modes `full` vs `lora` vs `frozen` on the Small architectures at 518 px: trainable
parameters, peak memory and time of one training step (forward, depth L1 loss, backward, AdamW).

    python bench/bench_lora.py [--models depth_anything_v2 unidepth_v2] [--size 518 686] [--steps 3]

Real Small sizes, random init (nothing downloaded): Depth-Anything-V2-Small (DINOv2 ViT-S/14, DPT
neck 48-96-192-384, fusion 64) and UniDepth v2 vits14 (its upstream decoder: hidden 256, depths
2-2-2). LoRA as `train.stage2.lora` sets it (rank 8, alpha 16, the model's attention projections).
Each (model, mode) runs in its own process, so the peak is that run's alone: on CPU the process's
peak resident memory (and its rise over the built model), on a GPU torch's peak allocation.
The decoder trains in every mode, as in stage 2.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODES = ("full", "lora", "frozen")
UNIDEPTH_SMALL = {"hidden_dim": 256, "depths": [2, 2, 2], "out_dim": 32, "num_heads": 8, "expansion": 4}


def small_model(name: str):
    """The Small architecture of `name`, randomly initialised with the real classes."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    from pipeline.models import build_model
    torch.manual_seed(0)
    if name == "depth_anything_v2":
        from pipeline.models.depth_anything import DepthAnythingV2
        vit = Dinov2Config(image_size=518, patch_size=14, hidden_size=384, num_hidden_layers=12,
                           num_attention_heads=6, intermediate_size=1536, out_indices=[3, 6, 9, 12],
                           reshape_hidden_states=False)
        cfg = DepthAnythingConfig(backbone_config=vit, reassemble_hidden_size=384,
                                  neck_hidden_sizes=[48, 96, 192, 384], fusion_hidden_size=64,
                                  head_hidden_size=32, depth_estimation_type="metric", max_depth=20)
        model = DepthAnythingV2(DepthAnythingForDepthEstimation(cfg))
        model.reset_decoder(0.5)
        return model
    if name == "unidepth_v2":
        return build_model(name, {"pretrained": None, "backbone": "vits14", "tiny": UNIDEPTH_SMALL})
    raise ValueError(f"--models: no Small architecture for {name!r} here")


def rss_mib() -> float:
    """Current resident memory of this process (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(name: str, mode: str, size: tuple[int, int], steps: int, device: str) -> dict:
    """One (model, mode) run: build, set the encoder mode, time `steps` steps after one warm-up."""
    import torch

    from pipeline.config import LoraConfig
    from pipeline.models.lora import set_encoder_mode
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = small_model(name).to(device)
    set_encoder_mode(model, mode, LoraConfig())
    model.train()
    total = sum(p.numel() for p in model.parameters())
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-5)
    h, w = size
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, h, w, generator=g).to(device)
    K = torch.tensor([[0.9 * w, 0, (w - 1) / 2], [0, 0.9 * w, (h - 1) / 2], [0, 0, 1.0]])[None].to(device)
    target = (0.3 + 0.2 * torch.rand(1, h, w, generator=g)).to(device)
    built = rss_mib()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            depth = model(x, K.clone())["depth"]
        loss = (depth.float() - target).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i:  # the first step allocates the optimiser state and warms the kernels
            times.append(time.perf_counter() - t0)
    out = {"model": name, "mode": mode, "params_total": total,
           "trainable": sum(p.numel() for p in trainable),
           "trainable_encoder": sum(p.numel() for p in model.encoder_module().parameters() if p.requires_grad),
           "step_s": statistics.median(times), "device": device}
    if device == "cuda":
        out["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        out["rise_mib"] = float("nan")
    else:
        out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out["rise_mib"] = out["peak_mib"] - built
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["depth_anything_v2", "unidepth_v2"])
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--size", nargs=2, type=int, default=[518, 686], metavar=("H", "W"))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="auto", help="auto: cuda when available, else cpu")
    ap.add_argument("--child", nargs=2, metavar=("MODEL", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    import torch
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.child:
        print(json.dumps(child(*args.child, tuple(args.size), args.steps, device)))
        return
    where = torch.cuda.get_device_name() if device == "cuda" else \
        f"CPU only ({torch.get_num_threads()} threads; no GPU in this session)"
    print(f"device: {where}; input {args.size[0]}x{args.size[1]}, batch 1, median of {args.steps} steps "
          f"after 1 warm-up; peak = {'torch max allocated' if device == 'cuda' else 'process max RSS'}\n")
    rows = []
    for name in args.models:
        for mode in args.modes:
            cmd = [sys.executable, __file__, "--child", name, mode, "--size", *map(str, args.size),
                   "--steps", str(args.steps), "--device", device]
            r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
            if r.returncode != 0:
                print(f"{name} {mode}: failed\n{r.stderr[-1500:]}")
                continue
            rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    print("| model | encoder | params | trainable | trainable in encoder | weights+grads+AdamW MiB "
          "| peak MiB | rise over model MiB | step s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        state = (r["params_total"] + 3 * r["trainable"]) * 4 / 2**20   # float32: weights, grads, 2 moments
        print(f"| {r['model']} | {r['mode']} | {r['params_total'] / 1e6:.2f} M | {r['trainable'] / 1e6:.3f} M "
              f"({100 * r['trainable'] / r['params_total']:.1f} %) | {r['trainable_encoder'] / 1e6:.3f} M | "
              f"{state:.0f} | {r['peak_mib']:.0f} | {r['rise_mib']:.0f} | {r['step_s']:.2f} |")


if __name__ == "__main__":
    main()
