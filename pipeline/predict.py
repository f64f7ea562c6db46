"""Food volume for a new photo: `python -m pipeline.predict IMAGE --model CKPT [--mask M] [--fx ... | --K k.json]`.

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

import cv2
import numpy as np

from pipeline import io
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
from pipeline.measure import Prediction, measure

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


def working_size(wdir: Path, shape: tuple[int, int]) -> tuple[int, int]:
    """(H, W) a photo of `shape` is measured at: itself when small, else downscaled (aspect kept)
    to a long side of max(WORK_MIN_LONG_PX, 2x the model's input long side)."""
    h, w = shape
    long_px = max(WORK_MIN_LONG_PX, 2 * max(inference_size(wdir, shape, 1)))
    if max(h, w) <= long_px:
        return h, w
    s = long_px / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def to_working_size(wdir: Path, rgb: np.ndarray, K: np.ndarray | None = None,
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


def weights_dir(weights: str | Path) -> Path:
    """A weights folder (model.safetensors + model.json) from the folder or the .safetensors path."""
    from pipeline.models.inference import META_FILE, WEIGHTS_FILE
    p = Path(weights)
    if p.is_file() and p.suffix == ".safetensors":
        p = p.parent
    if not p.is_dir():
        raise ValueError(f"--model {weights}: not found (expected a folder with {WEIGHTS_FILE} "
                         f"and {META_FILE}, e.g. models/depth_anything_v2/stage2)")
    for f in (WEIGHTS_FILE, META_FILE):
        if not (p / f).is_file():
            raise ValueError(f"--model {weights}: {p / f} is missing")
    return p


def model_name(weights: str | Path) -> str:
    """The architecture a weights folder holds (model.json `name`)."""
    from pipeline.models.inference import META_FILE
    meta = io.read_json(weights_dir(weights) / META_FILE)
    name = meta.get("name") if isinstance(meta, dict) else None
    if not name:
        raise ValueError(f"{weights_dir(weights) / META_FILE}: no model name")
    return str(name)


def inference_size(wdir: Path, shape: tuple[int, int], multiple: int) -> tuple[int, int]:
    """(H, W) for the model: its trained size from model.json cfg, else DEFAULT_WIDTH_PX wide."""
    from pipeline.models.inference import META_FILE
    cfg = (io.read_json(wdir / META_FILE) or {}).get("cfg") or {}
    for k in ("infer_size", "input_size", "size"):
        s = cfg.get(k) if isinstance(cfg, dict) else None
        if isinstance(s, (list, tuple)) and len(s) == 2:
            return int(s[0]), int(s[1])
    h, w = shape
    W = DEFAULT_WIDTH_PX // multiple * multiple
    H = max(multiple, int(round(W * h / w / multiple)) * multiple)
    return H, W


def _cached_model(wdir: Path):
    """The model in a weights folder, loaded once (predict is often called per photo)."""
    from pipeline.models.inference import load_model
    key = str(wdir.resolve())
    if key not in _MODEL_CACHE:
        _MODEL_CACHE.clear()
        _MODEL_CACHE[key] = load_model(wdir)
    return _MODEL_CACHE[key]


def k_source_of(weights: str | Path, K: np.ndarray | None) -> str:
    """Where the K of a prediction comes from: the caller (`given`), the model's own camera head
    (`predicted`: a model with `predicts_K`, e.g. UniDepth with camera: predict), or `default_K`."""
    if K is not None:
        return "given"
    return "predicted" if getattr(_cached_model(weights_dir(weights)), "predicts_K", False) else "default"


def predict_depth(image: np.ndarray | str | Path, model_type: str, weights: str | Path | None = None,
                  K: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Metric z-depth (HxW float32 m, at the image's resolution) and the K to measure it with.

    `weights`: a trained weights folder (default models/<model_type>/stage2). K: the given K;
    else UniDepth's predicted K; else `default_K` (Depth-Anything needs a K only for geometry)."""
    from pipeline.models import model_names
    from pipeline.models.inference import predict_depth_array

    if model_type not in model_names():
        raise ValueError(f"model_type: unknown {model_type!r}, expected one of {model_names()}")
    rgb = load_image(image)
    wdir = weights_dir(weights if weights is not None else io.REPO_ROOT / "models" / model_type / "stage2")
    if model_name(wdir) != model_type:
        raise ValueError(f"{wdir}: holds a {model_name(wdir)} model, not {model_type}")
    model = _cached_model(wdir)
    h, w = rgb.shape[:2]
    K_in = check_K(K, "K") if K is not None else default_K(w, h)
    depth, K_model = predict_depth_array(model, rgb, K_in, inference_size(wdir, (h, w), model.input_multiple))
    return depth, (K_in if K is not None else K_model)


# --- trust ------------------------------------------------------------------------------

# A whole dish is at least this much food, and its mean height above the support lies in this
# band (mm); outside, the mask, the support plane or the depth scale is wrong.
MIN_PLAUSIBLE_ML = 5.0
MAX_PLAUSIBLE_ML = 4000.0
MEAN_HEIGHT_MM = (2.0, 150.0)


TINY_MAX_PARAMS = 5_000_000   # the tiny configs have < 1 M parameters, the smallest released ones ~25 M


def tiny_checkpoint_note(wdir: Path) -> str | None:
    """Why a tiny checkpoint's depth is not metric on real photos, naming what it was trained on
    (model.json `trained_on`, written at export), or None for a full-size pretrained one."""
    from pipeline.models.inference import META_FILE

    meta = io.read_json(wdir / META_FILE)
    meta = meta if isinstance(meta, dict) else {}
    cfg = meta.get("cfg") if isinstance(meta.get("cfg"), dict) else {}
    n_params = sum(p.numel() for p in _cached_model(wdir).parameters())
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


def trust_warnings(pred: Prediction, weights: str | Path | None = None,
                   max_tilt_deg: float | None = None) -> list[str]:
    """Reasons a prediction cannot be trusted: a tiny checkpoint (`tiny_checkpoint_note`), no support
    plane (no food found above one, or one no camera looks at), an implausible volume."""
    from pipeline.data.rig import tilt_deg

    out = []
    if weights is not None:
        note = tiny_checkpoint_note(weights_dir(weights))
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


def predict_volume(image: np.ndarray | str | Path, model_type: str, weights: str | Path,
                   K: np.ndarray | None = None, mask: np.ndarray | None = None,
                   volume: VolumeConfig | None = None, masks: MasksConfig | None = None) -> Prediction:
    """Depth, mask (given or from geometry on the predicted depth), per-region and total volume at
    the image's resolution (for a large photo, `to_working_size` first, as the CLI does).
    `volume` / `masks`: params.yaml's settings (default: the config defaults)."""
    rgb = load_image(image)
    depth, K_used = predict_depth(rgb, model_type, weights, K)
    pred = measure(depth, K_used, mask, volume, masks, k_source_of(weights, K))
    pred.warnings = trust_warnings(pred, weights)
    return pred


@dataclass
class MassEstimate:
    mass_g: float
    density_g_ml: float
    source: str        # where the density came from


def estimate_mass(rgb: np.ndarray, pred: Prediction, weights: str | Path, density: float | None = None,
                  mass: MassConfig | None = None) -> MassEstimate:
    """Mass of the predicted food: `density` (g/mL) when given, else the density the model's mass
    head (models/<model>/mass_head, next to the weights folder) reads from the photo over the food
    mask, else the head folder's train-split global density, else `mass.default_density`."""
    from pipeline.mass import HEAD_DIR, density_source, image_features

    wdir = weights_dir(weights)
    text, rho, head = density_source(wdir.parent / HEAD_DIR, density, (mass or MassConfig()).default_density)
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

class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 2, like every other failure
        self.exit(2, f"error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m pipeline.predict", description=__doc__.splitlines()[0])
    p.add_argument("image", help="photo (any format OpenCV reads; grayscale, RGB(A), 8 or 16 bit)")
    p.add_argument("--model", required=True, help="weights folder (model.safetensors + model.json) "
                   "or its model.safetensors, e.g. models/depth_anything_v2/stage2")
    p.add_argument("--mask", help="food mask PNG (food > 127); default: from the predicted depth")
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
    wdir = weights_dir(args.model)
    name = model_name(wdir)
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
        return _fail(str(e))
    except Exception as e:  # noqa: BLE001 -- an unexpected failure is reported the same way
        return _fail(f"{type(e).__name__}: {e}")
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


def _fail(message: str) -> int:
    print("error: " + " ".join(message.split()), file=sys.stderr)
    return 2


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
