"""Lazy dish loading: nothing decoded up front, same draws whatever the worker count."""
from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline import io
from pipeline.config import AugmentConfig, load_params
from pipeline.train.augment import augment_sample
from pipeline.train.datamodule import DishDataModule, train_augment
from tests.fixtures.quick_dishes import write_dishes

SIZE = (84, 112)
AUG = dataclasses.replace(load_params().augment, zoom="depth", p_geometric=1.0)


@pytest.fixture(scope="module")
def index_path(tmp_path_factory) -> Path:
    return write_dishes(tmp_path_factory.mktemp("lazy"), n=8, width=224, height=168, n_val=2, n_unique=3)


def _dm(index_path: Path, workers: int) -> DishDataModule:
    dm = DishDataModule(index_path, SIZE, 4, AUG, seed=5, num_workers=workers,
                        allowed_roots=[index_path.parent])
    dm.setup("fit")
    return dm


def _epoch(dm: DishDataModule, epoch: int) -> list[dict]:
    dm.train_set.epoch = epoch
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return list(loader)


def test_dataset_holds_no_pixels(index_path: Path):
    ds = _dm(index_path, 0).train_set
    assert len(ds) == 8
    # the split is its index rows only: a few hundred bytes per dish, whatever the image size
    assert len(pickle.dumps(ds)) < 2000 * len(ds)


def test_same_batches_with_and_without_workers(index_path: Path):
    a0, a1 = _epoch(_dm(index_path, 0), 0), _epoch(_dm(index_path, 0), 1)
    b0 = _epoch(_dm(index_path, 2), 0)
    for x, y in zip(a0, b0):
        assert x["dish_id"] == y["dish_id"]
        for k in ("image", "depth", "mask", "K", "volume_ml"):
            assert torch.equal(x[k], y[k]), k
    assert not all(torch.equal(x["image"], y["image"]) for x, y in zip(a0, a1))  # new draws per epoch


def test_volume_label_follows_zoom(index_path: Path):
    ds = _dm(index_path, 0).train_set
    ds.epoch = 3
    for idx in range(len(ds)):
        it = ds.load(idx)
        s = augment_sample(it["rgb"], it["depth"], it["mask"], it["K"], SIZE, AUG,
                           np.random.default_rng([ds.seed, 3, idx]))
        got = ds[idx]
        assert np.array_equal(got["depth"].numpy(), s["depth"])
        assert float(got["volume_ml"]) == pytest.approx(it["volume_ml"] * s["volume_scale"], rel=1e-6)
    assert float(_dm(index_path, 0).val_set[0]["volume_ml"]) == pytest.approx(
        float(pd.read_csv(index_path).query("split == 'val'")["volume_ml"].iloc[0]), rel=1e-6)


def test_missing_file_is_named(index_path: Path, tmp_path: Path):
    df = pd.read_csv(index_path, dtype={"dish_id": str})
    df.loc[0, "mask_path"] = io.rel_to_repo(tmp_path / "gone.png")
    bad = tmp_path / "index.csv"
    io.write_csv(bad, df)
    with pytest.raises(ValueError, match="gone.png: file not found"):
        DishDataModule(bad, SIZE, 4, AUG, allowed_roots=[index_path.parent, tmp_path]).setup("fit")


def test_train_augment_takes_the_model_zoom():
    params = {"augment": {"p_blur": 0.1}, "model_cfg": {"depth_anything_v2": {"zoom": "off"}}}
    assert train_augment(params, "depth_anything_v2") == AugmentConfig(p_blur=0.1, zoom="off")
    assert train_augment({"model_cfg": {"depth_anything_v2": {}}}, "depth_anything_v2").zoom == "depth"
    assert train_augment({"augment": None}, "depth_anything_v2") is None
