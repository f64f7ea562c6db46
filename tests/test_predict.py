"""New-photo inference: predict_depth API, per-region volumes, the CLI with and without a mask."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import io
from pipeline.data.synthetic import generate_dish
from pipeline.geometry import estimate_volume
from pipeline.models import build_model
from pipeline.models.inference import save_model
from pipeline.measure import Prediction, region_volumes
from pipeline.predict import default_K, main, predict_depth, trust_warnings

REPO = Path(__file__).resolve().parent.parent
DA_CFG = {"pretrained": None, "max_depth": 2, "init_depth": 0.4, "size": [126, 168],
          "tiny": {"hidden_size": 48, "num_layers": 4, "num_heads": 3,
                   "neck_hidden_sizes": [16, 32, 48, 64], "fusion_hidden_size": 32,
                   "head_hidden_size": 16}}


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("w") / "stage2"
    save_model(build_model("depth_anything_v2", DA_CFG, seed=0), out, "depth_anything_v2", DA_CFG)
    return out


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A synthetic photo (two or more food items) with its mask and K on disk."""
    d = tmp_path_factory.mktemp("photo")
    dish = generate_dish(0, 13, width=320, height=240, noise=False)
    io.write_rgb(d / "dish.png", dish.rgb)
    io.write_mask(d / "mask.png", dish.mask)
    K = dish.K
    (d / "k.json").write_text(json.dumps({"K": np.asarray(K).tolist()}))
    return d, dish


def test_region_volumes_share_one_plane_and_sum_to_total(photo):
    _, dish = photo
    labels, vols, n, d = region_volumes(dish.depth, dish.mask, dish.K)
    whole = estimate_volume(dish.depth, dish.mask, dish.K)
    assert labels.max() == len(vols) >= 1 and labels.shape == dish.mask.shape
    assert np.allclose(n, whole.plane_normal) and np.isclose(d, whole.plane_d)
    assert sum(vols) == pytest.approx(whole.volume_ml, rel=0.03)
    assert sum(vols) == pytest.approx(dish.volume_ml_true, rel=0.15)


def test_predict_depth_api(photo, weights):
    d, dish = photo
    depth, K = predict_depth(d / "dish.png", "depth_anything_v2", weights)
    assert depth.shape == (240, 320) and depth.dtype == np.float32
    assert np.isfinite(depth).all() and (depth > 0).all() and depth.max() <= 2.0
    assert np.allclose(K, default_K(320, 240))
    depth2, K2 = predict_depth(dish.rgb, "depth_anything_v2", weights / "model.safetensors", K=dish.K)
    assert np.allclose(K2, dish.K) and np.allclose(depth, depth2, atol=1e-5)
    with pytest.raises(ValueError, match="unidepth_v2"):
        predict_depth(dish.rgb, "unidepth_v2", weights)


def test_cli_with_mask_and_K(photo, weights, tmp_path, capsys):
    d, _ = photo
    out = tmp_path / "vis.png"
    rc = main([str(d / "dish.png"), "--mask", str(d / "mask.png"), "--K", str(d / "k.json"),
               "--model", str(weights), "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "intrinsics (given)" in text and "mask: given" in text
    regions = [float(line.split()[2]) for line in text.splitlines() if line.startswith("region ")]
    total = float(next(line for line in text.splitlines() if line.startswith("total:")).split()[1])
    assert regions and total == pytest.approx(np.nansum(regions), abs=0.2 * len(regions))
    assert io.read_rgb(out).shape[2] == 3
    assert "WARNING: the checkpoint is a tiny depth_anything_v2 model" in text and "random init" in text
    assert "does not record" in text   # saved without `trained_on`: predict does not guess "synthetic"


def test_trust_warnings_flag_no_plane_and_implausible_volume(photo):
    _, dish = photo
    base = dict(depth=dish.depth, K=dish.K, labels=np.zeros(dish.mask.shape, np.int32),
                height_mm=np.zeros(dish.mask.shape, np.float32))
    empty = Prediction(mask=np.zeros_like(dish.mask), **base)
    assert any("no food found above a support plane" in w for w in trust_warnings(empty))
    tiny = Prediction(mask=dish.mask, total_ml=0.5, plane_normal=np.array([0.0, 0.0, -1.0]), **base)
    assert any("implausible volume" in w for w in trust_warnings(tiny))
    tilted = Prediction(mask=dish.mask, total_ml=dish.volume_ml_true,
                        plane_normal=np.array([0.9, 0.0, -0.436]), **base)
    w = trust_warnings(tilted)
    assert any("tilted" in x for x in w) and not any("implausible" in x for x in w)


def test_cli_without_mask_default_vis_path(photo, weights):
    d, _ = photo
    r = subprocess.run([sys.executable, "-m", "pipeline.predict", str(d / "dish.png"), "--fx", "300",
                        "--model", str(weights)], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "mask: geometry" in r.stdout and "total:" in r.stdout
    assert "fx=300.0 fy=300.0 cx=159.5 cy=119.5" in r.stdout
    assert (d / "dish_volume.png").is_file()


def test_cli_errors(photo, weights, tmp_path, capsys):
    d, _ = photo
    bad_img = tmp_path / "broken.png"
    bad_img.write_bytes(b"\x89PNG garbage")
    assert main([str(bad_img), "--model", str(weights)]) == 2
    assert "broken.png" in capsys.readouterr().err
    bad_k = tmp_path / "k.json"
    bad_k.write_text(json.dumps({"K": [[1, 0], [0, 1]]}))
    assert main([str(d / "dish.png"), "--K", str(bad_k), "--model", str(weights)]) == 2
    assert "k.json" in capsys.readouterr().err
    assert main([str(d / "dish.png"), "--model", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
    assert main([str(d / "dish.png"), "--fx", "300", "--K", str(d / "k.json"),
                 "--model", str(weights)]) == 2
