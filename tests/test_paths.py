"""The repository's file layout is named once (pipeline.paths): dvc.yaml declares the same paths,
and no stage script spells one itself."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline import paths

REPO = Path(__file__).resolve().parent.parent
LAYOUT = {k: v for k, v in vars(paths).items() if k.isupper() and isinstance(v, Path)}
_TOP = "data|metrics|plots|models|checkpoints|dvclive"
LITERAL = re.compile(rf"""["'](?:{_TOP})/[^"']*["']|/\s*["'](?:{_TOP})["']""")   # "data/..." or root / "models"
NOT_YET = {"pretrain.py"}   # still spells its paths (a change there re-runs the committed pretraining)


@pytest.mark.parametrize("name", sorted(LAYOUT))
def test_dvc_yaml_declares_the_layout(name: str) -> None:
    text = (REPO / "dvc.yaml").read_text()
    rel = LAYOUT[name]
    assert any(p.as_posix() in text for p in [rel, *rel.parents] if p != Path(".")), f"{name} = {rel}"


def test_stage_scripts_spell_no_repository_path() -> None:
    found = {f.name: LITERAL.findall(f.read_text()) for f in sorted((REPO / "stages").glob("*.py"))
             if f.name not in NOT_YET}
    assert not {k: v for k, v in found.items() if v}, found


def test_paths_follow_the_root(monkeypatch, tmp_path) -> None:
    from pipeline import io

    monkeypatch.setattr(io, "REPO_ROOT", tmp_path)
    assert paths.repo_path(paths.INDEX_CSV) == tmp_path / "data/dishes/index.csv"
    assert paths.model_dir("m", "stage2") == tmp_path / "models/m/stage2"
