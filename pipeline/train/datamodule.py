"""Dishes from data/dishes/index.csv as training/validation batches.

Nothing is preloaded: a split holds its index rows only, and every sample is read from its
PNGs when it is drawn (in the DataLoader workers, `trainer.num_workers`), resized to a "work"
resolution a little above the training size (so zoom-in augmentations keep detail), then
warped to the training size with its K updated (pipeline.train.augment). Memory therefore stays
flat in the number of dishes; the values are those a preloaded split would give.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pipeline.config import AugmentConfig, Params, SuspectConfig, TrainConfig, as_params, or_default
from pipeline.geometry.camera import resize_K
from pipeline.io import K_from_row, read_dish_depth, read_index, read_mask, read_rgb, resolve
from pipeline.models.registry import config_for
from pipeline.suspect import drop_suspect
from pipeline.train.augment import augment_sample

TRAIN_COLUMNS = ["dish_id", "split", "rgb_path", "depth_path", "mask_path",
                 "fx", "fy", "cx", "cy", "width", "height", "volume_ml"]


def check_size(size: list | tuple, multiple: int = 14) -> tuple[int, int]:
    """(H, W) from params; both positive multiples of `multiple`."""
    if len(size) != 2 or any(int(s) <= 0 or int(s) % multiple for s in size):
        raise ValueError(f"train.size: expected [H, W], multiples of {multiple}, got {size}")
    return int(size[0]), int(size[1])


def labelled(row: Mapping) -> bool:
    """Does the index row carry its labels? Rows without a `labelled` column do."""
    v = row.get("labelled", True)
    return not (v is False or str(v).strip().lower() in ("false", "0"))


def on_bowl(row: Mapping) -> bool:
    """Was the row's label measured above a bowl's inner surface (index `support`, from the masks
    stage)? The volume term's ring-plane geometry cannot see that surface. Rows without the
    column (stage 0's scenes, other indexes) stand on the ring plane."""
    return str(row.get("support", "plane")).strip() == "bowl_surface"


class DishDataset(Dataset):
    """One split, read lazily. `augment` None = deterministic resize (validation); training
    draws depend only on (seed, epoch, index), whichever worker reads the sample."""

    def __init__(self, rows: pd.DataFrame, out_hw: tuple[int, int], augment: AugmentConfig | None,
                 seed: int = 0, work_scale: float | None = None, desc: str = "dishes",
                 allowed_roots: list[Path] | None = None) -> None:
        self.out_hw = out_hw
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0  # set by the LightningModule so draws depend on (seed, epoch, index)
        work_scale = or_default(TrainConfig, work_scale=work_scale)   # params train.work_scale
        self.work_hw = (int(round(out_hw[0] * work_scale)), int(round(out_hw[1] * work_scale)))
        self.roots = allowed_roots
        self.rows = [self._check(row, allowed_roots, desc) for row in rows.to_dict("records")]

    @staticmethod
    def _check(row: dict, roots: list[Path] | None, desc: str) -> dict:
        """Cheap up-front checks (label, paths), so a bad index fails before training starts. A row with
        `labelled` False (distillation's unlabelled dishes) needs no label: its volume is NaN."""
        vol = float(row["volume_ml"])
        if not labelled(row):
            row["volume_ml"] = float("nan")
        elif not np.isfinite(vol) or vol <= 0:
            raise ValueError(f"index: dish {row['dish_id']} has no positive volume_ml label ({vol})")
        for col in ("rgb_path", "depth_path", "mask_path"):
            if not resolve(row[col], roots).is_file():
                raise ValueError(f"{row[col]}: file not found ({desc} dish {row['dish_id']}, {col})")
        return row

    def load(self, idx: int) -> dict:
        """Decode one dish at the work resolution (float32 RGB in [0, 1], depth m, mask, K)."""
        row, roots, work_hw = self.rows[idx], self.roots, self.work_hw
        rgb = read_rgb(resolve(row["rgb_path"], roots))
        h0, w0 = rgb.shape[:2]
        depth = read_dish_depth(row, roots, shape=(h0, w0))
        mask = read_mask(resolve(row["mask_path"], roots), shape=(h0, w0))
        dsize = (work_hw[1], work_hw[0])
        return {
            "dish_id": str(row["dish_id"]),
            "rgb": cv2.resize(rgb, dsize, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0,
            "depth": cv2.resize(depth, dsize, interpolation=cv2.INTER_NEAREST),
            "mask": cv2.resize(mask.astype(np.uint8), dsize, interpolation=cv2.INTER_NEAREST) > 0,
            "K": resize_K(K_from_row(row), (h0, w0), work_hw),
            "volume_ml": float(row["volume_ml"]),
            "bowl_label": on_bowl(row),
        }

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx: int) -> dict:
        it = self.load(idx)
        rng = np.random.default_rng([self.seed, self.epoch, idx]) if self.augment is not None else None
        s = augment_sample(it["rgb"], it["depth"], it["mask"], it["K"], self.out_hw, self.augment, rng)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(s["rgb"].transpose(2, 0, 1))).float(),
            "depth": torch.from_numpy(s["depth"]).float(),
            "mask": torch.from_numpy(s["mask"]),
            "K": torch.from_numpy(s["K"]).float(),
            # a "depth"-mode zoom compresses the scene along the optical axis: label follows
            "volume_ml": torch.tensor(it["volume_ml"] * s["volume_scale"], dtype=torch.float32),
            "bowl_label": it["bowl_label"],   # the volume term leaves it out (pipeline.train.losses)
            "dish_id": it["dish_id"],
            "index": idx,  # validation de-duplicates DistributedSampler's padding by it
            "labelled": labelled(self.rows[idx]),  # False: only a teacher's depth may train on it
        }


