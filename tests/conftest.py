"""Shared fixtures: a throw-away copy of the DVC project to run real stages in."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def set_param(params: dict, dotted: str, value: object) -> None:
    keys = dotted.split(".")
    node = params
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value


@pytest.fixture
def dvc_project(tmp_path: Path):
    """Factory: copy pipeline/, stages/, dvc.yaml, params.yaml and the committed stage-0 checkpoints
    (models/<m>/pretrain, as a clone has them) into a fresh git+DVC repo, apply dotted param
    overrides, return its root. Run stages there with `dvc repro`."""
    def make(overrides: dict | None = None, name: str = "project") -> Path:
        root = tmp_path / name
        root.mkdir()
        for d in ("pipeline", "stages"):
            shutil.copytree(REPO / d, root / d, ignore=shutil.ignore_patterns("__pycache__"))
        for ckpt in (REPO / "models").glob("*/pretrain"):
            shutil.copytree(ckpt, root / ckpt.relative_to(REPO))
        shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        for k, v in (overrides or {}).items():
            set_param(params, k, v)
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        run = dict(cwd=root, check=True, capture_output=True)
        subprocess.run(["git", "init", "-q"], **run)
        subprocess.run(["dvc", "init", "-q"], **run)
        subprocess.run(["dvc", "config", "core.analytics", "false"], **run)
        return root
    return make


def dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    """Run a dvc command in `root`; on failure show its output in the assertion."""
    r = subprocess.run(["dvc", *args], cwd=root, capture_output=True, text=True)
    assert r.returncode == 0, f"dvc {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r
