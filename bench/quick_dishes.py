"""Many dish files quickly, for the data-loading and GPU benches: a few dishes rendered by
pipeline.data.synthetic, written once, then copied file by file under new dish ids (every
dish has its own valid PNGs in the index format, so loading does real per-dish I/O).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from pipeline import io


def write_dishes(root: Path, n: int, width: int, height: int, n_val: int = 4, n_unique: int = 4,
                 seed: int = 123) -> Path:
    """`n` train then `n_val` val dishes under root/dishes, and root/index.csv."""
    from pipeline.data.synthetic import generate_dish
    root = Path(root)
    bases, rows = [], []
    for i in range(min(n_unique, n + n_val)):
        d = generate_dish(seed=seed, index=i, width=width, height=height, noise=True)
        base = root / "unique" / f"u{i}"
        io.write_rgb(base / "rgb.png", d.rgb)
        io.write_depth_png(base / "depth.png", d.depth)
        io.write_mask(base / "mask.png", d.mask)
        bases.append((base, d))
    for i in tqdm(range(n + n_val), desc="write dishes", leave=False):
        src, d = bases[i % len(bases)]
        dst = root / "dishes" / f"q{i:05d}"
        dst.mkdir(parents=True, exist_ok=True)
        for f in ("rgb.png", "depth.png", "mask.png"):
            shutil.copyfile(src / f, dst / f)
        split = "train" if i < n else "val"
        rows.append({"dish_id": f"q{i:05d}", "split": split,
                     "rgb_path": io.rel_to_repo(dst / "rgb.png"),
                     "depth_path": io.rel_to_repo(dst / "depth.png"),
                     "mask_path": io.rel_to_repo(dst / "mask.png"),
                     "fx": d.K[0, 0], "fy": d.K[1, 1], "cx": d.K[0, 2], "cy": d.K[1, 2],
                     "width": width, "height": height, "volume_ml": d.volume_ml_true})
    path = root / "index.csv"
    io.write_csv(path, pd.DataFrame(rows))
    return path
