"""New-photo inference: predict_depth API, per-region volumes, the CLI with and without a mask."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import io
from pipeline.data.synthetic import generate_dish
from pipeline.geometry import estimate_volume
from pipeline.measure import Prediction, region_volumes
from pipeline.models import build_model
from pipeline.models.inference import save_model
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


@pytest.mark.slow
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


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert all(n in err for n in needles), err
    return err


def test_out_is_checked_before_inference(photo, weights, tmp_path, capsys, monkeypatch):
    """A bad --out fails in one line before the model runs; a missing folder is created only when
    the file is written; the extension picks the format."""
    from pipeline import predict

    d, _ = photo
    args = [str(d / "dish.png"), "--mask", str(d / "mask.png"), "--model", str(weights), "--out"]
    (tmp_path / "afile").write_text("x")
    with monkeypatch.context() as m:
        m.setattr(predict, "predict_volume", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("inference ran")))
        assert main(args + [str(tmp_path / "afile" / "vis.png")]) == 2
        _one_line_error(capsys, "afile", "is a file")
        assert main(args + [str(tmp_path / "vis.txt")]) == 2
        _one_line_error(capsys, "vis.txt", ".txt")
        assert main(args + [str(tmp_path)]) == 2
        _one_line_error(capsys, "is a folder")
        assert main(args + [str(tmp_path / "new" / "vis.png")]) == 2   # inference fails: nothing created
        _one_line_error(capsys, "RuntimeError: inference ran")
        assert not (tmp_path / "new").exists()
    assert main(args + [str(tmp_path / "new" / "deeper" / "vis.jpg")]) == 0
    assert (tmp_path / "new" / "deeper" / "vis.jpg").read_bytes()[:3] == b"\xff\xd8\xff"   # JPEG
    assert main(args + [str(tmp_path / "vis.png")]) == 0
    assert (tmp_path / "vis.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "new", "vis.png"]   # no temp files


def test_large_photo_is_measured_at_the_working_size(photo, weights, tmp_path, capsys):
    """A 2400x1800 photo is downscaled after reading to the working size (long side 1024 for a
    168-px model), K scaled: the same numbers as for the photo downscaled beforehand."""
    import cv2

    from pipeline.geometry import resize_K
    from pipeline.predict import working_size

    d, dish = photo
    big = cv2.resize(dish.rgb, (2400, 1800), interpolation=cv2.INTER_LINEAR)
    K_big = resize_K(dish.K, (240, 320), (1800, 2400))
    io.write_rgb(tmp_path / "big.png", big)
    (tmp_path / "kbig.json").write_text(json.dumps({"K": K_big.tolist()}))
    assert working_size(weights, (1800, 2400)) == (768, 1024)
    small = cv2.resize(big, (1024, 768), interpolation=cv2.INTER_AREA)
    io.write_rgb(tmp_path / "small.png", small)
    (tmp_path / "ksmall.json").write_text(json.dumps({"K": resize_K(K_big, (1800, 2400), (768, 1024)).tolist()}))
    runs = {}
    for name in ("big", "small"):
        assert main([str(tmp_path / f"{name}.png"), "--K", str(tmp_path / f"k{name}.json"), "--model", str(weights),
                     "--out", str(tmp_path / f"{name}_vis.png")]) == 0
        runs[name] = capsys.readouterr().out
    assert "image: 2400x1800 measured at 1024x768" in runs["big"]
    body = [line for line in runs["big"].splitlines() if not line.startswith(("image:", "saved"))]
    assert body == [line for line in runs["small"].splitlines() if not line.startswith("saved")]
    big_mask = cv2.resize(dish.mask.astype(np.uint8) * 255, (2400, 1800), interpolation=cv2.INTER_NEAREST)
    io.write_mask(tmp_path / "big_mask.png", big_mask > 127)
    assert main([str(tmp_path / "big.png"), "--mask", str(tmp_path / "big_mask.png"),
                 "--K", str(tmp_path / "kbig.json"), "--model", str(weights), "--out", str(tmp_path / "m.png")]) == 0
    total = float(next(x for x in capsys.readouterr().out.splitlines() if x.startswith("total:")).split()[1])
    assert main([str(d / "dish.png"), "--mask", str(d / "mask.png"), "--K", str(d / "k.json"),
                 "--model", str(weights), "--out", str(tmp_path / "m0.png")]) == 0
    total0 = float(next(x for x in capsys.readouterr().out.splitlines() if x.startswith("total:")).split()[1])
    print(f"given mask: {total:.1f} mL at 1024x768 from 2400x1800, {total0:.1f} mL at 320x240")
    # the same dish at another scale: K follows the pixels (a wrong scale would be off by its square,
    # 10x); what differs is the random model's depth on a resampled input and the mask's edge pixels
    assert total == pytest.approx(total0, rel=0.2)


def test_api_takes_the_images_the_cli_reads(photo, weights, tmp_path):
    """Grayscale, RGBA and 16-bit images: the array given to predict_depth and the file read by the
    CLI go through one normalisation (as_rgb8), so both give the same depth."""
    import cv2

    from pipeline.predict import as_rgb8, load_image

    _, dish = photo
    gray = cv2.cvtColor(dish.rgb, cv2.COLOR_RGB2GRAY)
    rgba = np.dstack([dish.rgb, np.full(gray.shape, 7, np.uint8)])
    rgb16 = np.minimum(dish.rgb.astype(np.uint32) * 257 + 100, 65535).astype(np.uint16)   # x/257 rounds to x
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    cv2.imwrite(str(tmp_path / "rgba.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    cv2.imwrite(str(tmp_path / "rgb16.png"), cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
    assert np.array_equal(as_rgb8(rgba), dish.rgb) and np.array_equal(as_rgb8(rgb16), dish.rgb)
    assert np.array_equal(as_rgb8(gray), np.dstack([gray] * 3))
    for name, arr in (("gray", gray), ("rgba", rgba), ("rgb16", rgb16)):
        assert np.array_equal(load_image(tmp_path / f"{name}.png"), as_rgb8(arr)), name
    d_arr, _ = predict_depth(rgb16, "depth_anything_v2", weights)
    d_file, _ = predict_depth(tmp_path / "rgb16.png", "depth_anything_v2", weights)
    assert d_arr.shape == (240, 320) and np.array_equal(d_arr, d_file)
    assert predict_depth(gray, "depth_anything_v2", weights)[0].shape == (240, 320)
    with pytest.raises(ValueError, match="float32"):
        predict_depth(dish.rgb.astype(np.float32), "depth_anything_v2", weights)
    with pytest.raises(ValueError, match="shape"):
        predict_depth(np.zeros((4, 5, 2), np.uint8), "depth_anything_v2", weights)


def test_tiny_checkpoint_warning_names_what_it_was_trained_on(photo, tmp_path):
    """model.json's `trained_on` (written at export) is what the warning says the checkpoint saw."""
    from pipeline.predict import tiny_checkpoint_note

    cfg = {**DA_CFG, "pretrained": "models/depth_anything_v2/pretrain"}
    save_model(build_model("depth_anything_v2", DA_CFG, seed=0), tmp_path / "w", "depth_anything_v2", cfg,
               trained_on={"data": "nutrition5k", "n_train": 166, "stage": 2, "start": "pretrained"})
    note = tiny_checkpoint_note(tmp_path / "w")
    assert "166 nutrition5k dishes, stage 2" in note and "started from models/depth_anything_v2/pretrain" in note
    assert "synthetic" not in note and "not metric" in note
    assert io.read_json(tmp_path / "w" / "model.json")["trained_on"]["data"] == "nutrition5k"


