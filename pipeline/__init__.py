"""Food volume from one photo: metric depth, support plane, height integrated over the food mask.

The subpackages follow the DVC DAG (stages/ are thin CLIs over them):

    preflight.py  checks in seconds before a Nutrition5k run (release, checkpoints, SAM 2, trainer, disk)
    data/      ingest + split: synthetic scenes, the Nutrition5k release, its rig plane
    split_sessions.py  the split the params ask for, capture sessions, near-duplicates (metrics/split.json)
    masks/     masks: food masks from depth / SAM 2 / RGB, supports (plate floor, bowl surface)
    labels.py  labels: GT volume per dish; suspect.py: implausible masks and labels, flagged
    geometry/  the volume geometry every stage shares (numpy path and its torch twin)
    models/    depth models behind one interface, found through a registry
    train/     datamodule, augmentation, losses, the Lightning stage
    evaluate/  metrics, scoring, baselines, paired comparisons, plots, report
    measure.py food mask and per-region volumes of a depth map (predict and the evaluation)
    predict.py depth and volume for a new photo (CLI over measure.py and models/)

config.py types params.yaml (one source of every default); io.py reads and writes files atomically;
paths.py names the repository's files once; cli.py: one-line errors and the model argument of the commands.
"""
