"""One typed configuration: params.yaml loads into dataclasses, bad keys/types name themselves."""
from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path
from typing import Annotated, Literal

import pytest
import yaml

from pipeline.config import (
    PARAMS_FILE,
    AugmentConfig,
    Params,
    PosFloat,
    RecipeConfig,
    VolumeConfig,
    _plain,
    load_params,
    or_default,
    params_from_dict,
)
from pipeline.models import config_for, model_config
from pipeline.typed import Increasing, NonEmpty


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
    ({"masks": {"min_heigt_mm": 4}},
     r"params.yaml: masks.min_heigt_mm: unknown key \(did you mean 'min_height_mm'\?\)"),
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


def _defaults() -> dict:
    """Params() as params.yaml would write it, each model block expanded to its config class's
    defaults."""
    d = Params().to_dict()
    d["model_cfg"] = {name: _plain(dataclasses.asdict(model_config(name, block)))
                      for name, block in d["model_cfg"].items()}
    return d


def _disagreements(yaml_node, default, where: str = "") -> list[str]:
    if isinstance(yaml_node, dict) and isinstance(default, dict):
        out = []
        for k in [*yaml_node, *(k for k in default if k not in yaml_node)]:
            key = f"{where}.{k}" if where else str(k)
            if k not in default:
                out.append(f"{key}: in params.yaml, not in the dataclasses")
            elif k not in yaml_node:
                out.append(f"{key}: in the dataclasses (default {default[k]!r}), not in params.yaml")
            else:
                out += _disagreements(yaml_node[k], default[k], key)
        return out
    if yaml_node != default or isinstance(yaml_node, bool) != isinstance(default, bool):
        return [f"{where}: params.yaml {yaml_node!r}, dataclass default {default!r}"]
    return []


def test_params_yaml_matches_dataclasses():
    """The dataclasses hold every default; params.yaml (DVC's, with its comments) states the same
    values, key for key, in every section (model blocks: their config classes)."""
    raw = yaml.safe_load(PARAMS_FILE.read_text())
    assert _disagreements(raw, _defaults()) == []
    loaded, default = load_params(), Params()
    assert dataclasses.replace(loaded, model_cfg={}) == dataclasses.replace(default, model_cfg={})
    assert all(config_for(loaded, m) == model_config(m, default.model_cfg[m]) for m in default.model_cfg)


def test_the_params_comparison_names_what_differs():
    d = _defaults()
    raw = yaml.safe_load(PARAMS_FILE.read_text())
    raw["loss"]["w_grad"] = 0.5
    del raw["split"]["test_fraction"]
    raw["volume"]["extra"] = 1
    raw["model_cfg"]["zoedepth"]["size"] = [240, 320]
    assert _disagreements(raw, d) == [
        "split.test_fraction: in the dataclasses (default 0.2), not in params.yaml",
        "volume.extra: in params.yaml, not in the dataclasses",
        "loss.w_grad: params.yaml 0.5, dataclass default 10.0",
        "model_cfg.zoedepth.size: params.yaml [240, 320], dataclass default [480, 640]"]


@pytest.mark.parametrize("key, value, message", [
    ("data.n_dishes", -5, r"params.yaml: data.n_dishes = -5: must be >= 1"),
    ("split.val_fraction", 1.5, r"params.yaml: split.val_fraction = 1.5: must be in \[0, 1\)"),
    ("split.val_fraction", 0.85, r"params.yaml: split.val_fraction = 0.85: val_fraction \+ test_fraction"),
    ("train.batch_size", 0, r"params.yaml: train.batch_size = 0: must be >= 1"),
    ("augment.scale", [1.2, 0.8], r"params.yaml: augment.scale = \[1.2, 0.8\]: must be \[low, high\]"),
    ("trainer.precision", "fp16", r"params.yaml: trainer.precision: expected one of \['auto', '32-true'"),
    ("eval.size", [100, 100], r"params.yaml: eval.size = \[100, 100\]: items must be >= 1 and a multiple of 14"),
    ("model_cfg.depth_anything_v2.size", [100, 140],
     r"params.yaml: model_cfg.depth_anything_v2.size = \[100, 140\]: items must be >= 1 and a multiple of 14"),
    ("model_cfg.zoedepth.size", [0, 640], r"params.yaml: model_cfg.zoedepth.size = \[0, 640\]: items must be >= 1"),
    ("nutrition5k.min_depth_m", 0.5, r"params.yaml: nutrition5k.min_depth_m = 0.5: must be below max_depth_m"),
    ("data.families", {"table": 0.0}, r"params.yaml: data.families = \{'table': 0.0\}: weights must not all be 0"),
    ("suspect.max_rig_tilt_deg", 95, r"params.yaml: suspect.max_rig_tilt_deg = 95.0: must be in \[0, 90\]"),
    ("eval.volume_bins", [100, 300, 200],
     r"params.yaml: eval.volume_bins = \[100.0, 300.0, 200.0\]: must be increasing"),
    ("loss.label_height_mm", [150, 150],
     r"params.yaml: loss.label_height_mm = \[150.0, 150.0\]: must be \[low, high\] with low < high"),
    ("trainer.devices", 0, r"params.yaml: trainer.devices = 0: must be a count >= 1"),
    ("augment.zoom", "off", r"params.yaml: augment.zoom: set per model by model_cfg.<model>.zoom; remove the key"),
])
def test_out_of_range_params_fail_at_load_naming_the_key(tmp_path: Path, key, value, message):
    raw = yaml.safe_load(PARAMS_FILE.read_text())
    node = raw
    *parents, last = key.split(".")
    for k in parents:
        node = node[k]
    node[last] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=message):
        load_params(path)


