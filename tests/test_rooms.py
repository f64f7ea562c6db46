"""The pretraining's wide scenes (pipeline.data.rooms): room-scale, exact, deterministic, and
mixed with table dishes by the pretraining index."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import load_params
from pipeline.data.rooms import ROOM_MAX_DEPTH_M
from pipeline.data.synthetic import generate_room
from pipeline.geometry import estimate_volume


def test_rooms_are_room_scale_exact_and_deterministic():
    dists, fovs = [], []
    for i in range(8):
        d = generate_room(5, i, 160, 120)
        dists.append(d.meta["distance_m"])
        fovs.append(d.meta["hfov_deg"])
        assert d.mask.any() and d.volume_ml_true == sum(d.item_volumes_ml) > 0
        valid = d.depth > 0
        assert valid.mean() > 0.5 and d.depth[valid].min() > 0.3 and d.depth.max() <= ROOM_MAX_DEPTH_M
        # every object is in frame: no object pixel on the image border
        assert not (d.mask[0].any() or d.mask[-1].any() or d.mask[:, 0].any() or d.mask[:, -1].any())
    assert min(dists) >= 0.6 and max(dists) > 1.2 and max(fovs) - min(fovs) > 10
    a, b = generate_room(5, 3, 160, 120), generate_room(5, 3, 160, 120)
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth, b.depth)


def test_room_volume_through_the_geometry():
    """The objects' volume label is what the shared geometry measures on the exact depth (the
    volume term of the pretraining is consistent): within 10 % on scenes seen from above."""
    errs = []
    for i in range(12):
        d = generate_room(11, i, 320, 240)
        if d.meta["elevation_deg"] < 60:
            continue
        v = estimate_volume(d.depth, d.mask, d.K).volume_ml
        errs.append(abs(v - d.volume_ml_true) / d.volume_ml_true)
    assert errs and np.median(errs) < 0.1


def test_pretrain_index_mixes_rooms_and_dishes(tmp_path: Path):
    from pipeline.train.pretrain import pretrain_index

    params = load_params()
    pc = params.train.pretrain
    pc.n_rooms, pc.n_dishes, pc.width, pc.height, pc.val_fraction = 6, 3, 160, 120, 0.3
    params.data.workers = 1
    index = pd.read_csv(pretrain_index(params, tmp_path))
    assert sorted(index["scene"].unique()) == ["room", "table"]
    assert (index["scene"] == "room").sum() == 6 and (index["split"] == "val").sum() == 3
    assert (index["width"] == 160).all() and np.isfinite(index["volume_ml"]).all()


def test_pretrain_trains_nothing_when_stage0_is_a_real_checkpoint(tmp_path: Path, monkeypatch):
    """`model_cfg.<m>.pretrained` a hub id (the real run) or null: stage pretrain@ must not spend
    its ~40 min on a stage 0 nobody starts from. A committed stage 0 is left byte for byte; a
    model without one gets DVC's outputs with a note saying why they hold no training."""
    import json

    from pipeline.train.recipe import synthetic_stage0
    from stages import pretrain as stage

    assert not synthetic_stage0("depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf", "depth_anything_v2")
    assert synthetic_stage0("models/depth_anything_v2/pretrain", "depth_anything_v2")
    monkeypatch.setattr(stage, "REPO_ROOT", tmp_path)
    kept = tmp_path / "models/depth_anything_v2/pretrain"
    kept.mkdir(parents=True)
    (kept / "model.safetensors").write_bytes(b"weights")
    def skip(name: str, pretrained: str | None, out: Path) -> None:
        stage.skip_pretraining(name, pretrained, out, tmp_path / f"metrics/train/{name}_pretrain.json",
                               tmp_path / f"dvclive/{name}/pretrain")
    skip("depth_anything_v2", "depth-anything/x-hf", kept)
    assert sorted(p.name for p in kept.iterdir()) == ["model.safetensors"]
    out = tmp_path / "models/unidepth_v2/pretrain"
    skip("unidepth_v2", None, out)
    assert "not trained" in (out / "NOT_TRAINED.txt").read_text()
    m = json.loads((tmp_path / "metrics/train/unidepth_v2_pretrain.json").read_text())
    assert m["trained"] is False and (tmp_path / "dvclive/unidepth_v2/pretrain/plots/metrics").is_dir()
