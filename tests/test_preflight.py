"""The preflight: on a small release tree with a clean setup it finds nothing; each planted problem
(release layout, broken files, checkpoints, SAM 2 pair, trainer vs devices, disk) gives one line
naming its key or file, in seconds; the command exits 2 with those lines and `dvc repro` stops
before ingest."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import pytest
import yaml

from pipeline.config import params_from_dict
from pipeline.data.nutrition5k import IMAGERY, SPLITS
from pipeline.preflight import Machine, preflight, trainer_problems

REPO = Path(__file__).resolve().parent.parent
CPU_BOX = Machine(n_gpus=0, n_cpus=2, bf16_gpu=False)
GPU_BOX = Machine(n_gpus=4, n_cpus=32, bf16_gpu=True)


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    from tests.fixtures.fake_release import make_timed_release

    root = tmp_path_factory.mktemp("n5k") / "release"
    make_timed_release(root, {f"dish_{1559000000 + 600 * i}": "test" if i % 3 == 0 else "train" for i in range(6)})
    import pipeline.models  # noqa: F401  (torch and transformers imported once: the checks are timed, not imports)
    Machine.here()
    return root


def _params(root: Path, **dotted):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data"].update(source="nutrition5k", root=str(root))
    for key, value in dotted.items():
        node = raw
        *path, last = key.split("__")
        for k in path:
            node = node.setdefault(k, {})
        node[last] = value
    return params_from_dict(raw)


def _sam2_pt(path: Path, width: int = 96, blocks: int = 12, v21: bool = True) -> Path:
    """A SAM 2 checkpoint with the tensors the pair check reads (Hiera-tiny 2.1 by default)."""
    import torch

    sd = {"image_encoder.trunk.patch_embed.proj.weight": torch.zeros(width, 3, 7, 7)}
    sd |= {f"image_encoder.trunk.blocks.{i}.norm1.weight": torch.zeros(width) for i in range(blocks)}
    if v21:
        sd["no_obj_embed_spatial"] = torch.zeros(1, 64)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": sd}, path)
    return path


def test_clean_setup_has_no_problem(release) -> None:
    r = preflight(_params(release), REPO, CPU_BOX)
    assert r.problems == [] and r.checked == ["release", "checkpoints", "sam2", "trainer", "disk"]
    assert any("colour rule" in n for n in r.notes)   # the hub-id SAM 2 is not used by the given masks


def test_synthetic_is_a_no_op() -> None:
    r = preflight(params_from_dict({}), REPO, CPU_BOX)
    assert r.problems == [] and r.checked == []


Plant = namedtuple("Plant", "params tree needle")


def _plants(tmp: Path, release: Path) -> dict[str, Plant]:
    ckpt_no_weights = tmp / "ckpt"
    ckpt_no_weights.mkdir(exist_ok=True)
    (ckpt_no_weights / "config.json").write_text('{"model_type": "depth_anything"}')
    return {
        "root_not_a_folder": Plant({"data__root": str(tmp / "nope")}, None, "data.root"),
        "split_file_missing": Plant({}, lambda r: (r / SPLITS["test"]).unlink(), "depth_test_ids.txt"),
        "dish_files_broken": Plant({}, lambda r: [p.write_bytes(p.read_bytes()[:100])
                                                  for p in (r / IMAGERY).glob("*/rgb.png")], "rgb.png"),
        "hub_id_not_cached": Plant({"model_cfg__depth_anything_v2__pretrained":
                                    "depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf"}, None,
                                   "model_cfg.depth_anything_v2.pretrained"),
        "checkpoint_without_weights": Plant({"model_cfg__depth_anything_v2__pretrained": str(ckpt_no_weights)},
                                            None, "model.safetensors"),
        "sam2_pair_mismatch": Plant({"masks__sam2_checkpoint": str(_sam2_pt(tmp / "sam2.1_hiera_tiny.pt")),
                                     "masks__sam2_config": "configs/sam2.1/sam2.1_hiera_s.yaml"}, None,
                                    "masks.sam2_checkpoint"),
        "sam2_file_missing": Plant({"masks__sam2_checkpoint": str(tmp / "gone" / "sam2.1_hiera_tiny.pt")}, None,
                                   "masks.sam2_checkpoint"),
        "gpu_on_a_cpu_machine": Plant({"trainer__accelerator": "gpu"}, None, "trainer.accelerator"),
        "fp16_on_cpu": Plant({"trainer__precision": "16-mixed"}, None, "trainer.precision"),
        "more_cpu_processes_than_cores": Plant({"trainer__devices": 8}, None, "trainer.devices"),
    }


PLANTS = ["root_not_a_folder", "split_file_missing", "dish_files_broken", "hub_id_not_cached",
          "checkpoint_without_weights", "sam2_pair_mismatch", "sam2_file_missing", "gpu_on_a_cpu_machine",
          "fp16_on_cpu", "more_cpu_processes_than_cores"]


@pytest.mark.parametrize("plant", PLANTS)
def test_each_planted_problem_is_one_line_naming_its_key_or_file(plant, release, tmp_path, monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_hub_cache"))
    p = _plants(tmp_path, release)[plant]
    root = release
    if p.tree is not None:
        root = tmp_path / "release"
        shutil.copytree(release, root)
        p.tree(root)
    t0 = time.perf_counter()
    r = preflight(_params(root, **p.params), REPO, CPU_BOX)
    seconds = time.perf_counter() - t0
    assert r.problems and all(p.needle in line for line in r.problems), r.problems
    assert all("\n" not in line for line in r.problems)
    assert seconds < 30, f"{plant}: {seconds:.1f} s"


def test_sam2_pair_that_fits_passes(tmp_path) -> None:
    from pipeline.config import MasksConfig
    from pipeline.preflight import sam2_problems

    pt = _sam2_pt(tmp_path / "random_tiny.pt")
    assert sam2_problems(MasksConfig(sam2_checkpoint=str(pt), sam2_config="configs/sam2.1/sam2.1_hiera_t.yaml")) \
        == ([], [])
    v2 = _sam2_pt(tmp_path / "v2.pt", v21=False)
    (bad,), _ = sam2_problems(MasksConfig(sam2_checkpoint=str(v2), sam2_config="configs/sam2.1/sam2.1_hiera_t.yaml"))
    assert "SAM 2)" in bad and "SAM 2.1)" in bad


def test_trainer_against_devices() -> None:
    tr = _params(Path("/x")).trainer
    assert trainer_problems(tr, CPU_BOX) == [] and trainer_problems(tr, GPU_BOX) == []
    many = type(tr)(accelerator="gpu", devices=8, strategy="ddp")
    assert [s.split(" =")[0] for s in trainer_problems(many, GPU_BOX)] == ["trainer.devices"]
    assert trainer_problems(type(tr)(accelerator="gpu", devices=4, strategy="ddp"), GPU_BOX) == []
    assert "GPU indices" in trainer_problems(type(tr)(devices=[0, 5]), GPU_BOX)[0]
    old_gpu = Machine(n_gpus=1, n_cpus=8, bf16_gpu=False)
    assert trainer_problems(type(tr)(precision="bf16-mixed"), old_gpu)[0].startswith("trainer.precision")
    assert trainer_problems(type(tr)(accelerator="cpu", devices=2, strategy="ddp"), CPU_BOX) == []


def test_disk_short_of_room(release, monkeypatch) -> None:
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: Usage(10**12, 10**12 - 10**8, 10**8))
    (line,) = preflight(_params(release), REPO, CPU_BOX).problems
    assert line.startswith(f"{REPO}:") and "0.1 GB free" in line


@pytest.mark.slow
def test_command_and_dvc_repro_stop_before_ingest(release, dvc_project) -> None:
    """In a project: the command prints each problem on one line and exits 2; `dvc repro` runs the
    preflight first and stops there (no data/raw); fixed, it passes and ingest runs after it."""
    root = dvc_project({"data.source": "nutrition5k", "data.root": str(release), "data.workers": 1,
                        "model_cfg.depth_anything_v2.pretrained": None, "trainer.precision": "16-mixed"})
    r = subprocess.run([sys.executable, "-m", "stages.preflight"], cwd=root, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: trainer.precision = 16-mixed")
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r = subprocess.run(["dvc", "repro", "split"], cwd=root, capture_output=True, text=True)
    assert r.returncode != 0 and "trainer.precision" in r.stderr + r.stdout
    assert not (root / "data/raw").exists()
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["trainer"]["precision"] = "auto"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    r = subprocess.run(["dvc", "repro", "split"], cwd=root, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((root / "metrics/preflight.json").read_text())["checked"][0] == "release"
    assert (root / "data/interim/split.csv").is_file() and (root / "metrics/split.json").is_file()


def test_one_empty_metadata_file_is_a_note_both_a_problem(release, tmp_path) -> None:
    """A partial copy may hold one cafe's dishes only (the sample release does); no metadata at all
    means no masses."""
    from pipeline.data.nutrition5k import METADATA
    from pipeline.preflight import release_problems

    root = tmp_path / "release"
    shutil.copytree(release, root)
    cafe1, cafe2 = (root / rel for rel in METADATA.values())
    cafe2.write_text("")
    problems, notes, _ = release_problems(root, 0.1, 0.42, 0.5)
    assert problems == [] and any("cafe2" in n for n in notes)
    cafe1.write_text("")
    problems, _, _ = release_problems(root, 0.1, 0.42, 0.5)
    assert len(problems) == 1 and "no dish rows" in problems[0]
