"""DVC stage `split`: data/raw/manifest.csv -> data/interim/split.csv (seeded train/val/test)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline import io  # noqa: E402
from pipeline.config import load_params  # noqa: E402
from pipeline.ingest import read_manifest  # noqa: E402
from pipeline.split import assign_splits  # noqa: E402


def main() -> None:
    p = load_params()
    df = read_manifest(io.REPO_ROOT / "data/raw")
    df.insert(1, "split", assign_splits(df, p.split.val_fraction, p.split.test_fraction, p.data.seed))
    io.write_csv(io.REPO_ROOT / "data/interim/split.csv", df)
    print(df["split"].value_counts().to_dict())


if __name__ == "__main__":
    main()
