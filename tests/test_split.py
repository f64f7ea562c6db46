"""pipeline.data.split: seeded fractions, source test split kept, bad fractions refused."""
import pandas as pd
import pytest

from pipeline.data.split import assign_splits


def test_fractions_and_determinism() -> None:
    df = pd.DataFrame({"dish_id": [f"d{i}" for i in range(200)]})
    a = assign_splits(df, 0.15, 0.2, seed=3)
    assert a.value_counts().to_dict() == {"train": 130, "test": 40, "val": 30}
    assert (a == assign_splits(df, 0.15, 0.2, seed=3)).all()
    assert not (a == assign_splits(df, 0.15, 0.2, seed=4)).all()


def test_source_split_test_stays_test() -> None:
    src = ["test"] * 30 + ["train"] * 60 + [""] * 10
    df = pd.DataFrame({"dish_id": [f"d{i}" for i in range(100)], "source_split": src})
    s = assign_splits(df, 0.1, 0.5, seed=0)
    assert (s[:30] == "test").all()
    assert (s[30:] != "test").all() and (s == "val").sum() == 7


@pytest.mark.parametrize("val,test", [(-0.1, 0.2), (0.5, 0.5), (0.2, 1.0)])
def test_bad_fractions(val: float, test: float) -> None:
    with pytest.raises(ValueError, match="split"):
        assign_splits(pd.DataFrame({"dish_id": ["a"]}), val, test, seed=0)
