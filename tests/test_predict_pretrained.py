"""predict on pretrained checkpoints (not fine-tuned): the committed stage 0 from a fresh clone, a
local checkpoint folder, a hub id from the local Hugging Face cache (offline), and the one-line
errors when a checkpoint cannot be used."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import io
from pipeline.data.synthetic import generate_dish
from pipeline.models import build_model
from pipeline.predict import available_checkpoints, checkpoint, inference_size, main

REPO = Path(__file__).resolve().parent.parent
STAGE0 = "models/depth_anything_v2/pretrain"
TINY = {"pretrained": None, "max_depth": 2, "init_depth": 0.4}


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("photo")
    io.write_rgb(d / "dish.png", generate_dish(0, 13, width=320, height=240, noise=False).rgb)
    return d / "dish.png"


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """A checkpoint in transformers' format (config.json + model.safetensors), saved from a tiny
    random config of the real class, as a user's local copy of a hub checkpoint would be."""
    out = tmp_path_factory.mktemp("ckpt") / "da_v2_tiny"
    build_model("depth_anything_v2", TINY, seed=0).save_pretrained(out)
    return out


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert all(n in err for n in needles), err
    return err


def test_committed_stage0_is_a_pretrained_checkpoint() -> None:
    ck = checkpoint(STAGE0)
    assert ck.kind == "pretrained" and not ck.fine_tuned and ck.name == "depth_anything_v2"
    assert not (REPO / STAGE0 / "model.json").exists()
    assert ck.size == (126, 168) == inference_size(ck, (480, 640), 14)   # params model_cfg size: trained there
    assert STAGE0 in available_checkpoints()


def test_local_pretrained_folder(photo, pretrained, tmp_path, capsys) -> None:
    ck = checkpoint(pretrained)
    assert ck.kind == "pretrained" and ck.size is None
    assert inference_size(ck, (240, 320), 14)[1] == 518   # a hub checkpoint's own input width
    assert main([str(photo), "--model", str(pretrained), "--out", str(tmp_path / "v.png")]) == 0
    out = capsys.readouterr().out
    assert "total:" in out and " mL" in out and "not fine-tuned" in out and "tiny depth_anything_v2" in out
    assert "a pretrained checkpoint has no mass head" in out and (tmp_path / "v.png").is_file()


def test_hub_id_from_the_local_cache_only(photo, pretrained, tmp_path, capsys, monkeypatch) -> None:
    """A hub id is read from the local cache (never downloaded): absent, one line naming the id
    and how to get it; present (planted in the cache's layout), predicted like a folder."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    repo_id = "depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf"
    args = [str(photo), "--model", repo_id, "--out", str(tmp_path / "v.png")]
    assert main(args) == 2
    _one_line_error(capsys, repo_id, "not in the local Hugging Face cache", "hf download")
    entry = cache / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(pretrained, entry / "snapshots" / "0123abc")
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text("0123abc")
    assert checkpoint(repo_id).path == entry / "snapshots" / "0123abc"
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"{repo_id} is a pretrained depth_anything_v2 checkpoint, not fine-tuned" in out and "total:" in out


def test_unusable_checkpoints_fail_in_one_line(photo, tmp_path, capsys) -> None:
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "bert"}')
    assert main([str(photo), "--model", str(other)]) == 2
    _one_line_error(capsys, "config.json", "bert")
    assert main([str(photo), "--model", "./not/here"]) == 2
    _one_line_error(capsys, "./not/here", "not found")


@pytest.mark.slow
def test_predict_from_a_fresh_clone(photo, tmp_path) -> None:
    """The committed files only (no data/, no stage 1/2, no mass head, nothing in a hub cache):
    `python -m pipeline.predict IMAGE --model models/depth_anything_v2/pretrain` prints the volume
    and warns that the model is not fine-tuned."""
    clone = tmp_path / "clone"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        if (REPO / rel).is_file():
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, clone / rel)
    assert not (clone / "data").exists() and not (clone / "models/depth_anything_v2/stage2").exists()
    env = {**os.environ, "PYTHONPATH": str(clone), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty")}
    r = subprocess.run([sys.executable, "-m", "pipeline.predict", str(photo), "--model", STAGE0,
                        "--out", str(tmp_path / "v.png")], cwd=clone, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "total:" in r.stdout and " mL" in r.stdout and "not fine-tuned" in r.stdout, r.stdout
    assert "Traceback" not in r.stderr and (tmp_path / "v.png").is_file()
