"""Demo page: `python -m pipeline.app` opens http://127.0.0.1:7860 (this machine only).

Drop a photo, pick a checkpoint (the `models/<model>/<stage>` folders found, or type a path),
optionally give K (fx fy cx cy) and a food mask; the page shows the photo, the predicted depth,
the food mask over the photo, each region's volume and the total, and the mass with the source
of its density. It is a view of `python -m pipeline.predict`: every number comes from the CLI's
own run (`pipeline.predict._run`, the same arguments the command line takes), so the page and the
CLI cannot disagree. Gradio is an optional extra: `pip install -r requirements-app.txt`.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from pipeline import io
from pipeline import predict as P

HOST = "127.0.0.1"      # never 0.0.0.0: the page runs models on files the user uploads
DEFAULT_PORT = 7860
WEIGHT_FILES = ("model.safetensors",)
MASK_RGB = np.array([255, 60, 60], np.float32)   # food tint over the photo
MASK_ALPHA = 0.45


def checkpoints(root: Path | None = None) -> list[str]:
    """Checkpoint folders under root/models (`<model>/<stage>` holding model.safetensors), as
    paths relative to `root` when inside it; fine-tuned stages first (stage2, stage1, ...)."""
    root = Path(root) if root is not None else io.REPO_ROOT
    found = [d for d in sorted((root / "models").glob("*/*"))
             if d.is_dir() and any((d / f).is_file() for f in WEIGHT_FILES)]
    rank = {"stage2": 0, "stage1": 1, "pretrain": 3}
    found.sort(key=lambda d: (rank.get(d.name, 2), d.parent.name, d.name))
    return [d.relative_to(root).as_posix() if d.is_relative_to(root) else str(d) for d in found]


def _num(x: object, what: str) -> float | None:
    """A text box's number: None / empty -> None (not given). Text boxes, not number boxes: a
    browser sends an empty number box as 0, which would pass as fx=0."""
    if x is None or (isinstance(x, str) and not x.strip()):
        return None
    try:
        return float(x)
    except ValueError:
        raise ValueError(f"{what}: not a number: {x!r}") from None


def cli_args(photo: str, checkpoint: str, fx=None, fy=None, cx=None, cy=None, mask: str | None = None,
             density=None, out: Path | None = None, root: Path | None = None) -> list[str]:
    """The `python -m pipeline.predict` command line for the page's inputs (a relative checkpoint
    not found from here is looked up under `root`, default the repository)."""
    if not photo:
        raise ValueError("no photo: drop an image first")
    if not checkpoint:
        raise ValueError("no checkpoint: pick one (models/<model>/<stage>) or type a folder")
    ck = Path(checkpoint)
    root = Path(root) if root is not None else io.REPO_ROOT
    if not ck.is_absolute() and not ck.exists() and (root / ck).exists():
        ck = root / ck   # the dropdown lists paths relative to the repository
    argv = [str(photo), "--model", str(ck)]
    for flag, v in (("--fx", fx), ("--fy", fy), ("--cx", cx), ("--cy", cy), ("--density", density)):
        v = _num(v, flag)
        if v is not None:
            argv += [flag, repr(v)]
    if mask:
        argv += ["--mask", str(mask)]
    if out is not None:
        argv += ["--out", str(out)]
    return argv


def depth_image(depth: np.ndarray) -> np.ndarray:
    """The predicted depth as an RGB colour map with a colour bar in metres (near = bright)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan)
    h, w = d.shape
    fig, ax = plt.subplots(figsize=(6.4, 6.4 * h / w + 0.2), dpi=100)
    im = ax.imshow(d, cmap="magma_r")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="depth (m)")
    ax.axis("off")
    fig.tight_layout(pad=0.3)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy()
    plt.close(fig)
    return rgb


