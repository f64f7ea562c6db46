"""DVC stage `masks`: one food mask per dish in data/masks/ (labels, training), a depth-free
given mask per dish for the evaluation (ground truth, or RGB-only in data/masks/given/), and
metrics/masks.json."""

from pipeline import io
from pipeline.config import load_params
from pipeline.data.rig import read_rig_extras, read_rig_plane
from pipeline.masks.make import MaskSettings, make_masks


def main() -> None:
    p = load_params()
    df = io.read_index(io.REPO_ROOT / "data/interim/split.csv",
                       required=["dish_id", "split", "rgb_path", "depth_path", "fx", "fy", "cx", "cy"])
    if "mass_g" not in df:
        df["mass_g"] = float("nan")
    rig = read_rig_plane(io.REPO_ROOT / "data/raw")   # Nutrition5k: the fixed rig's plane
    cfg = MaskSettings(p.masks, p.suspect, p.data_roots(), rig, *read_rig_extras(io.REPO_ROOT / "data/raw"))
    _, report = make_masks(df, io.REPO_ROOT / "data/masks", cfg, workers=p.data.workers)
    io.write_json(io.REPO_ROOT / "metrics/masks.json", report)
    print(report)


if __name__ == "__main__":
    main()
