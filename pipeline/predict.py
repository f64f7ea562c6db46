"""Food volume for a new photo: `python -m pipeline.predict IMAGE --model CKPT [--mask M] [--fx ... | --K k.json]`.

CKPT: a weights folder this pipeline trained (models/<model>/stage2: model.json + model.safetensors),
or a pretrained checkpoint in the network's own format (config.json + weights): the committed stage 0
(models/<model>/pretrain, so a fresh clone can predict before any `dvc repro`), a local folder, or a
hub id (depth-anything/..., lpiccinelli/...) already in the local Hugging Face cache. A pretrained
checkpoint is reported as not fine-tuned.

Prints the volume of each connected food region and the total, a mass estimate (density x volume,
naming where the density came from: `--density`, else the model's learned mass head beside its
weights, else its train-split global density, else params `mass.default_density`), and saves an
image (RGB | predicted depth | height above the support plane with region labels; format from
`--out`'s extension). A large photo is measured at the model's working size (`to_working_size`).
The CLI is `main`; the measuring itself is `pipeline.measure`.

Intrinsics, in order: --fx/--fy/--cx/--cy, --K k.json, UniDepth's own prediction, else the
default below. Volumes scale as 1/(fx·fy), so a wrong focal length is the largest error a
user can make: pass the camera's K when you know it.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from pipeline import io
from pipeline.cli import OneLineParser, fail
from pipeline.config import (
    PARAMS_FILE,
    MasksConfig,
    MassConfig,
    Nutrition5kConfig,
    SuspectConfig,
    VolumeConfig,
    load_params,
    or_default,
)
from pipeline.geometry import check_K, resize_K
from pipeline.hub import hub_cached, is_hub_id
from pipeline.measure import Prediction, measure
from pipeline.paths import MODELS_DIR, model_dir

# Default camera when none is given: the Nutrition5k D435 colour camera (params.yaml
# nutrition5k.fx at 640 px width, ~55 deg horizontal field of view), scaled to the image width,
# principal point at the image centre. Models fine-tuned on Nutrition5k-like data saw this camera.
DEFAULT_WIDTH_PX = 518   # inference width when the model's cfg names no size (multiple of 14)
# A photo is measured at a working size: its long side at least this, and twice the model's input
# long side. The depth comes from the model's input, so more pixels add no information, only time
# and memory (a 6000x4000 photo: 24 M pixels through the geometry); dataset photos (640x480) are
# already this small and are measured as they are.
WORK_MIN_LONG_PX = 1024

_MODEL_CACHE: dict[str, object] = {}


def default_K(width: int, height: int, f_at_640: float | None = None) -> np.ndarray:
    f = or_default(Nutrition5kConfig, fx=f_at_640) * width / 640.0
    return io.intrinsics(f, f, (width - 1) / 2.0, (height - 1) / 2.0)


def as_rgb8(img: np.ndarray, what: str = "image") -> np.ndarray:
    """HxWx3 uint8 RGB from the images a photo can be: grayscale (HxW, HxWx1), RGB, RGBA (alpha
    dropped), 8 or 16 bit (16 bit: x / 257 rounded, 65535 -> 255). The API and the CLI's file
    reader both go through here, so they accept the same images."""
    a = np.asarray(img)
    if a.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{what}: expected 8- or 16-bit pixels, got {a.dtype}")
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        a = a[:, :, :3] if a.shape[2] > 1 else a[:, :, 0]
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3 or min(a.shape[:2]) < 1:
        raise ValueError(f"{what}: expected HxW grayscale, HxWx3 RGB or HxWx4 RGBA, got shape {a.shape}")
    if a.dtype == np.uint16:  # x / 257 rounded; no ties, so float rounding cannot flip a value
        a = cv2.convertScaleAbs(np.ascontiguousarray(a), alpha=1.0 / 257.0)
    return np.ascontiguousarray(a)


def load_image(image: np.ndarray | str | Path) -> np.ndarray:
    """HxWx3 uint8 RGB from an array (see `as_rgb8`) or a file (ValueError naming the file if unreadable)."""
    if isinstance(image, (str, Path)):
        return as_rgb8(io.read_photo(image), str(image))
    return as_rgb8(image)


def working_size(wdir: Path | Checkpoint, shape: tuple[int, int]) -> tuple[int, int]:
    """(H, W) a photo of `shape` is measured at: itself when small, else downscaled (aspect kept)
    to a long side of max(WORK_MIN_LONG_PX, 2x the model's input long side)."""
    h, w = shape
    long_px = max(WORK_MIN_LONG_PX, 2 * max(inference_size(wdir, shape, 1)))
    if max(h, w) <= long_px:
        return h, w
    s = long_px / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def to_working_size(wdir: Path | Checkpoint, rgb: np.ndarray, K: np.ndarray | None = None,
                    mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(rgb, K, mask) at `working_size`: area-averaged pixels, K scaled with the pixel-centre
    convention of `resize_K`, the mask area-averaged and thresholded at half. Volumes keep their
    geometry (K follows the pixels); the result is the one for the photo downscaled beforehand."""
    h, w = rgb.shape[:2]
    H, W = working_size(wdir, (h, w))
    if (H, W) == (h, w):
        return rgb, K, mask
    rgb = cv2.resize(rgb, (W, H), interpolation=cv2.INTER_AREA)
    if K is not None:
        K = resize_K(K, (h, w), (H, W))
    if mask is not None:
        mask = cv2.resize(np.where(mask, 255, 0).astype(np.uint8), (W, H), interpolation=cv2.INTER_AREA) > 127
    return rgb, K, mask


def load_K_json(path: str | Path) -> np.ndarray:
    """K from JSON: a 3x3 list, {"K": 3x3}, or {"fx", "fy", "cx", "cy"}."""
    obj = io.read_json(path)
    try:
        if isinstance(obj, dict) and "K" in obj:
            obj = obj["K"]
        if isinstance(obj, dict):
            K = io.intrinsics(float(obj["fx"]), float(obj.get("fy", obj["fx"])),
                              float(obj["cx"]), float(obj["cy"]))
        else:
            K = np.asarray(obj, dtype=np.float64)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: expected a 3x3 K or fx/fy/cx/cy ({type(e).__name__}: {e})") from None
    return check_K(K, str(path))


# --- checkpoints ---------------------------------------------------------------------------

PRETRAINED_CONFIG = "config.json"   # a checkpoint in the network's own format (transformers, hub mixin)
# config.json `model_type` -> the registered model that loads it (`model_cfg.<model>.pretrained`)
PRETRAINED_TYPES = {"depth_anything": "depth_anything_v2", "depth_pro": "depth_pro", "zoedepth": "zoedepth"}


@dataclass(frozen=True)
class Checkpoint:
    """What `--model` names, resolved to a local folder: `weights` (this pipeline's export:
    model.json + model.safetensors) or `pretrained` (config.json + weights, as from_pretrained
    reads it: the committed stage 0, a local folder, a hub id from the local cache)."""
    path: Path                           # the local folder
    name: str                            # the registered model that runs it
    kind: Literal["weights", "pretrained"]
    source: str                          # what the caller passed (a path or a hub id)
    size: tuple[int, int] | None = None  # input (H, W) a pretrained checkpoint was trained at, if known

    @property
    def fine_tuned(self) -> bool:
        return self.kind == "weights"


def checkpoint(model: str | Path | Checkpoint) -> Checkpoint:
    """Resolve `--model`: a folder (or its model.safetensors) holding model.json -> trained weights;
    a folder with config.json -> a pretrained checkpoint; `org/name` that is no folder here -> the
    hub checkpoint's snapshot in the local Hugging Face cache (never downloaded). Relative folders
    are found from the working directory, then from the repository root. ValueError in one line."""
    if isinstance(model, Checkpoint):
        return model
    from pipeline.models.inference import META_FILE, WEIGHTS_FILE

    source = str(model)
    p = Path(source)
    if p.is_file() and p.suffix == ".safetensors":
        p = p.parent
    if not p.is_dir() and not p.is_absolute() and (io.REPO_ROOT / p).is_dir():
        p = io.REPO_ROOT / p
    if not p.is_dir():
        if is_hub_id(source):
            return _pretrained(_hub_snapshot(source), source)
        raise ValueError(f"--model {source}: not found (expected a folder with {WEIGHTS_FILE} and {META_FILE}, "
                         "e.g. models/depth_anything_v2/stage2; a pretrained checkpoint folder with "
                         f"{PRETRAINED_CONFIG}, e.g. models/depth_anything_v2/pretrain; or a hub id in the "
                         "local Hugging Face cache)")
    if (p / META_FILE).is_file() or not (p / PRETRAINED_CONFIG).is_file():
        for f in (WEIGHTS_FILE, META_FILE):
            if not (p / f).is_file():
                raise ValueError(f"--model {source}: {p / f} is missing")
        meta = io.read_json(p / META_FILE)
        name = meta.get("name") if isinstance(meta, dict) else None
        if not name:
            raise ValueError(f"{p / META_FILE}: no model name")
        return Checkpoint(p, str(name), "weights", source)
    return _pretrained(p, source)


def _hub_snapshot(repo_id: str) -> Path:
    """The local cache's snapshot folder of a hub checkpoint (offline: nothing is downloaded)."""
    from huggingface_hub import constants

    found = hub_cached(repo_id, PRETRAINED_CONFIG)
    if found is None:
        raise ValueError(f"--model {repo_id}: not a folder here and not in the local Hugging Face cache "
                         f"({constants.HF_HUB_CACHE}); on a machine with network run `hf download {repo_id}` "
                         "(or pass a local folder of the checkpoint)")
    return found.parent


def _pretrained(folder: Path, source: str) -> Checkpoint:
    """A pretrained checkpoint: the registered model its config.json names, and its input size when
    it is the checkpoint params.yaml's `model_cfg.<model>.pretrained` names (the committed stage 0,
    trained at `model_cfg.<model>.size`)."""
    cfg = io.read_json(folder / PRETRAINED_CONFIG)
    cfg = cfg if isinstance(cfg, dict) else {}
    inner = cfg.get("config") if isinstance(cfg.get("config"), dict) else cfg
    model = inner.get("model") if isinstance(inner.get("model"), dict) else {}
    if cfg.get("model_type") in PRETRAINED_TYPES:
        name = PRETRAINED_TYPES[cfg["model_type"]]
    elif str(model.get("name", "")).startswith("UniDepthV2"):
        name = "unidepth_v2"
    else:
        raise ValueError(f"--model {source}: {folder / PRETRAINED_CONFIG} is no checkpoint this pipeline runs "
                         f"(model_type {cfg.get('model_type')!r}; known: {sorted(PRETRAINED_TYPES)}, UniDepthV2)")
    return Checkpoint(folder, name, "pretrained", source, _stage0_size(folder, name))


def _stage0_size(folder: Path, name: str) -> tuple[int, int] | None:
    """`model_cfg.<name>.size` when params.yaml's `model_cfg.<name>.pretrained` is `folder`."""
    if not PARAMS_FILE.is_file():
        return None
    from pipeline.models import config_for
    from pipeline.models.base import checkpoint_source

    p = load_params()
    if name not in p.model_cfg:
        return None
    cfg = config_for(p, name)
    if not cfg.pretrained or Path(checkpoint_source(cfg.pretrained)).resolve() != folder.resolve():
        return None
    return int(cfg.size[0]), int(cfg.size[1])


def available_checkpoints(root: Path | None = None) -> list[str]:
    """The checkpoints in a checkout that `--model` takes, best first per model: models/<m>/stage2,
    stage1 (fine-tuned) and pretrain (the committed stage 0), as paths relative to the root."""
    root = Path(root) if root is not None else io.REPO_ROOT
    out = []
    for m in sorted(p for p in (root / MODELS_DIR).glob("*") if p.is_dir()):
        for stage in ("stage2", "stage1", "pretrain"):
            try:
                checkpoint(m / stage)
            except ValueError:
                continue
            out.append((m / stage).relative_to(root).as_posix())
    return out


def inference_size(wdir: Path | Checkpoint, shape: tuple[int, int], multiple: int) -> tuple[int, int]:
    """(H, W) for the model: its trained size (model.json cfg; the stage-0 checkpoint: its
    model_cfg size), else DEFAULT_WIDTH_PX wide."""
    from pipeline.models.inference import META_FILE
    ck = checkpoint(wdir)
    if ck.size is not None:
        return ck.size
    cfg = (io.read_json(ck.path / META_FILE) or {}).get("cfg") or {} if ck.fine_tuned else {}
    for k in ("infer_size", "input_size", "size"):
        s = cfg.get(k) if isinstance(cfg, dict) else None
        if isinstance(s, (list, tuple)) and len(s) == 2:
            return int(s[0]), int(s[1])
    h, w = shape
    W = DEFAULT_WIDTH_PX // multiple * multiple
    H = max(multiple, int(round(W * h / w / multiple)) * multiple)
    return H, W


def _cached_model(wdir: Path | Checkpoint):
    """The model of a checkpoint, loaded once (predict is often called per photo): trained weights
    from model.json, a pretrained checkpoint as `model_cfg.<model>.pretrained` loads it."""
    from pipeline.models import build_model
    from pipeline.models.inference import load_model
    ck = checkpoint(wdir)
    key = str(ck.path.resolve())
    if key not in _MODEL_CACHE:
        _MODEL_CACHE.clear()
        if ck.fine_tuned:
            _MODEL_CACHE[key] = load_model(ck.path)
        else:
            from transformers.utils import logging as hf_logging
            hf_logging.disable_progress_bar()   # one line per failure, results on stdout: no bars
            _MODEL_CACHE[key] = build_model(ck.name, {"pretrained": str(ck.path.resolve())}).eval()
    return _MODEL_CACHE[key]


def k_source_of(weights: str | Path | Checkpoint, K: np.ndarray | None) -> str:
    """Where the K of a prediction comes from: the caller (`given`), the model's own camera head
    (`predicted`: a model with `predicts_K`, e.g. UniDepth with camera: predict), or `default_K`."""
    if K is not None:
        return "given"
    return "predicted" if getattr(_cached_model(checkpoint(weights)), "predicts_K", False) else "default"


def predict_depth(image: np.ndarray | str | Path, model_type: str, weights: str | Path | Checkpoint | None = None,
                  K: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Metric z-depth (HxW float32 m, at the image's resolution) and the K to measure it with.

    `weights`: a trained weights folder (default models/<model_type>/stage2). K: the given K;
    else UniDepth's predicted K; else `default_K` (Depth-Anything needs a K only for geometry)."""
    depth, K_used, _ = predict_arrays(image, model_type, weights, K)
    return depth, K_used


def predict_arrays(image: np.ndarray | str | Path, model_type: str, weights: str | Path | Checkpoint | None = None,
                   K: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """`predict_depth`'s depth and K, and the food probability (HxW in [0, 1]) of the weights'
    food-mask head, or None when they carry no head."""
    from pipeline.models import inference, model_names

    if model_type not in model_names():
        raise ValueError(f"model_type: unknown {model_type!r}, expected one of {model_names()}")
    rgb = load_image(image)
    ck = checkpoint(weights if weights is not None else model_dir(model_type, "stage2"))
    if ck.name != model_type:
        raise ValueError(f"{ck.source}: holds a {ck.name} model, not {model_type}")
    model = _cached_model(ck)
    h, w = rgb.shape[:2]
    K_in = check_K(K, "K") if K is not None else default_K(w, h)
    res = inference.predict_arrays(model, rgb, K_in, inference_size(ck, (h, w), model.input_multiple))
    return res["depth"], (K_in if K is not None else res["K"]), res.get("food_prob")


# --- trust ------------------------------------------------------------------------------

# A whole dish is at least this much food, and its mean height above the support lies in this
# band (mm); outside, the mask, the support plane or the depth scale is wrong.
MIN_PLAUSIBLE_ML = 5.0
MAX_PLAUSIBLE_ML = 4000.0
MEAN_HEIGHT_MM = (2.0, 150.0)


TINY_MAX_PARAMS = 5_000_000   # the tiny configs have < 1 M parameters, the smallest released ones ~25 M


def tiny_checkpoint_note(wdir: Path | Checkpoint) -> str | None:
    """Why a tiny checkpoint's depth is not metric on real photos, naming what it was trained on
    (model.json `trained_on`, written at export), or None for a full-size pretrained one."""
    from pipeline.models.inference import META_FILE

    ck = checkpoint(wdir)
    n_params = sum(p.numel() for p in _cached_model(ck).parameters())
    if not ck.fine_tuned:
        if n_params >= TINY_MAX_PARAMS:
            return None
        return (f"the checkpoint is a tiny {ck.name} model ({n_params / 1e6:.2f} M parameters; released ones have "
                "25 M or more), trained on synthetic dishes at most: its depth is not metric on real photos")
    meta = io.read_json(ck.path / META_FILE)
    meta = meta if isinstance(meta, dict) else {}
    cfg = meta.get("cfg") if isinstance(meta.get("cfg"), dict) else {}
    if cfg.get("pretrained") is not None and n_params >= TINY_MAX_PARAMS:
        return None
    init = "random init" if cfg.get("pretrained") is None else f"started from {cfg['pretrained']}"
    seen = meta.get("trained_on")
    if isinstance(seen, dict) and seen.get("data"):
        n = seen.get("n_train")
        stage = f", stage {seen['stage']}" if seen.get("stage") is not None else ""
        data = f"{n} {seen['data']} dishes{stage}" if n is not None else f"{seen['data']} dishes{stage}"
    else:
        data = f"data its {META_FILE} does not record (exported before the training data was recorded)"
    return (f"the checkpoint is a tiny {meta.get('name', 'depth')} model ({n_params / 1e6:.2f} M parameters, "
            f"{init}) trained on {data}: its depth is not metric on real photos")


def not_fine_tuned_note(weights: str | Path | Checkpoint) -> str | None:
    """Why a pretrained checkpoint's volumes are a zero-shot look, or None for fine-tuned weights."""
    ck = checkpoint(weights)
    if ck.fine_tuned:
        return None
    return (f"{ck.source} is a pretrained {ck.name} checkpoint, not fine-tuned on food: zero-shot depth "
            f"(the fine-tuned model is {(MODELS_DIR / ck.name / 'stage2').as_posix()}, written by `dvc repro`)")


def trust_warnings(pred: Prediction, weights: str | Path | Checkpoint | None = None,
                   max_tilt_deg: float | None = None) -> list[str]:
    """Reasons a prediction cannot be trusted: a tiny checkpoint (`tiny_checkpoint_note`), no support
    plane (no food found above one, or one no camera looks at), an implausible volume."""
    from pipeline.data.rig import tilt_deg

    out = []
    if weights is not None:
        note = not_fine_tuned_note(weights)
        if note:
            out.append(note)
        note = tiny_checkpoint_note(checkpoint(weights))
        if note:
            out.append(note)
    if not pred.mask.any():
        out.append("no food found above a support plane: volume 0 is not a measurement")
        return out
    tilt = None if pred.plane_normal is None else tilt_deg(pred.plane_normal)
    if tilt is not None and tilt > or_default(SuspectConfig, max_tilt_deg=max_tilt_deg):  # params suspect.max_tilt_deg
        out.append(f"the support plane is tilted {tilt:.0f} deg from the "
                   "camera axis: no table was found under the food")
    Z = pred.depth[pred.mask & (pred.depth > 0)]
    area_m2 = float(np.sum(Z.astype(np.float64) ** 2) / (pred.K[0, 0] * pred.K[1, 1]))
    mean_h = 1e-3 * pred.total_ml / area_m2 if area_m2 > 0 else 0.0  # mL / m^2 -> mm
    if not (MIN_PLAUSIBLE_ML <= pred.total_ml <= MAX_PLAUSIBLE_ML) \
            or not (MEAN_HEIGHT_MM[0] <= mean_h <= MEAN_HEIGHT_MM[1]):
        out.append(f"implausible volume for this image: {pred.total_ml:.1f} mL over "
                   f"{1e4 * area_m2:.0f} cm^2 of food (mean height {mean_h:.1f} mm; a dish is "
                   f"{MIN_PLAUSIBLE_ML:.0f}-{MAX_PLAUSIBLE_ML:.0f} mL, {MEAN_HEIGHT_MM[0]:.0f}-"
                   f"{MEAN_HEIGHT_MM[1]:.0f} mm high on average)")
    return out


def predict_volume(image: np.ndarray | str | Path, model_type: str, weights: str | Path | Checkpoint,
                   K: np.ndarray | None = None, mask: np.ndarray | None = None,
                   volume: VolumeConfig | None = None, masks: MasksConfig | None = None) -> Prediction:
    """Depth, mask, per-region and total volume at the image's resolution (for a large photo,
    `to_working_size` first, as the CLI does). The mask: the given one; else the weights' food-mask
    head's (`mask_source` `mask_head`); else cut from the predicted depth by geometry (`geometry`).
    `volume` / `masks`: params.yaml's settings (default: the config defaults)."""
    rgb = load_image(image)
    depth, K_used, food_prob = predict_arrays(rgb, model_type, weights, K)
    pred = measure(depth, K_used, mask, volume, masks, k_source_of(weights, K),
                   food_prob=food_prob if mask is None else None)
    pred.warnings = trust_warnings(pred, weights)
    return pred


@dataclass
class MassEstimate:
    mass_g: float
    density_g_ml: float
    source: str        # where the density came from


def estimate_mass(rgb: np.ndarray, pred: Prediction, weights: str | Path | Checkpoint, density: float | None = None,
                  mass: MassConfig | None = None) -> MassEstimate:
    """Mass of the predicted food: `density` (g/mL) when given, else the density the model's mass
    head (models/<model>/mass_head, next to the weights folder) reads from the photo over the food
    mask, else the head folder's train-split global density, else `mass.default_density`."""
    from pipeline.mass import HEAD_DIR, density_source, image_features

    ck = checkpoint(weights)
    wdir = ck.path
    default = (mass or MassConfig()).default_density
    if ck.fine_tuned or density is not None:
        text, rho, head = density_source(wdir.parent / HEAD_DIR, density, default)
    else:   # a mass head reads the fine-tuned encoder it was fitted on, never a pretrained one
        text, rho, head = f"default {default:g} g/mL (a pretrained checkpoint has no mass head)", default, None
    if head is not None:
        if pred.mask.any():
            size = tuple(head.info.get("size") or inference_size(wdir, rgb.shape[:2], 14))
            rho = float(head.predict(image_features(_cached_model(wdir), rgb, [pred.mask], size)[0])[0])
        else:
            rho, text = head.global_density, f"train-split global density (no food mask for the head; {text})"
    return MassEstimate(float(rho) * pred.total_ml, float(rho), text)


def check_out(path: str | Path) -> Path:
    """The visualisation's path, checked before inference: an extension OpenCV writes, not a
    folder, and under a folder that exists or can be created (a missing one is created when the
    file is written, so a failed run leaves nothing behind)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--out {path}: is a folder, expected an image file name")
    if not cv2.haveImageWriter(str(path)):
        raise ValueError(f"--out {path}: OpenCV writes no image format for the extension "
                         f"{path.suffix or '(none)'!r}; use e.g. .png or .jpg")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:  # the nearest existing ancestor
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"--out {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out {path}: folder {parent} is not writable")
    return path


def save_visualisation(path: str | Path, rgb: np.ndarray, pred: Prediction) -> None:
    """RGB | depth | height above the plane with numbered regions and their volumes; the image
    format is the one `path`'s extension names (OpenCV's writers)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(15, 4.4), dpi=90)
    ax[0].imshow(rgb)
    ax[0].set_title("photo")
    d = np.where(pred.depth > 0, pred.depth, np.nan)
    im = ax[1].imshow(d, cmap="viridis")
    fig.colorbar(im, ax=ax[1], fraction=0.046, label="depth (m)")
    ax[1].set_title(f"predicted depth (K {pred.K_source}, fx={pred.K[0, 0]:.0f})")
    h = np.clip(np.nan_to_num(pred.height_mm, nan=0.0), 0, None)
    vmax = max(5.0, float(np.percentile(h[pred.mask], 99)) if pred.mask.any() else 5.0)
    im = ax[2].imshow(h, cmap="magma", vmin=0, vmax=vmax)
    fig.colorbar(im, ax=ax[2], fraction=0.046, label="height above plane (mm)")
    if pred.labels.any():
        ax[2].contour(pred.labels > 0, levels=[0.5], colors="cyan", linewidths=0.8)
    for i, v in enumerate(pred.volumes_ml, start=1):
        ys, xs = np.nonzero(pred.labels == i)
        ax[2].text(xs.mean(), ys.mean(), f"{i}: {v:.0f} mL", color="white", fontsize=8,
                   ha="center", bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "lw": 0})
    ax[2].set_title(f"food ({pred.mask_source} mask): {len(pred.volumes_ml)} regions, "
                    f"{pred.total_ml:.0f} mL")
    for a in ax:
        a.axis("off")
    fig.tight_layout()
    fig.canvas.draw()
    bgr = cv2.cvtColor(np.asarray(fig.canvas.buffer_rgba()), cv2.COLOR_RGBA2BGR)
    plt.close(fig)
    with io.atomic_write(path) as tmp:   # the temp file keeps the extension: imwrite picks the format
        if not cv2.imwrite(str(tmp), bgr):
            raise ValueError(f"{path}: OpenCV could not write this image format")


# --- command line -------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m pipeline.predict", description=__doc__.splitlines()[0])
    p.add_argument("image", help="photo (any format OpenCV reads; grayscale, RGB(A), 8 or 16 bit)")
    p.add_argument("--model", required=True, help="weights folder (model.safetensors + model.json) "
                   "or its model.safetensors, e.g. models/depth_anything_v2/stage2; or a pretrained checkpoint "
                   "(not fine-tuned): a folder with config.json such as the committed models/depth_anything_v2/"
                   "pretrain, or a hub id in the local Hugging Face cache (depth-anything/..., lpiccinelli/...)")
    p.add_argument("--mask", help="food mask PNG (food > 127); default: the model's food-mask head when its "
                   "weights carry one, else cut from the predicted depth")
    p.add_argument("--fx", type=float)
    p.add_argument("--fy", type=float, help="default: fx")
    p.add_argument("--cx", type=float, help="default: image centre")
    p.add_argument("--cy", type=float, help="default: image centre")
    p.add_argument("--K", dest="K_json", help="JSON with a 3x3 K or fx/fy/cx/cy")
    p.add_argument("--out", help="visualisation image, format from the extension (.png, .jpg, ...; "
                   "default: <image>_volume.png beside the image)")
    p.add_argument("--params", help="params.yaml for volume/mask settings (default: the repo's)")
    p.add_argument("--density", type=float, help="food density in g/mL for the mass estimate (default: the "
                   "model's learned mass head, else its train-split global density)")
    return p


@dataclass
class _Run:
    pred: Prediction
    mass: MassEstimate
    out: Path
    photo_hw: tuple[int, int]
    work_hw: tuple[int, int]


def _run(args: argparse.Namespace) -> _Run:
    """Every check that needs no inference first (K options, --out, the weights, params), then
    the photo at its working size, inference, and the visualisation written last."""
    if args.fx is not None and args.K_json:
        raise ValueError("give either --fx/--fy/--cx/--cy or --K, not both")
    if args.fx is None and any(v is not None for v in (args.fy, args.cx, args.cy)):
        raise ValueError("--fy/--cx/--cy need --fx")
    out = check_out(args.out if args.out else Path(args.image).with_name(Path(args.image).stem + "_volume.png"))
    wdir = checkpoint(args.model)   # resolved once: a hub id keeps its name in the warnings
    name = wdir.name
    params, mass_cfg = _settings(args.params), _mass_settings(args.params)
    K = load_K_json(args.K_json) if args.K_json else None
    rgb = load_image(args.image)
    h, w = rgb.shape[:2]
    if args.fx is not None:
        K = check_K(io.intrinsics(args.fx, args.fy if args.fy is not None else args.fx,
                                  args.cx if args.cx is not None else (w - 1) / 2.0,
                                  args.cy if args.cy is not None else (h - 1) / 2.0), "--fx/--fy")
    mask = io.read_mask(args.mask, shape=(h, w)) if args.mask else None
    rgb, K, mask = to_working_size(wdir, rgb, K, mask)
    pred = predict_volume(rgb, name, wdir, K=K, mask=mask, **params)
    mass = estimate_mass(rgb, pred, wdir, args.density, mass_cfg)
    save_visualisation(out, rgb, pred)
    return _Run(pred, mass, out, (h, w), rgb.shape[:2])


def main(argv: list[str] | None = None) -> int:
    """The CLI: results on stdout; any failure one line on stderr and exit code 2, nothing written."""
    args = _parser().parse_args(argv)
    try:
        r = _run(args)
    except (ValueError, OSError) as e:
        return fail(str(e))
    except Exception as e:  # noqa: BLE001 -- an unexpected failure is reported the same way
        return fail(f"{type(e).__name__}: {e}")
    pred, K = r.pred, r.pred.K
    if r.work_hw != r.photo_hw:
        print(f"image: {r.photo_hw[1]}x{r.photo_hw[0]} measured at {r.work_hw[1]}x{r.work_hw[0]} "
              "(downscaled to the model's working size; K scaled, pixel counts below at this size)")
    print(f"intrinsics ({pred.K_source}): fx={K[0, 0]:.1f} fy={K[1, 1]:.1f} cx={K[0, 2]:.1f} cy={K[1, 2]:.1f}")
    print(f"mask: {pred.mask_source}, {int(pred.mask.sum())} px, {len(pred.volumes_ml)} regions")
    for i, v in enumerate(pred.volumes_ml, start=1):
        print(f"region {i}: {v:8.1f} mL  ({int((pred.labels == i).sum())} px)")
    if not pred.volumes_ml:
        print("no food region found")
    print(f"total: {pred.total_ml:8.1f} mL")
    print(f"mass:  {r.mass.mass_g:8.1f} g   (density {r.mass.density_g_ml:.3f} g/mL: {r.mass.source})")
    for w_ in pred.warnings:
        print(f"WARNING: {w_}")
    print(f"saved {r.out}")
    return 0


def _settings(params_path: str | None) -> dict:
    """Volume and mask settings from params.yaml (the config defaults when there is none)."""
    if params_path is None and not PARAMS_FILE.is_file():
        return {}
    p = load_params(params_path)
    return {"volume": p.volume, "masks": p.masks}


def _mass_settings(params_path: str | None) -> MassConfig | None:
    """params.yaml's `mass:` section (None, i.e. the defaults, when there is no params file)."""
    if params_path is None and not PARAMS_FILE.is_file():
        return None
    return load_params(params_path).mass


if __name__ == "__main__":
    sys.exit(main())