def _numbers_without_range(cls: type, where: str) -> list[str]:
    """Fields of numeric type (alone or in a tuple/list/dict) that carry no Range/Literal."""
    out = []
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls, include_extras=True)[f.name]
        nested = [a for a in (tp, *typing.get_args(tp)) if isinstance(a, type) and dataclasses.is_dataclass(a)]
        for sub in nested:
            out += _numbers_without_range(sub, f"{where}.{f.name}")
        if f.init and not nested and _has_number(tp):
            out.append(f"{where}.{f.name}")
    return out


def _has_number(tp) -> bool:
    """A number with no Range or Literal around it somewhere in the annotation."""
    if tp in (int, float):
        return True
    if typing.get_origin(tp) is Annotated:   # a bound on the value (not only order or length)
        bounded = any(not isinstance(m, (Increasing, NonEmpty)) for m in tp.__metadata__)
        return not bounded and _has_number(typing.get_args(tp)[0])
    if typing.get_origin(tp) is Literal:
        return False
    return any(_has_number(a) for a in typing.get_args(tp) if a is not Ellipsis)


def test_every_number_and_choice_has_a_range():
    assert _numbers_without_range(Params, "params") == []

    @dataclasses.dataclass
    class Loose:
        a: int = 1
        b: Annotated[tuple[float, ...], NonEmpty()] = (1.0,)
        c: PosFloat = 1.0
        d: dict[str, RecipeConfig] = dataclasses.field(default_factory=dict)
    assert _numbers_without_range(Loose, "x") == ["x.a", "x.b"]


def _config_calls(node: ast.AST) -> list[str]:
    return [ast.unparse(n) for n in ast.walk(node) if isinstance(n, ast.Call)
            and ast.unparse(n.func).split(".")[-1].endswith("Config")]


def test_no_module_snapshots_a_default_at_import():
    """Settings reach the library as arguments (None: the dataclass default, read when the function
    runs); a module constant or default argument built from a config class would not follow
    params.yaml or `dvc exp run -S`."""
    found = []
    for path in sorted((PARAMS_FILE.parent / "pipeline").rglob("*.py")):
        if path.name == "config.py":
            continue
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                found += [f"{path.name}:{node.lineno}: {c}" for c in _config_calls(node)]
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for d in [*node.args.defaults, *node.args.kw_defaults]:
                    found += [f"{path.name}:{node.lineno}: {c}" for c in _config_calls(d)] if d else []
    assert found == []


def test_or_default_reads_the_dataclass_when_called():
    assert or_default(VolumeConfig, ring_px=None) == VolumeConfig().ring_px
    assert or_default(VolumeConfig, method="columns", ring_px=None, cell_mm=3.0) == ("columns", 20, 3.0)


def test_exponent_numbers_as_dvc_writes_them(tmp_path) -> None:
    """`dvc exp run -S train.recipe_random.lr_encoder=5e-5` writes `5e-05`, which PyYAML reads as a
    string: a float field takes it as the number; a word still fails, naming the key."""
    raw = yaml.safe_load(PARAMS_FILE.read_text())
    raw["train"]["recipe_random"]["lr_encoder"] = "5e-05"
    raw["loss"]["w_volume"] = "1E1"
    other = tmp_path / "params.yaml"
    other.write_text(yaml.safe_dump(raw))
    p = load_params(other)
    assert p.train.recipe_random.lr_encoder == 5e-05 and p.loss.w_volume == 10.0
    raw["loss"]["w_volume"] = "e5"
    other.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=r"params.yaml: loss.w_volume: expected a number, got 'e5'"):
        load_params(other)


def test_stage0_trains_with_its_own_frozen_loss_and_augment():
    """Trying a fine-tuning idea (`-S loss.w_volume=0.2`, an augment range) must not reach the
    committed stage 0: it reads train.pretrain.loss/augment, and dvc.yaml's pretrain stage does
    not depend on the fine-tuning `loss` or `augment`."""
    p = params_from_dict({"loss": {"w_volume": 0.2}, "augment": {"rotate_deg": 30.0}})
    s0 = p.for_stage0()
    assert s0.loss == Params().train.pretrain.loss and s0.augment == Params().augment
    assert s0.loss.w_height == 0.0 and Params().loss.w_height > 0  # stage 0 predates the height term
    assert p.loss.w_volume == 0.2 and s0.train == p.train and s0.source == p.source
    repo = load_params()
    assert repo.train.pretrain.loss == Params().train.pretrain.loss and repo.train.pretrain.augment == Params().augment
    dvc = yaml.safe_load((PARAMS_FILE.parent / "dvc.yaml").read_text())["stages"]["pretrain"]["do"]["params"]
    assert "loss" not in dvc and "augment" not in dvc and "train.pretrain" in dvc
    with pytest.raises(ValueError, match=r"train.pretrain.augment.zoom"):
        params_from_dict({"train": {"pretrain": {"augment": {"zoom": "depth"}}}})
