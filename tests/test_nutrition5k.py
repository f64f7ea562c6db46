"""Nutrition5k release reader: layout, uneven metadata, split files, corrupt dishes."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline import io
from pipeline.data.nutrition5k import (
    IMAGERY,
    MANIFEST_COLUMNS,
    METADATA,
    SPLITS,
    read_metadata,
    read_release_depth,
    scan_release,
)
from tests.fixtures.fake_release import make_release_tree

FX, FY, CX, CY = 616.6, 616.6, 319.5, 239.5


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("n5k") / "nutrition5k"
    return root, make_release_tree(root, n=6, seed=0, corrupt=True)


@pytest.mark.slow
def test_scan_keeps_good_skips_corrupt_and_counts(tree):
    root, planted = tree
    manifest, report = scan_release(root, FX, FY, CX, CY)
    assert list(manifest.columns[:len(MANIFEST_COLUMNS)]) == MANIFEST_COLUMNS
    assert sorted(manifest["dish_id"]) == sorted(planted["kept"])
    assert report["n_found"] == len(planted["kept"]) + sum(map(len, planted["skipped"].values()))
    assert report["n_kept"] == len(planted["kept"])
    for reason, ids in planted["skipped"].items():
        assert report["skipped"][reason] == len(ids), reason
        assert report["skipped_ids"][reason] == ids
    assert report["n_skipped"] == 3
    # the 65535 / beyond-the-table dish is kept, its bad pixels counted
    assert report["n_dishes_with_out_of_range_pixels"] == 1
    assert report["n_out_of_range_pixels"] >= 40 * 60
    # split ids without imagery are counted per split
    assert report["split_ids_without_imagery"] == {s: len(v) for s, v in planted["no_imagery"].items()}
    assert report["metadata"]["cafe1"]["malformed_rows"] == 0


@pytest.mark.slow
def test_manifest_values(tree):
    root, planted = tree
    manifest, _ = scan_release(root, FX, FY, CX, CY)
    for r in manifest.to_dict("records"):
        assert r["mass_g"] == pytest.approx(planted["mass_g"][r["dish_id"]])
        assert r["source_split"] == planted["split"][r["dish_id"]]
        assert (r["width"], r["height"], r["fx"], r["cy"]) == (640, 480, FX, CY)
        assert r["gt_mask_path"] == "" and np.isnan(r["volume_ml_true"])
        # paths point into the release (nothing copied) and resolve against the repo root
        p = io.resolve(r["depth_path"], [root])
        assert p == (root / IMAGERY / r["dish_id"] / "depth_raw.png").resolve()
    assert set(manifest["cafe"]) == {"cafe1", "cafe2"}
    assert set(manifest["source_split"]) <= {"train", "test", ""}


@pytest.mark.slow
def test_workers_give_same_manifest(tree):
    root, _ = tree
    a, ra = scan_release(root, FX, FY, CX, CY, workers=1)
    b, rb = scan_release(root, FX, FY, CX, CY, workers=2)
    assert a.equals(b) and ra["skipped"] == rb["skipped"]


@pytest.mark.slow
def test_release_depth_reader_drops_out_of_range(tree):
    root, planted = tree
    d = read_release_depth(root / IMAGERY / planted["out_of_range"][0] / "depth_raw.png")
    assert d.dtype == np.float32 and d.shape == (480, 640)
    assert (d[:40, :60] == 0).all() and d.max() <= 0.42


def test_uneven_metadata_rows(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("dish_1,300.0,193.0,12.3,28.2,18.6,ingr_1,soy sauce,3.4,0.7,0.0,0.1,0.5\n"
                 "dish_2,10.0,50.0,0,0,0\n"
                 "dish_3,10.0,0.0,0,0,0,ingr_1,rice,10,1,0,0,0,ingr_2,egg,5\n")
    rows, counts = read_metadata(p, "cafe2")
    assert rows["dish_1"]["mass_g"] == 193.0 and rows["dish_1"]["n_ingredients"] == 1
    assert rows["dish_2"]["n_ingredients"] == 0
    assert np.isnan(rows["dish_3"]["mass_g"])
    assert counts == {"rows": 3, "malformed_rows": 1, "bad_mass": 1, "duplicate_ids": 0}


@pytest.mark.slow
@pytest.mark.parametrize("missing", [IMAGERY, METADATA["cafe2"], SPLITS["test"]])
def test_not_a_release_names_missing_path(tree, tmp_path, missing):
    root, _ = tree
    copy = tmp_path / "copy"
    (copy / IMAGERY).mkdir(parents=True)
    for rel in [*METADATA.values(), *SPLITS.values()]:
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / rel, copy / rel)
    target = copy / missing
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(ValueError, match=str(missing)):
        scan_release(copy, FX, FY, CX, CY)


@pytest.mark.slow
def test_bad_focal_length_is_refused(tree):
    with pytest.raises(ValueError, match="fx"):
        scan_release(tree[0], 0.0, FY, CX, CY)
