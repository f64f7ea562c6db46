"""The bad-input suite: every case gives a clear error naming the file/argument, or a counted
skip in the stage's report; a killed stage leaves no half-written output and a re-run gives
identical results. (Per-module cases live beside their modules; this file is the catalogue
of what a user can throw at the pipeline end to end.)"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import io
from pipeline.data.synthetic import generate_dish
from pipeline.geometry import estimate_volume
from pipeline.masks.from_depth import geometry_mask

K = io.intrinsics(600.0, 600.0, 159.5, 119.5)


@pytest.fixture(scope="module")
def dish():
    return generate_dish(0, 3, width=320, height=240, noise=False)


# --- depth and masks handed to the geometry ----------------------------------------------
def test_all_zero_depth(dish) -> None:
    with pytest.raises(ValueError, match="valid"):
        estimate_volume(np.zeros_like(dish.depth), dish.mask, dish.K)
    with pytest.raises(ValueError, match="valid pixels"):
        geometry_mask(np.zeros_like(dish.depth), dish.K)


def test_empty_and_full_frame_masks(dish) -> None:
    with pytest.raises(ValueError, match="empty"):
        estimate_volume(dish.depth, np.zeros_like(dish.mask), dish.K)
    with pytest.raises(ValueError, match="support"):
        estimate_volume(dish.depth, np.ones_like(dish.mask), dish.K)


def test_mask_touching_the_border_still_measures(dish) -> None:
    mask = dish.mask.copy()
    ys, xs = np.nonzero(mask)
    shifted = np.zeros_like(mask)
    shifted[ys - ys.min(), xs] = True  # slide the food mask up to the image border
    res = estimate_volume(dish.depth, shifted, dish.K)
    assert np.isfinite(res.volume_ml) and res.volume_ml >= 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -1.0, 0.0])
def test_holes_in_the_food_are_filled_not_summed(dish, bad: float) -> None:
    ref = estimate_volume(dish.depth, dish.mask, dish.K).volume_ml
    depth = dish.depth.copy()
    ys, xs = np.nonzero(dish.mask)
    pick = np.random.default_rng(0).choice(len(ys), len(ys) // 20, replace=False)
    depth[ys[pick], xs[pick]] = bad
    got = estimate_volume(depth, dish.mask, dish.K).volume_ml
    assert got == pytest.approx(ref, rel=0.03)


@pytest.mark.parametrize("K_bad,match", [
    (np.zeros((3, 3)), "focal"), (np.eye(2), "3x3"),
    (np.array([[600, 0, 160], [0, 600, 120], [0, 0, 0.0]]), "invertible"),
    (np.full((3, 3), np.nan), "non-finite")])
def test_bad_intrinsics(dish, K_bad, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        estimate_volume(dish.depth, dish.mask, K_bad)


def test_shape_mismatch(dish) -> None:
    with pytest.raises(ValueError, match="mismatch"):
        estimate_volume(dish.depth, dish.mask[:-1], dish.K)


# --- files -------------------------------------------------------------------------------
def test_depth_of_wrong_size_or_dtype_names_the_file(tmp_path: Path) -> None:
    io.write_depth_png(tmp_path / "small.png", np.full((10, 12), 0.4))
    with pytest.raises(ValueError, match="small.png.*expected 640x480"):
        io.read_depth_png(tmp_path / "small.png", shape=(480, 640))
    io.write_rgb(tmp_path / "rgb.png", np.zeros((10, 12, 3), np.uint8))
    with pytest.raises(ValueError, match="rgb.png.*single-channel"):
        io.read_depth_png(tmp_path / "rgb.png")


def test_index_without_intrinsics_or_with_duplicates(tmp_path: Path) -> None:
    row = {c: "x" for c in io.INDEX_COLUMNS}
    pd.DataFrame([row, row]).to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(ValueError, match="dup.csv: duplicate dish ids"):
        io.read_index(tmp_path / "dup.csv")
    pd.DataFrame([{k: v for k, v in row.items() if k != "fx"}]).to_csv(tmp_path / "nok.csv", index=False)
    with pytest.raises(ValueError, match=r"nok.csv: missing columns \['fx'\]"):
        io.read_index(tmp_path / "nok.csv")


def test_index_paths_outside_the_data_root() -> None:
    with pytest.raises(ValueError, match="outside the repository and the data root"):
        io.read_dish_depth({"depth_path": "../../../etc/hosts"})


def test_out_of_range_readings_become_holes(tmp_path: Path) -> None:
    units = np.full((4, 4), 3600, np.uint16)
    units[0, 0], units[0, 1] = 65535, 5000
    with io.atomic_write(tmp_path / "d.png") as t:
        import cv2
        cv2.imwrite(str(t), units)
    row = {"depth_path": io.rel_to_repo(tmp_path / "d.png"), "min_depth_m": 0.1, "max_depth_m": 0.42}
    d = io.read_dish_depth(row, [tmp_path])
    assert d[0, 0] == 0 and d[0, 1] == 0 and d[1, 1] == pytest.approx(0.36)


# --- interruption ------------------------------------------------------------------------
def _tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.mark.slow
def test_killed_ingest_leaves_nothing_and_rerun_is_identical(dvc_project) -> None:
    root = dvc_project({"data.n_dishes": 40, "data.width": 160, "data.height": 120, "data.workers": 1})
    cmd = [sys.executable, "-m", "stages.ingest"]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until some dishes are on disk, then kill hard
        tmp = [p for p in (root / "data").glob(".raw.tmp-*") if len(list(p.iterdir())) >= 3]
        if tmp:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (root / "data/raw").exists(), "a killed ingest must not leave a data/raw behind"
    subprocess.run(cmd, cwd=root, check=True, capture_output=True)
    first = _tree_digest(root / "data/raw")
    subprocess.run(cmd, cwd=root, check=True, capture_output=True)
    assert _tree_digest(root / "data/raw") == first
    assert len(pd.read_csv(root / "data/raw/manifest.csv")) == 40