def train_augment(params: Params | Mapping, model: str) -> AugmentConfig | None:
    """params `augment` for training `model`, with that model's zoom mode
    (`model_cfg.<model>.zoom`: see pipeline.train.augment)."""
    params = as_params(params)
    if params.augment is None:
        return None
    return dataclasses.replace(params.augment, zoom=config_for(params, model).zoom)


class EpochShuffle(Sampler[int]):
    """Shuffle whose order depends only on (seed, epoch): a resumed run replays the batches of
    an uninterrupted one. Lightning calls `set_epoch` before every epoch."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = int(n), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist())


class DishDataModule(pl.LightningDataModule):
    """Train/val splits of the index; test dishes are left to the evaluation stage."""

    def __init__(self, index_path: str | Path, size: tuple[int, int], batch_size: int,
                 augment: AugmentConfig | None, seed: int = 0, num_workers: int = 0,
                 work_scale: float | None = None, max_dishes: int | None = None,
                 allowed_roots: list[Path] | None = None,
                 exclude_suspect: bool | None = None) -> None:
        super().__init__()
        self.index_path = Path(index_path)
        self.size, self.batch_size, self.augment = size, int(batch_size), augment
        self.seed, self.num_workers, self.work_scale = int(seed), int(num_workers), work_scale
        self.max_dishes = max_dishes
        self.allowed_roots = allowed_roots  # besides the repository (io.resolve's guard)
        self.exclude_suspect = bool(or_default(SuspectConfig, exclude=exclude_suspect))  # params suspect.exclude
        self._index: pd.DataFrame | None = None        # read once, for both splits
        self.train_set: DishDataset | None = None
        self.val_set: DishDataset | None = None

    def rows(self, split: str) -> pd.DataFrame:
        if self._index is None:
            self._index = drop_suspect(read_index(self.index_path, required=TRAIN_COLUMNS),
                                       self.exclude_suspect)
        rows = self._index[self._index["split"] == split]
        if rows.empty:
            full = read_index(self.index_path, required=TRAIN_COLUMNS)
            n_all = int((full["split"] == split).sum())
            why = f"all {n_all} suspect, excluded by suspect.exclude" if n_all else "none in the split"
            raise ValueError(f"{self.index_path}: no usable dishes with split == {split!r} ({why}): training "
                             "needs train and val dishes; add dishes or raise split.val_fraction")
        return rows.head(self.max_dishes) if self.max_dishes else rows

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = DishDataset(self.rows("train"), self.size, self.augment, self.seed,
                                         self.work_scale, "train", self.allowed_roots)
        if self.val_set is None:
            self.val_set = DishDataset(self.rows("val"), self.size, None, self.seed,
                                       self.work_scale, "val", self.allowed_roots)

    def original_width(self) -> float:
        """Median original image width (to scale pixel-sized params to the training size)."""
        return float(read_index(self.index_path, required=TRAIN_COLUMNS)["width"].median())

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size,
                          sampler=EpochShuffle(len(self.train_set), self.seed),
                          num_workers=self.num_workers, drop_last=len(self.train_set) > self.batch_size,
                          persistent_workers=False,  # new workers each epoch see the new .epoch
                          pin_memory=torch.cuda.is_available())

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size, shuffle=False,
                          num_workers=self.num_workers, persistent_workers=False,
                          pin_memory=torch.cuda.is_available())
