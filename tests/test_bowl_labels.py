"""Food in bowls on the Nutrition5k path, through the stages' own entries (issue 27), on a small
held-out tree of round, conical and footed bowls among plates (tests/fixtures/bowl_release.py).
The full measurement and the issue's targets are in bench/bench_bowl_labels.py; what this small
tree pins: no bowl is taken for a plate floor or left with an empty mask, plates keep their
accuracy, and the bowls' labels stay within a bound the bench reports (docs/results/labels.md)."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    from bench.bench_release_labels import run_tree
    from pipeline.config import load_params
    from tests.fixtures.bowl_release import write_bowl_release

    base = tmp_path_factory.mktemp("bowl_release")
    write_bowl_release(base / "release", 9, seed=21)       # 3 bowls (one per shape), 6 plates
    df, report = run_tree(base / "release", base / "work", load_params(), workers=2)
    return df, report


def test_every_bowl_gets_a_bowl_surface_and_a_mask(tree) -> None:
    df, _ = tree
    bowls = df[df["vessel"] == "bowl"]
    assert len(bowls) == 3 and set(bowls["shape"]) == {"round", "conical", "footed"}
    assert (bowls["support"] == "bowl_surface").all(), bowls[["dish_id", "support", "suspect"]]
    assert (bowls["mask_px"] > 5000).all()
    assert bowls["uncertainty"].notna().all()              # the floor is hidden: an estimate


def test_bowl_labels_stay_within_the_measured_bound(tree) -> None:
    df, _ = tree
    bowls = df[(df["vessel"] == "bowl") & df["usable"]]
    # bench_bowl_labels.py, fresh trees: bowls' p90 21-23 % (target 15 %, not met), 4-5 % without the
    # footed bowls, which read high by their foot (median +13 %)
    assert (bowls["err"].abs() <= 0.4).all(), bowls[["shape", "fill_share", "err", "uncertainty"]]


def test_plates_keep_their_accuracy(tree) -> None:
    df, report = tree
    plates = df[df["vessel"] == "plate"]
    assert plates["usable"].all() and plates["err"].abs().quantile(0.9) <= 0.10, plates[["family", "err"]]
    assert "bowl_surface" in report["usable_share_per_support"]
