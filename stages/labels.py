"""DVC stage `labels`: GT volume per dish -> data/dishes/index.csv (+ skipped.csv), metrics/labels.json."""

import pandas as pd

from pipeline import io
from pipeline.cli import run_stage
from pipeline.config import load_params
from pipeline.labels import LabelSettings, make_labels, plot_mass_vs_volume
from pipeline.paths import INDEX_CSV, LABELS_JSON, MASKS_CSV, MASS_VS_VOLUME_PNG, SKIPPED_CSV, SPLIT_CSV, repo_path


def main() -> None:
    p = load_params()
    split = io.read_index(repo_path(SPLIT_CSV),
                          required=["dish_id", "split", "depth_path", "fx", "fy", "cx", "cy"])
    masks = pd.read_csv(repo_path(MASKS_CSV), dtype={"dish_id": str})
    df = split.merge(masks, on="dish_id", how="left", validate="one_to_one")
    df["mask_status"] = df["mask_status"].fillna("missing from data/masks/masks.csv")
    cfg = LabelSettings(p.volume, p.suspect, p.data_roots(), with_gt_mask=p.masks.method != "gt")
    index, skipped, report = make_labels(df, cfg, workers=p.data.workers)
    io.write_csv(repo_path(INDEX_CSV), index)
    io.write_csv(repo_path(SKIPPED_CSV), skipped)
    io.write_json(repo_path(LABELS_JSON), report)
    plot_mass_vs_volume(index, repo_path(MASS_VS_VOLUME_PNG))
    print(report)


if __name__ == "__main__":
    run_stage(main)
