"""One typed configuration: params.yaml loads into dataclasses, bad keys/types name themselves."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.config import PARAMS_FILE, AugmentConfig, Params, load_params, params_from_dict
from pipeline.models import config_for


def test_repository_params_load_and_every_section_is_typed():
    p = load_params()
    assert isinstance(p, Params) and isinstance(p.augment, AugmentConfig)
    assert p.masks.min_height_mm == 4.0 and isinstance(p.masks.min_height_mm, float)
    assert p.suspect.density_g_ml == (0.2, 3.0) and p.train.recipe_random.lr_encoder > 0
    for name in p.models:
        assert config_for(p, name).size[0] % 14 == 0
    # round trip: the typed params written back as a mapping load to the same config
    assert params_from_dict(p.to_dict()) == p


def test_keys_left_out_take_the_one_default():
    p = params_from_dict({"volume": {"ring_px": 12}})
    assert p.volume.ring_px == 12 and p.volume.cell_mm == Params().volume.cell_mm


@pytest.mark.parametrize("raw, message", [
    ({"masks": {"min_heigt_mm": 4}}, r"params.yaml: masks.min_heigt_mm: unknown key \(did you mean 'min_height_mm'\?\)"),
    ({"masks": {"min_height_mm": "four"}}, r"params.yaml: masks.min_height_mm: expected a number, got 'four'"),
    ({"volume": {"method": "cols"}}, r"params.yaml: volume.method: expected one of \['heightmap', 'columns'\]"),
    ({"eval": {"size": [126]}}, r"params.yaml: eval.size: expected 2 values"),
    ({"train": {"stage1": {"epochs": 2.5}}}, r"params.yaml: train.stage1.epochs: expected an integer, got 2.5"),
    ({"data": {"noise": "yes"}}, r"params.yaml: data.noise: expected true or false"),
    ({"lossy": {}}, r"params.yaml: lossy: unknown key"),
    ({"models": ["depth_anything_v2", "midas"]}, r"params.yaml: models\[1\]: 'midas' has no model_cfg.midas block"),
])
def test_bad_params_name_the_key(raw, message):
    with pytest.raises(ValueError, match=message):
        params_from_dict(raw)


def test_bad_model_block_is_named_when_the_model_is_looked_up():
    p = params_from_dict({"model_cfg": {"depth_anything_v2": {"max_depht": 2}}})
    with pytest.raises(ValueError, match=r"params.yaml: model_cfg.depth_anything_v2.max_depht: unknown key"):
        config_for(p, "depth_anything_v2")
    with pytest.raises(ValueError, match=r"model_cfg.unidepth_v2: missing"):
        config_for(p, "unidepth_v2")


def test_params_file_errors(tmp_path: Path):
    with pytest.raises(ValueError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [1, 2\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_params(bad)
    raw = yaml.safe_load(PARAMS_FILE.read_text())
    raw["split"]["val_fraction"] = "a lot"
    other = tmp_path / "params.yaml"
    other.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=r"params.yaml: split.val_fraction: expected a number"):
        load_params(other)