def mask_overlay(rgb: np.ndarray, labels: np.ndarray, volumes_ml: list[float]) -> np.ndarray:
    """The photo with the food tinted, region outlines, and each region's number and volume."""
    out = rgb.astype(np.float32)
    food = labels > 0
    out[food] = (1 - MASK_ALPHA) * out[food] + MASK_ALPHA * MASK_RGB
    out = out.astype(np.uint8)
    contours, _ = cv2.findContours(food.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, (255, 255, 0), max(1, rgb.shape[1] // 400))
    scale = max(0.4, rgb.shape[1] / 1000)
    for i, v in enumerate(volumes_ml, start=1):
        ys, xs = np.nonzero(labels == i)
        if len(xs) == 0:
            continue
        text = f"{i}: {v:.0f} mL"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        x, y = int(xs.mean()) - tw // 2, int(ys.mean()) + th // 2
        cv2.rectangle(out, (x - 2, y - th - 3), (x + tw + 2, y + 4), (0, 0, 0), -1)
        cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def region_rows(run) -> list[list]:
    """[region, volume mL, pixels] per region, then the total."""
    pred = run.pred
    rows = [[str(i), round(v, 1), int((pred.labels == i).sum())] for i, v in enumerate(pred.volumes_ml, start=1)]
    return rows + [["total", round(pred.total_ml, 1), int(pred.mask.sum())]]


def summary(run) -> str:
    """What the CLI prints, as Markdown: total, mass with its density source, K, mask, warnings."""
    pred, m, K = run.pred, run.mass, run.pred.K
    lines = [f"### Total: {pred.total_ml:.1f} mL · mass {m.mass_g:.1f} g",
             f"- **Density** {m.density_g_ml:.3f} g/mL: {m.source}",
             f"- **Intrinsics** ({pred.K_source}): fx={K[0, 0]:.1f} fy={K[1, 1]:.1f} "
             f"cx={K[0, 2]:.1f} cy={K[1, 2]:.1f}",
             f"- **Mask**: {pred.mask_source}, {int(pred.mask.sum())} px, {len(pred.volumes_ml)} regions"]
    if run.work_hw != run.photo_hw:
        lines.append(f"- **Image** {run.photo_hw[1]}x{run.photo_hw[0]} measured at "
                     f"{run.work_hw[1]}x{run.work_hw[0]} (the model's working size, K scaled)")
    lines += [f"- **WARNING**: {w}" for w in pred.warnings]
    return "\n".join(lines)


def analyse(photo: str, checkpoint: str, fx=None, fy=None, cx=None, cy=None, mask: str | None = None,
            density=None, root: Path | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[list], str, str]:
    """One page request: (photo, depth colour map, mask overlay, region table, summary, figure
    path). ValueError with the CLI's one-line message on bad input."""
    out = Path(tempfile.mkdtemp(prefix="food-volume-")) / "result.png"
    args = P._parser().parse_args(cli_args(photo, checkpoint, fx, fy, cx, cy, mask, density, out, root))
    run = P._run(args)   # the CLI's own run: checks, working size, inference, mass, figure
    rgb = P.load_image(photo)
    h, w = run.work_hw
    if rgb.shape[:2] != (h, w):   # the CLI measured a downscaled copy (to_working_size)
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    return (rgb, depth_image(run.pred.depth), mask_overlay(rgb, run.pred.labels, run.pred.volumes_ml),
            region_rows(run), summary(run), str(run.out))


def build_page(root: Path | None = None):
    """The Gradio Blocks page (not launched)."""
    import gradio as gr

    def on_click(photo, checkpoint, fx, fy, cx, cy, mask, density):
        try:
            return analyse(photo, checkpoint, fx, fy, cx, cy, mask, density, root)
        except (ValueError, OSError) as e:
            raise gr.Error(" ".join(str(e).split())) from None

    found = checkpoints(root)
    with gr.Blocks(title="Food volume from one photo") as page:
        gr.Markdown("## Food volume from one photo\nDrop a photo and pick a checkpoint. K and the "
                    "mask are optional (default: the Nutrition5k D435 camera scaled to the photo; "
                    "the food found by the model's food-mask head, else on the predicted depth). Same numbers as "
                    "`python -m pipeline.predict`.")
        with gr.Row():
            with gr.Column(scale=1):
                photo = gr.Image(type="filepath", label="photo", sources=["upload"], height=260)
                ckpt = gr.Dropdown(choices=found, value=found[0] if found else None, allow_custom_value=True,
                                   label="checkpoint (models/<model>/<stage> or a folder)")
                with gr.Row():
                    fx, fy = gr.Textbox(label="fx (px)", placeholder="616.6"), gr.Textbox(label="fy (px)")
                    cx, cy = gr.Textbox(label="cx (px)"), gr.Textbox(label="cy (px)")
                mask = gr.Image(type="filepath", label="food mask (optional, food > 127)",
                                sources=["upload"], image_mode="L", height=160)
                density = gr.Textbox(label="density g/mL (optional; default: the model's mass head or "
                                     "mass.default_density)")
                go = gr.Button("Measure", variant="primary")
            with gr.Column(scale=2):
                result = gr.Markdown(elem_id="summary")
                with gr.Row():
                    shown = gr.Image(label="photo (as measured)", type="numpy", interactive=False)
                    depth = gr.Image(label="predicted depth", type="numpy", interactive=False)
                    over = gr.Image(label="food mask and regions", type="numpy", interactive=False)
                table = gr.Dataframe(headers=["region", "volume (mL)", "pixels"], label="volumes",
                                     interactive=False)
                figure = gr.File(label="the CLI's figure (photo | depth | height)")
        go.click(on_click, [photo, ckpt, fx, fy, cx, cy, mask, density],
                 [shown, depth, over, table, result, figure], api_name="analyse")
    return page


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.app", description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on {HOST} (default {DEFAULT_PORT})")
    args = ap.parse_args(argv)
    try:
        import gradio  # noqa: F401
    except ImportError:
        print("error: the demo page needs gradio: pip install -r requirements-app.txt", file=sys.stderr)
        return 2
    build_page().launch(server_name=HOST, server_port=args.port, share=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
