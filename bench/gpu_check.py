"""GPU readiness check: train and run the Small-size Depth-Anything V2 architecture (random
init, nothing downloaded) at 518x686 in bf16 on synthetic dishes, through the project's
own data loader, augmentations and losses.

    python bench/gpu_check.py            # one GPU, about 2-4 min (a time budget caps it)
    python bench/gpu_check.py --smoke    # CPU, tiny sizes, a few steps (what the test runs)

Prints train img/s, inference img/s, peak GPU memory and the fraction of the training step
time spent waiting for the DataLoader; UniDepth V2 (vits14 encoder, the params' decoder
sizes) too when the `unidepth` package is importable. `depth` is the dtype of the predicted
depth under autocast (float32 expected: it feeds the geometry).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from pipeline.config import Params, load_params
from pipeline.models import DepthModel, build_model, config_for
from pipeline.train.datamodule import DishDataModule, train_augment
from pipeline.train.fit import geometry_params
from pipeline.train.losses import check_weights, total_loss


def small_config(max_depth: int):
    """Depth-Anything-V2-Small's architecture (transformers' depth-anything/Depth-Anything-V2-
    Small-hf): DINOv2-S/14 (hidden 384, 12 layers, 6 heads, MLP 1536, features of layers 3, 6,
    9, 12), DPT neck [48, 96, 192, 384], fusion 64, head 32; here with the metric head."""
    from transformers import DepthAnythingConfig, Dinov2Config
    backbone = Dinov2Config(image_size=518, patch_size=14, hidden_size=384, num_hidden_layers=12,
                            num_attention_heads=6, mlp_ratio=4, out_indices=[3, 6, 9, 12],
                            reshape_hidden_states=False)
    return DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=384,
                               reassemble_factors=[4, 2, 1, 0.5], neck_hidden_sizes=[48, 96, 192, 384],
                               fusion_hidden_size=64, head_hidden_size=32,
                               depth_estimation_type="metric", max_depth=int(max_depth))


def depth_anything(params: Params, smoke: bool) -> DepthModel:
    from transformers import DepthAnythingForDepthEstimation

    from pipeline.models.depth_anything import DepthAnythingV2
    cfg = dataclasses.replace(config_for(params, "depth_anything_v2"), pretrained=None)
    if smoke:  # the params' tiny config of the same classes
        return build_model("depth_anything_v2", cfg, seed=0)
    torch.manual_seed(0)
    model = DepthAnythingV2(DepthAnythingForDepthEstimation(small_config(cfg.max_depth)))
    model.reset_decoder(cfg.init_depth)
    return model


def unidepth(params: Params) -> DepthModel | None:
    try:
        cfg = {**params.model_cfg.get("unidepth_v2", {}), "pretrained": None}
        return build_model("unidepth_v2", cfg, seed=0)
    except ValueError as e:
        print(f"unidepth_v2: skipped ({e})")
        return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_bench(model: DepthModel, dm: DishDataModule, params: Params, device: torch.device,
                steps: int, warmup: int, budget_s: float) -> dict:
    """Timed AdamW steps under bf16 autocast with the training losses. Data wait = time in
    next(loader); step = forward + loss + backward + clip + optimizer, synchronised."""
    model.to(device).train()
    model.set_encoder_frozen(False)
    size = dm.size
    geom = geometry_params(params, size, dm.original_width())
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    predicts_K = bool(getattr(model, "predicts_K", False))  # as training: UniDepth with camera: predict
    weights = check_weights(params.loss)                  # once, not every step
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    wait = step = 0.0
    n_img = n_steps = 0
    t_start = time.time()
    done = 0
    while done < steps + warmup:
        it = iter(dm.train_dataloader())
        while done < steps + warmup:
            t0 = time.time()
            try:
                batch = next(it)
            except StopIteration:
                break
            batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
            t1 = time.time()
            with torch.autocast(device.type, dtype=torch.bfloat16):
                out = model(batch["image"], batch["K"].clone())
                loss, _ = total_loss(out, batch, weights, geom, predicts_K)
            opt.zero_grad(set_to_none=True)
            if loss is not None:
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
            sync(device)
            t2 = time.time()
            done += 1
            if done > warmup:
                wait, step = wait + (t1 - t0), step + (t2 - t1)
                n_img, n_steps = n_img + len(batch["image"]), n_steps + 1
            if time.time() - t_start > budget_s:
                steps = done - warmup  # stop here: the budget is spent
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {"steps": n_steps, "img_s": n_img / max(wait + step, 1e-9), "wait_frac": wait / max(wait + step, 1e-9),
            "step_s": step / max(n_steps, 1), "peak_gb": peak}


def infer_bench(model: DepthModel, size: tuple[int, int], batch: int, device: torch.device,
                iters: int) -> dict:
    """Forward passes on random images under bf16 autocast, no grad."""
    model.to(device).eval()
    x = torch.rand(batch, 3, *size, device=device)
    K = torch.tensor([[size[1] * 0.9, 0, (size[1] - 1) / 2], [0, size[1] * 0.9, (size[0] - 1) / 2],
                      [0, 0, 1]], device=device).repeat(batch, 1, 1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        for _ in range(2):
            out = model(x, K.clone())
        sync(device)
        t = time.time()
        for _ in range(iters):
            out = model(x, K.clone())
        sync(device)
        dt = time.time() - t
    if not torch.isfinite(out["depth"]).all():
        raise FloatingPointError("non-finite depth in inference")
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {"img_s": batch * iters / dt, "peak_gb": peak, "dtype": str(out["depth"].dtype).replace("torch.", "")}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny model and sizes, a few steps")
    ap.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"))
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None, help="timed training steps")
    ap.add_argument("--dishes", type=int, default=None)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--models", nargs="+", default=None, choices=["depth_anything_v2", "unidepth_v2"],
                    help="default: both (UniDepth only when importable); --smoke: depth_anything_v2 "
                         "(UniDepth's antialiased resize has no bf16 CPU kernel)")
    ap.add_argument("--budget-s", type=float, default=100.0, help="training time cap per model")
    args = ap.parse_args(argv)
    smoke = args.smoke
    device = torch.device("cuda" if torch.cuda.is_available() and not smoke else "cpu")
    if device.type == "cpu" and not smoke:
        print("no GPU visible: running on the CPU (use --smoke for a quick end-to-end check)")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    h, w = args.size or ((84, 112) if smoke else (518, 686))
    bs = args.batch_size or (2 if smoke else 8)
    steps = args.steps or (2 if smoke else 40)
    n_dishes = args.dishes or (4 if smoke else 64)
    workers = args.workers if args.workers is not None else (0 if smoke else min(8, os.cpu_count() or 1))
    wanted = args.models or (["depth_anything_v2"] if smoke else ["depth_anything_v2", "unidepth_v2"])
    params = load_params()
    rows, failed = [], []
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: tests.fixtures
        from tests.fixtures.quick_dishes import write_dishes
        index = write_dishes(Path(tmp), n_dishes, width=w, height=h, n_val=1)
        models = [("depth_anything_v2", lambda: depth_anything(params, smoke)),
                  ("unidepth_v2", lambda: unidepth(params))]
        for name, make in models:
            if name not in wanted:
                continue
            model = make()
            if model is None:
                continue
            dm = DishDataModule(index, (h, w), bs, train_augment(params, name), seed=0, num_workers=workers,
                                work_scale=params.train.work_scale,
                                allowed_roots=[Path(tmp)])
            dm.setup("fit")
            n_par = sum(p.numel() for p in model.parameters()) / 1e6
            try:
                tr = train_bench(model, dm, params, device, steps, warmup=1 if smoke else 3,
                                 budget_s=args.budget_s)
                inf = infer_bench(model, (h, w), bs, device, iters=2 if smoke else 20)
                rows.append((name, n_par, tr, inf))
            except Exception as e:  # report every model; the exit status says something failed
                failed.append(f"{name}: FAILED ({type(e).__name__}: {str(e).strip().splitlines()[-1][:200]})")
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()
    dev = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"\n{dev}, input {h}x{w}, batch {bs}, bf16 autocast, {workers} DataLoader workers"
          f"{' (SMOKE: tiny model)' if smoke else ''}")
    print(f"{'model':<18} {'params M':>8} {'steps':>5} {'train img/s':>11} {'step s':>7} "
          f"{'data wait':>9} {'train GB':>8} {'infer img/s':>11} {'infer GB':>8} {'depth':>8}")
    gb = (lambda x: f"{x:>8.2f}") if device.type == "cuda" else (lambda x: f"{'-':>8}")
    for name, n_par, tr, inf in rows:
        print(f"{name:<18} {n_par:>8.1f} {tr['steps']:>5} {tr['img_s']:>11.1f} {tr['step_s']:>7.3f} "
              f"{tr['wait_frac']:>9.1%} {gb(tr['peak_gb'])} {inf['img_s']:>11.1f} {gb(inf['peak_gb'])} "
              f"{inf['dtype']:>8}")
    for line in failed:
        print(line)
    if failed or not rows:
        sys.exit(1)


if __name__ == "__main__":
    main()
