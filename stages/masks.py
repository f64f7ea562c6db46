"""DVC stage `masks`: one food mask per dish in data/masks/ (labels, training), a depth-free
given mask per dish for the evaluation (ground truth, or RGB-only in data/masks/given/), and
metrics/masks.json."""

from pipeline import io
from pipeline.cli import run_stage
from pipeline.config import load_params
from pipeline.data.rig import read_rig_extras, read_rig_plane
from pipeline.masks.make import MaskSettings, make_masks
from pipeline.paths import MASKS_DIR, MASKS_JSON, RAW_DIR, SPLIT_CSV, repo_path


def main() -> None:
    p = load_params()
    df = io.read_index(repo_path(SPLIT_CSV),
                       required=["dish_id", "split", "rgb_path", "depth_path", "fx", "fy", "cx", "cy"])
    if "mass_g" not in df:
        df["mass_g"] = float("nan")
    rig = read_rig_plane(repo_path(RAW_DIR))   # Nutrition5k: the fixed rig's plane
    cfg = MaskSettings(p.masks, p.suspect, p.data_roots(), rig, *read_rig_extras(repo_path(RAW_DIR)))
    _, report = make_masks(df, repo_path(MASKS_DIR), cfg, workers=p.data.workers)
    io.write_json(repo_path(MASKS_JSON), report)
    print(report)


if __name__ == "__main__":
    run_stage(main)
