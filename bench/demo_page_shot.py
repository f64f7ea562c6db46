"""Screenshot of the demo page with a result, taken in real headless Chromium: the page is
launched on 127.0.0.1, a photo is uploaded into its file input, Measure is clicked, and the
page is captured once the volumes are shown (docs/demo-page.png, shown in the README).

    nice -n 15 python bench/demo_page_shot.py [--out docs/demo-page.png] [--work /tmp/demo-page]

A fresh clone holds only the committed stage 0 (models/depth_anything_v2/pretrain). The checkpoint
shown is a short local fine-tune of it (stage 1, 2 epochs on 24 synthetic dishes at the default
126x168; a few minutes on 2 cores), written in the fine-tuned format with model.json, under the
work folder's models/ (the page lists that folder's checkpoints). The photo is a synthetic
Nutrition5k-rig dish (tests/fixtures/rig_release.py) whose true volume the caption can state.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def demo_checkpoint(work: Path, n: int = 24, epochs: int = 2) -> Path:
    """work/models/depth_anything_v2/stage1: the committed stage 0 fine-tuned briefly (stage 1)."""
    from pipeline.config import load_params
    from pipeline.train.fit import run_stage
    from tests.fixtures.quick_dishes import write_dishes

    out = work / "models/depth_anything_v2/stage1"
    if (out / "model.json").is_file():
        return out
    index = write_dishes(work / "dishes", n=n, width=640, height=480, n_val=4, n_unique=n + 4, seed=321)
    params = load_params()
    params.train.stage1.epochs = epochs
    run_stage("depth_anything_v2", 1, params, index, out, work / "ckpt", work / "dvclive",
              work / "metrics.json", allowed_roots=[work])
    shutil.copytree(REPO / "models/depth_anything_v2/pretrain", work / "models/depth_anything_v2/pretrain",
                    dirs_exist_ok=True)
    return out


def demo_photo(work: Path, family: str = "items", index: int = 4) -> tuple[Path, float]:
    """A rendered rig dish (photo only) and its true food volume (mL)."""
    from pipeline import io
    from tests.fixtures.rig_release import render

    dish = render(7, index, family)
    path = work / "dish.png"
    io.write_rgb(path, dish.rgb)
    return path, float(dish.volume_ml)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs/demo-page.png")
    ap.add_argument("--work", type=Path, default=Path("/tmp/demo-page"))
    ap.add_argument("--port", type=int, default=7866)
    a = ap.parse_args(argv)
    from pipeline.app import HOST, build_page
    from tests.fixtures.browser import measure_on_page

    a.work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    ck = demo_checkpoint(a.work)
    photo, true_ml = demo_photo(a.work)
    print(f"checkpoint {ck} ready in {time.time() - t0:.0f} s; photo {photo}, true volume {true_ml:.1f} mL")
    page = build_page(a.work)
    page.launch(server_name=HOST, server_port=a.port, prevent_thread_lock=True, quiet=True)
    try:
        t0 = time.time()
        text = measure_on_page(f"http://{HOST}:{a.port}/", photo, shot=a.out, width=1400, height=1000)
    finally:
        page.close()
    print(f"result page in {time.time() - t0:.0f} s -> {a.out}\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
