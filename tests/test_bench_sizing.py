"""bench/bench_sizing.py measures what the stages run: each row is the stages' own entries in a
copy of the committed tree with the row's params, and the default row's params are params.yaml's."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import yaml

from bench import bench_sizing as bs
from pipeline import io
from pipeline.config import load_params


def test_default_row_is_params_yaml_and_runs_the_stage_entries(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(bs, "ROOT", tmp_path)
    monkeypatch.setattr(bs, "DATA", ())  # the fine-tuning data is not needed to check the wiring
    calls = []

    def fake_run(work: Path, args: list[str], log: Path) -> float:
        calls.append(args)
        if args[0] == "stages.compare":
            io.write_json(work / "metrics/compare.json", {"models": {bs.MODEL: {"given": {"by_family": {}}}}})
        if args[0] not in ("stages.pretrain", "stages.train"):
            return 1.0
        name = {"stages.pretrain": "pretrain"}.get(args[0], f"stage{args[-1]}")
        io.write_json(work / f"metrics/train/{bs.MODEL}_{name}.json",
                      {"n_train": 10, "epochs_run": 2, "val_volume_ape": 0.3, "val_volume_ape_ci95": [0.2, 0.4],
                       "curve": [{"val/volume_ape": 0.3}]})
        return 1.0

    monkeypatch.setattr(bs, "run", fake_run)
    default = [r for r, spec in bs.ROWS.items() if not spec["set"]]
    assert default == ["height2"]
    work = bs.prepare("height2")
    repo = load_params()  # the rows score the validation split, never the test split
    val = dataclasses.replace(repo, eval=dataclasses.replace(repo.eval, split="val"))
    assert load_params(work / "params.yaml") == val
    assert (work / "stages/pretrain.py").read_bytes() == (io.REPO_ROOT / "stages/pretrain.py").read_bytes()
    res = bs.run_row(bs.ROWS["height2"]["pretrain_from"])  # the default's stage 0 is that row's
    assert calls == [["stages.pretrain", "--model", bs.MODEL],
                     ["stages.train", "--model", bs.MODEL, "--stage", "1"],
                     ["stages.train", "--model", bs.MODEL, "--stage", "2"], *bs.EVAL_STAGES]
    src = load_params(tmp_path / "rooms4k_official/params.yaml")
    assert src.train.pretrain == load_params().train.pretrain and src.model_cfg == load_params().model_cfg
    assert json.loads((tmp_path / "rooms4k_official.json").read_text())["wall_s"] == res["wall_s"]
    # another row changes only its own keys
    bs.prepare("rooms1k")
    p = yaml.safe_load((tmp_path / "rooms1k/params.yaml").read_text())
    assert p["train"]["pretrain"]["n_rooms"] == 1000 and p["models"] == load_params().models
