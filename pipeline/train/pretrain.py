"""Synthetic pretraining: the embedded default's stand-in for a pretrained checkpoint.

The real experiment fine-tunes a checkpoint trained elsewhere, on far more images of other scenes
(DA-V2 Metric-Indoor: Hypersim rooms). The embedded default has no such checkpoint (nothing is
downloaded), so stage `pretrain@<model>` makes one: a random network of the model's small config
trained on thousands of wide scenes (objects on tables and floors 0.6-3 m away, varied fields of
view) plus table dishes rendered with another seed (`train.pretrain`), labelled with their
analytic volumes and ground-truth masks. Its output is what `model_cfg.<model>.pretrained` points
at, so stage 0 of the report is "pretrained, not fine-tuned", and stages 1-2 fine-tune it with the
pretrained recipe."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import io
from pipeline.config import Params
from pipeline.data.ingest import ingest_synthetic


def pretrain_index(params: Params, out_dir: Path) -> Path:
    """Render `train.pretrain.n_rooms` wide scenes and `n_dishes` dishes at the pretraining's own
    size into out_dir/raw and write out_dir/index.csv (train/val split by a seeded permutation;
    label = analytic volume, mask = ground truth)."""
    pc, d = params.train.pretrain, params.data
    if pc.seed == d.seed:
        raise ValueError(f"{params.source}: train.pretrain.seed must differ from data.seed ({d.seed}): "
                         "pretraining on the experiment's own dishes would leak its test split")
    manifest, _ = ingest_synthetic(Path(out_dir) / "raw", pc.seed, pc.n_dishes, pc.width, pc.height,
                                   d.noise, d.workers, pc.families, params.volume.ring_px, n_rooms=pc.n_rooms)
    n_val = max(1, int(round(pc.val_fraction * len(manifest))))
    order = np.random.default_rng(pc.seed).permutation(len(manifest))
    split = np.where(np.isin(np.arange(len(manifest)), order[:n_val]), "val", "train")
    index = pd.DataFrame({"dish_id": manifest["dish_id"], "split": split, "scene": manifest["scene"],
                          "rgb_path": manifest["rgb_path"], "depth_path": manifest["depth_path"],
                          "mask_path": manifest["gt_mask_path"],
                          **{k: manifest[k] for k in ("fx", "fy", "cx", "cy", "width", "height")},
                          "volume_ml": manifest["volume_ml_true"], "suspect": ""})
    path = Path(out_dir) / "index.csv"
    io.write_csv(path, index)
    return path
