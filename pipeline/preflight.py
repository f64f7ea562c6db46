"""Checks that take seconds, run before a Nutrition5k run that takes GPU hours (`python -m
stages.preflight`, and the first stage `dvc repro` runs).

Why: every one of these fails a real run late and expensively: a wrong `data.root` at ingest, a
hub id that cannot be fetched on an offline node when training starts, a SAM 2 checkpoint that does
not fit its config when the masks stage loads it, `trainer.devices: 8` on a node that shows 4 GPUs
when Lightning starts, a full disk while the checkpoints are written. Each problem is one line
naming the params key or the file. Synthetic data needs none of this: a no-op there.

Checks: the release's layout (`pipeline.data.nutrition5k`'s paths), its metadata and split files, a
sample of dish folders through ingest's own validation; each model's `pretrained` checkpoint (a
local folder, or a hub id already in the local Hugging Face cache: nothing is downloaded); the SAM 2
checkpoint and config pair where SAM 2 will run; `trainer` against the devices this machine shows;
free disk for the run's outputs.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import MasksConfig, Params, TrainerConfig
from pipeline.hub import hub_cached, is_hub_id

SAMPLE_DISHES = 8           # dish folders validated (spread over the sorted ids)
MAX_BAD_SAMPLE_SHARE = 0.5   # more failing than this: the root or the depth range is wrong, not a few bad files
# Disk: per dish, the masks stage's PNGs and tables (~20 kB) and the DVC cache's copy; per trained
# model, 2 stages x (exported weights + the DVC cache's copy + Lightning's resume checkpoint, weights
# and two Adam moments) ~ 12x the checkpoint's weights; plus a margin for plots, logs and temp files.
BYTES_PER_DISH = 50_000
WEIGHT_COPIES = 12
MARGIN_BYTES = 1_000_000_000
RANDOM_INIT_BYTES = 10_000_000   # `pretrained: null`: a tiny random config
UNKNOWN_WEIGHT_BYTES = 1_000_000_000
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
PROCESSOR_MODELS = ("depth_pro", "zoedepth")   # also need preprocessor_config.json (their image processor)


@dataclass
class Machine:
    """What the trainer check compares `trainer` with (injected in tests)."""
    n_gpus: int
    n_cpus: int
    bf16_gpu: bool
    mps: bool = False

    @classmethod
    def here(cls) -> Machine:
        import torch
        n = torch.cuda.device_count()
        return cls(n, os.cpu_count() or 1, bool(n and torch.cuda.is_bf16_supported()),
                   bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()))


@dataclass
class Result:
    problems: list[str] = field(default_factory=list)   # one line each, naming the key or file
    notes: list[str] = field(default_factory=list)      # printed, not fatal
    checked: list[str] = field(default_factory=list)


# --- the release ---------------------------------------------------------------------------

def release_problems(root: Path, min_depth_m: float, max_depth_m: float, min_valid_fraction: float,
                     sample: int = SAMPLE_DISHES) -> tuple[list[str], list[str], int]:
    """(problems, notes, dish folders found) for a Nutrition5k release root."""
    from pipeline.data.nutrition5k import IMAGERY, METADATA, SPLITS, read_metadata, read_split_ids, validate_dish

    root = Path(root)
    if not root.is_dir():
        return [f"data.root = {root}: not a folder (expected the Nutrition5k release root)"], [], 0
    problems = [f"{root / rel}: missing (data.root is not a Nutrition5k release, or an incomplete copy)"
                for rel in (IMAGERY, *METADATA.values(), *SPLITS.values()) if not (root / rel).exists()]
    notes: list[str] = []
    n_rows = {rel: len(read_metadata(root / rel, cafe)[0]) for cafe, rel in METADATA.items() if (root / rel).is_file()}
    if n_rows and not any(n_rows.values()):   # one cafe's file may be empty in a partial copy; both: no masses
        problems.append(f"{root / next(iter(n_rows))}: no dish rows (nor in the other metadata file)")
    notes += [f"{root / rel}: no dish rows" for rel, n in n_rows.items() if not n and any(n_rows.values())]
    ids: dict[str, set[str]] = {}
    for s, rel in SPLITS.items():
        if (root / rel).is_file():
            ids[s] = set(read_split_ids(root / rel))
            if not ids[s]:
                problems.append(f"{root / rel}: no dish ids")
    dirs = sorted(p for p in (root / IMAGERY).iterdir() if p.is_dir() and p.name.startswith("dish_")) \
        if (root / IMAGERY).is_dir() else []
    if (root / IMAGERY).is_dir() and not dirs:
        problems.append(f"{root / IMAGERY}: no dish_* folders")
    if dirs and ids.get("test") and not ids["test"] & {p.name for p in dirs}:
        problems.append(f"{root / SPLITS['test']}: none of its ids has a folder in {IMAGERY}")
    picks = [dirs[round(i * (len(dirs) - 1) / max(sample - 1, 1))] for i in range(min(sample, len(dirs)))]
    bad = []
    for p in dict.fromkeys(picks):
        c = validate_dish((str(p), p.name, min_depth_m, max_depth_m, min_valid_fraction))
        if c["reason"]:
            bad.append(f"{p}: {c['reason']} ({c['detail']})")
    if bad and len(bad) > MAX_BAD_SAMPLE_SHARE * len(picks):
        problems += bad
    else:
        notes += [f"{b} (ingest skips such a dish)" for b in bad]
    return problems, notes, len(dirs)


# --- checkpoints ---------------------------------------------------------------------------

def _hub_cache_dir() -> str:
    from huggingface_hub import constants
    return str(constants.HF_HUB_CACHE)


def checkpoint_problems(params: Params) -> tuple[list[str], int]:
    """(problems, bytes of the trained models' weights) for every model the run builds: `models`
    and `eval.zero_shot`, from `model_cfg.<model>.pretrained` (null: a tiny random config)."""
    from pipeline.models import config_for
    from pipeline.models.base import checkpoint_source

    problems, weight_bytes = [], 0
    for name in dict.fromkeys([*params.models, *params.eval.zero_shot]):
        key = f"model_cfg.{name}.pretrained"
        try:
            cfg = config_for(params, name)
        except ValueError as e:
            problems.append(str(e))
            continue
        if name == "unidepth_v2" and importlib.util.find_spec("unidepth") is None:
            problems.append(f"models: {name} needs the unidepth package (pip install -r requirements-unidepth.txt)")
        trained = name in params.models
        if not cfg.pretrained:
            weight_bytes += RANDOM_INIT_BYTES if trained else 0
            continue
        needed = [("config.json",), WEIGHT_FILES]
        needed += [("preprocessor_config.json",)] if name in PROCESSOR_MODELS else []
        src = checkpoint_source(cfg.pretrained)
        if Path(src).is_dir():
            for options in needed:
                if not any((Path(src) / f).is_file() for f in options):
                    problems.append(f"{key} = {cfg.pretrained}: {Path(src) / options[0]} is missing")
            size = sum((Path(src) / f).stat().st_size for f in WEIGHT_FILES if (Path(src) / f).is_file())
        elif is_hub_id(str(cfg.pretrained)):
            found = {opts[0]: next((p for f in opts if (p := hub_cached(src, f))), None) for opts in needed}
            missing = [f for f, p in found.items() if p is None]
            if missing:
                problems.append(f"{key} = {src}: not in the local Hugging Face cache ({_hub_cache_dir()}; missing "
                                f"{', '.join(missing)}); run `hf download {src}` first, or give a local folder")
            w = found.get(WEIGHT_FILES[0])
            size = w.stat().st_size if w is not None and w.suffix != ".json" else UNKNOWN_WEIGHT_BYTES
        else:
            problems.append(f"{key} = {cfg.pretrained}: no such folder (relative paths are read from the "
                            "repository root) and not a hub id (org/name)")
            size = UNKNOWN_WEIGHT_BYTES
        weight_bytes += size if trained else 0
    return problems, weight_bytes


def sam2_problems(masks: MasksConfig) -> tuple[list[str], list[str]]:
    """(problems, notes) for the SAM 2 checkpoint/config pair, where SAM 2 will run: the masks
    stage with `masks.method: sam2` (local .pt or a hub id from the cache), and the given masks
    whenever `masks.sam2_checkpoint` is a local file."""
    ck, config = str(masks.sam2_checkpoint or ""), masks.sam2_config
    local = Path(ck).expanduser()
    looks_local = ck.endswith((".pt", ".pth")) or ck.startswith(("/", ".", "~"))
    if masks.method != "sam2" and not local.is_file():
        if looks_local:
            return [f"masks.sam2_checkpoint = {ck}: no such file (the given masks would quietly fall back to "
                    "the colour rule)"], []
        return [], ["masks.sam2_checkpoint is not a local file: the given masks use the colour rule (rgb_rule)"]
    if importlib.util.find_spec("sam2") is None:
        return ["masks.sam2_checkpoint: SAM 2 will run but the sam2 package is not installed "
                "(requirements.txt)"], []
    import sam2
    from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES

    from pipeline.masks.sam2 import _config_name
    try:
        cfg_name = _config_name(config)
    except ValueError as e:
        return [str(e)], []
    if local.is_file():
        return _sam2_pair(local, Path(sam2.__file__).parent / cfg_name, ck, config), []
    if looks_local:
        return [f"masks.sam2_checkpoint = {ck}: no such file"], []
    if ck not in HF_MODEL_ID_TO_FILENAMES:
        return [f"masks.sam2_checkpoint = {ck}: neither a local file nor a SAM 2 hub id "
                f"({', '.join(sorted(HF_MODEL_ID_TO_FILENAMES))})"], []
    want_cfg, filename = HF_MODEL_ID_TO_FILENAMES[ck]
    if Path(want_cfg).name != Path(cfg_name).name:
        return [f"masks.sam2_config = {config}: {ck} is built from {want_cfg}"], []
    cached = hub_cached(ck, filename)
    if cached is None:
        return [f"masks.sam2_checkpoint = {ck}: not in the local Hugging Face cache ({_hub_cache_dir()}); run "
                f"`hf download {ck} {filename}`, or give the local .pt"], []
    return _sam2_pair(cached, Path(sam2.__file__).parent / cfg_name, ck, config), []


def _sam2_pair(ckpt: Path, config_file: Path, ck: str, config: str) -> list[str]:
    """The checkpoint's Hiera width, block count and SAM 2.1 marker against the config's (the
    tensors are memory-mapped, not read)."""
    import torch
    import yaml

    try:
        sd = torch.load(str(ckpt), map_location="cpu", mmap=True, weights_only=True)
    except Exception as e:   # torch.load raises many types for a bad file
        return [f"masks.sam2_checkpoint = {ck}: not a readable torch checkpoint ({type(e).__name__})"]
    sd = sd.get("model", sd) if isinstance(sd, dict) else {}
    w = sd.get("image_encoder.trunk.patch_embed.proj.weight")
    if w is None:
        return [f"masks.sam2_checkpoint = {ck}: not a SAM 2 checkpoint (no image_encoder.trunk weights)"]
    model = yaml.safe_load(config_file.read_text())["model"]
    trunk = model["image_encoder"]["trunk"]
    blocks = len({k.split(".")[3] for k in sd if k.startswith("image_encoder.trunk.blocks.")})
    want = (int(trunk["embed_dim"]), int(sum(trunk["stages"])), bool(model.get("no_obj_embed_spatial", False)))
    got = (int(w.shape[0]), blocks, "no_obj_embed_spatial" in sd)
    if got != want:
        def desc(t: tuple) -> str:
            return f"Hiera width {t[0]}, {t[1]} blocks, SAM {'2.1' if t[2] else '2'}"
        return [f"masks.sam2_checkpoint = {ck} ({desc(got)}) does not fit masks.sam2_config = {config} "
                f"({desc(want)})"]
    return []


# --- trainer, disk -------------------------------------------------------------------------

def trainer_problems(tr: TrainerConfig, machine: Machine) -> list[str]:
    """`trainer` settings this machine cannot run, each naming its key."""
    out = []
    accel, dev = tr.accelerator, tr.devices
    if accel in ("gpu", "cuda") and machine.n_gpus == 0:
        out.append(f"trainer.accelerator = {accel}: no CUDA device is visible on this machine")
    if accel == "mps" and not machine.mps:
        out.append("trainer.accelerator = mps: no Apple GPU (MPS) on this machine")
    gpu = machine.n_gpus > 0 and accel in ("auto", "gpu", "cuda")
    if gpu or accel in ("gpu", "cuda"):
        n = machine.n_gpus
        if n and isinstance(dev, int) and dev > n:
            out.append(f"trainer.devices = {dev}: {n} GPU(s) visible on this machine")
        if n and isinstance(dev, list) and any(i >= n for i in dev):
            out.append(f"trainer.devices = {dev}: GPU indices must be < {n} (the GPUs visible)")
        if str(tr.precision).startswith("bf16") and gpu and not machine.bf16_gpu:
            out.append(f"trainer.precision = {tr.precision}: this GPU has no bfloat16 (use 16-mixed or 32-true)")
    elif accel in ("auto", "cpu"):
        if isinstance(dev, list):
            out.append(f"trainer.devices = {dev}: on CPU a process count, not device indices")
        elif isinstance(dev, int) and dev > machine.n_cpus:
            out.append(f"trainer.devices = {dev}: {dev} CPU processes on {machine.n_cpus} cores")
        if str(tr.precision) == "16-mixed":
            out.append("trainer.precision = 16-mixed: float16 autocast needs a GPU (on CPU: bf16-mixed or 32-true)")
        if tr.strategy == "fsdp":
            out.append("trainer.strategy = fsdp: needs GPUs (on CPU: ddp)")
    return out


def needed_bytes(n_dishes: int, weight_bytes: int) -> int:
    """What the run's outputs take on disk (see the constants above)."""
    return n_dishes * BYTES_PER_DISH + WEIGHT_COPIES * weight_bytes + MARGIN_BYTES


def disk_problems(root: Path, need: int) -> list[str]:
    root = Path(root)
    if not os.access(root, os.W_OK):
        return [f"{root}: not writable (the stages write their outputs here)"]
    free = shutil.disk_usage(root).free
    if free < need:
        return [f"{root}: {free / 1e9:.1f} GB free on its disk, the run's outputs need about {need / 1e9:.1f} GB "
                "(masks and tables per dish, weights and resume checkpoints per model, the DVC cache's copies)"]
    return []


# --- all of it -----------------------------------------------------------------------------

def preflight(params: Params, repo_root: Path, machine: Machine | None = None) -> Result:
    """Every check for `params`' run in the checkout at `repo_root`; nothing on synthetic data."""
    r = Result()
    if params.data.source != "nutrition5k":
        r.notes.append(f"data.source = {params.data.source}: nothing to check (the preflight guards Nutrition5k runs)")
        return r
    n5k = params.nutrition5k
    problems, notes, n_dishes = release_problems(repo_root / params.data.root, n5k.min_depth_m, n5k.max_depth_m,
                                                 n5k.min_valid_fraction)
    r.problems += problems
    r.notes += notes
    problems, weight_bytes = checkpoint_problems(params)
    r.problems += problems
    problems, notes = sam2_problems(params.masks)
    r.problems += problems
    r.notes += notes
    r.problems += trainer_problems(params.trainer, machine or Machine.here())
    r.problems += disk_problems(repo_root, needed_bytes(n_dishes, weight_bytes))
    r.checked = ["release", "checkpoints", "sam2", "trainer", "disk"]
    return r
