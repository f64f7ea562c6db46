"""Near-duplicates across the split (metrics/split.json) and `split.nutrition5k: session`, on a
small release-format tree whose dish ids are planted capture times."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.config import params_from_dict
from pipeline.split_sessions import capture_times, make_split, near_test_counts, sessions

T0 = 1559000000
# minutes after T0 -> release split. Six capture sessions 60+ min apart, plus one unlisted dish:
#   4 (test) has a train dish 1 min before; 210 (test) one 10 min before; 440 (test) one 40 min
#   before; 600/605 (test) and 2000 (test) have none within 60 min.
PLANTED = {0: "train", 3: "train", 4: "test",
           200: "train", 210: "test",
           400: "train", 440: "test",
           600: "test", 605: "test",
           1000: "train", 1002: "train", 1010: "train", 1011: "train",
           2000: "test", 2001: "train", 2003: "train",   # 2000: test with a train dish 1 min after
           3000: ""}
RELEASE_COUNTS = {"5": 2, "15": 3, "60": 4}   # test dishes with a train dish within 5 / 15 / 60 min


def _dish(minute: int) -> str:
    return f"dish_{T0 + 60 * minute}"


def _manifest() -> pd.DataFrame:
    return pd.DataFrame({"dish_id": [_dish(m) for m in PLANTED], "source_split": list(PLANTED.values())})


def _params(mode: str, val: float = 0.0, gap: float = 60.0, seed: int = 0):
    return params_from_dict({"data": {"source": "nutrition5k", "seed": seed},
                             "split": {"val_fraction": val, "nutrition5k": mode, "session_gap_min": gap}})


def test_capture_times_and_sessions() -> None:
    t = capture_times(["dish_1559000000", "dish_1559000600", "syn_0001", "dish_12ab"])
    assert t[0] == T0 and t[1] == T0 + 600 and np.isnan(t[2]) and np.isnan(t[3])
    s = sessions(capture_times([_dish(m) for m in (0, 50, 100, 400, 30)]).tolist() + [np.nan], 60)
    assert s[0] == s[1] == s[4] == s[2] and s[3] != s[0] and s[5] not in s[:5]   # 100 -> 400: a 300 min gap
    assert sessions(capture_times([_dish(0), _dish(61)]), 60)[1] == 1   # a gap just over 60 min splits


def test_release_split_counts_the_planted_near_duplicates() -> None:
    split, rep = make_split(_manifest(), _params("release"))
    assert [split[i] for i, v in enumerate(PLANTED.values()) if v == "test"] == ["test"] * 6
    assert rep["split"] == "release" and rep["data_source"] == "nutrition5k"
    assert rep["test_with_train_within_min"] == RELEASE_COUNTS
    assert rep["test_with_train_or_val_within_min"] == RELEASE_COUNTS
    assert rep["n_dishes"] == {"train": 11, "val": 0, "test": 6}
    assert rep["sessions"]["n"] == 7 and rep["sessions"]["n_spanning_train_and_test"] == 4


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("gap", [60.0, 15.0])
def test_session_split_keeps_sessions_whole_at_the_release_test_share(seed: int, gap: float) -> None:
    m = _manifest()
    split, rep = make_split(m, _params("session", val=0.2, gap=gap, seed=seed))
    sess = sessions(capture_times(m["dish_id"]), gap)
    for s in np.unique(sess):   # no session spans two splits
        assert split[sess == s].nunique() == 1
    assert rep["sessions"]["n_spanning_train_and_test"] == 0
    counts = near_test_counts(m["dish_id"], split, ("train", "val"))
    assert all(v == 0 for w, v in counts.items() if float(w) <= gap), counts
    release_share = 6 / 16   # test ids over ids in either split file
    largest = rep["sessions"]["largest"]
    assert abs(rep["n_dishes"]["test"] - release_share * len(m)) <= largest / 2 + 0.5
    assert (split == make_split(m, _params("session", val=0.2, gap=gap, seed=seed))[0]).all()


def test_session_split_needs_the_release_split() -> None:
    m = _manifest().assign(source_split="")
    with pytest.raises(ValueError, match="split.nutrition5k = session"):
        make_split(m, _params("session"))


def test_synthetic_split_unchanged_and_counts_not_applicable() -> None:
    from pipeline.data.split import assign_splits

    m = pd.DataFrame({"dish_id": [f"syn_{i:05d}" for i in range(50)], "source_split": ""})
    p = params_from_dict({})
    split, rep = make_split(m, p)
    assert (split == assign_splits(m, p.split.val_fraction, p.split.test_fraction, p.data.seed)).all()
    assert rep["split"] == "seeded" and rep["test_with_train_within_min"] == {"5": None, "15": None, "60": None}
    assert sum(rep["n_dishes"].values()) == 50


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["release", "session"])
def test_split_stage_on_a_release_tree(tmp_path: Path, dvc_project, mode: str) -> None:
    """ingest + split as commands on a release tree with the planted capture times: split.csv and
    metrics/split.json as the library computes them; the report's split line names the split."""
    from pipeline.evaluate.report import split_note
    from tests.fixtures.fake_release import make_timed_release

    make_timed_release(tmp_path / "release", {_dish(m): s for m, s in PLANTED.items()})
    root = dvc_project({"data.source": "nutrition5k", "data.root": str(tmp_path / "release"), "data.workers": 1,
                        "split.nutrition5k": mode, "split.val_fraction": 0.0})
    for stage in ("ingest", "split"):
        r = subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=root, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    rep = json.loads((root / "metrics/split.json").read_text())
    split = pd.read_csv(root / "data/interim/split.csv", dtype={"dish_id": str})
    assert len(split) == len(PLANTED) and rep["split"] == mode
    if mode == "release":
        assert rep["test_with_train_within_min"] == RELEASE_COUNTS
    else:
        assert rep["test_with_train_within_min"] == {"5": 0, "15": 0, "60": 0} and rep["n_dishes"]["test"] > 0
    note = split_note(rep)
    assert mode in note and f"{rep['n_dishes']['test']} test dishes" in note
