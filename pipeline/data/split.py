"""Seeded train/val/test split.

A source that ships its own split (Nutrition5k's depth_train/test ids) keeps its test set as
test; validation is carved from its train set. Otherwise dishes are shuffled with the seed.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def _check_fraction(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"split.{name} must be in [0, 1), got {value}")
    return value


def assign_splits(manifest: pd.DataFrame, val_fraction: float, test_fraction: float,
                  seed: int) -> pd.Series:
    """Return a 'train'/'val'/'test' label per row, deterministic for a given seed."""
    val_fraction = _check_fraction("val_fraction", val_fraction)
    test_fraction = _check_fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"split.val_fraction + split.test_fraction must be < 1, got "
                         f"{val_fraction + test_fraction}")
    rng = np.random.default_rng(seed)
    split = pd.Series("train", index=manifest.index, dtype=object)
    source = manifest.get("source_split", pd.Series("", index=manifest.index)).fillna("").astype(str)
    if (source != "").any():
        split[source == "test"] = "test"
        pool = manifest.index[source != "test"]
        n_val = int(round(val_fraction * len(pool)))
        split[rng.permutation(pool)[:n_val]] = "val"
        return split
    order = rng.permutation(manifest.index)
    n_test = int(round(test_fraction * len(order)))
    n_val = int(round(val_fraction * len(order)))
    split[order[:n_test]] = "test"
    split[order[n_test:n_test + n_val]] = "val"
    return split
