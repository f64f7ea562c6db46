"""DVC stage `split`: data/raw/manifest.csv -> data/interim/split.csv (seeded train/val/test)."""

from pipeline import io
from pipeline.config import load_params
from pipeline.data.ingest import read_manifest
from pipeline.data.split import assign_splits


def main() -> None:
    p = load_params()
    df = read_manifest(io.REPO_ROOT / "data/raw")
    df.insert(1, "split", assign_splits(df, p.split.val_fraction, p.split.test_fraction, p.data.seed))
    io.write_csv(io.REPO_ROOT / "data/interim/split.csv", df)
    print(df["split"].value_counts().to_dict())


if __name__ == "__main__":
    main()