def test_cli_failures_are_one_line_and_exit_2(photo, weights, tmp_path, capsys):
    """Expected failures (bad image, missing checkpoint, bad K, bad arguments): one line on stderr,
    exit code 2, no traceback, no visualisation written."""
    d, _ = photo
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    assert main([str(bad), "--model", str(weights)]) == 2
    _one_line_error(capsys, "broken.jpg")
    assert main([str(d / "dish.png"), "--model", str(weights / "missing")]) == 2
    _one_line_error(capsys, "missing")
    assert main([str(d / "dish.png"), "--fx", "-300", "--model", str(weights), "--out", str(tmp_path / "v.png")]) == 2
    _one_line_error(capsys, "--fx", "positive")
    with pytest.raises(SystemExit) as e:
        main([str(d / "dish.png")])
    assert e.value.code == 2
    _one_line_error(capsys, "--model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.jpg"]


def test_measure_runs_without_torch():
    """The evaluation's end-to-end setting measures through pipeline.measure without the predict
    CLI and without torch (the numpy geometry, masks from depth)."""
    code = ("import sys, numpy as np; from pipeline import io; from pipeline.measure import measure\n"
            "d = np.full((120, 160), 0.40, np.float32); d[40:80, 60:100] = 0.37\n"
            "p = measure(d, io.intrinsics(150.0, 150.0, 79.5, 59.5))\n"
            "print(len(p.volumes_ml), round(p.total_ml, 1), 'pipeline.predict' in sys.modules, 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr
    n, total, predict_loaded, torch_loaded = r.stdout.split()
    assert int(n) == 1 and float(total) > 0 and predict_loaded == torch_loaded == "False", r.stdout
