"""DVC stage `labels`: GT volume per dish -> data/dishes/index.csv (+ skipped.csv), metrics/labels.json."""

import pandas as pd

from pipeline import io
from pipeline.config import load_params
from pipeline.labels import LabelSettings, make_labels, plot_mass_vs_volume


def main() -> None:
    p = load_params()
    split = io.read_index(io.REPO_ROOT / "data/interim/split.csv",
                          required=["dish_id", "split", "depth_path", "fx", "fy", "cx", "cy"])
    masks = pd.read_csv(io.REPO_ROOT / "data/masks/masks.csv", dtype={"dish_id": str})
    df = split.merge(masks, on="dish_id", how="left", validate="one_to_one")
    df["mask_status"] = df["mask_status"].fillna("missing from data/masks/masks.csv")
    cfg = LabelSettings(p.volume, p.suspect, p.data_roots(), with_gt_mask=p.masks.method != "gt")
    index, skipped, report = make_labels(df, cfg, workers=p.data.workers)
    io.write_csv(io.REPO_ROOT / "data/dishes/index.csv", index)
    io.write_csv(io.REPO_ROOT / "data/dishes/skipped.csv", skipped)
    io.write_json(io.REPO_ROOT / "metrics/labels.json", report)
    plot_mass_vs_volume(index, io.REPO_ROOT / "plots/labels/mass_vs_volume.png")
    print(report)


if __name__ == "__main__":
    main()
