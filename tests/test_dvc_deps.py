"""Every library module a stage imports (transitively) is a declared dependency of that stage in
dvc.yaml, so editing it re-runs the stage. Hand-kept lists drifted once; this keeps them honest."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
PACKAGE_INIT = REPO / "pipeline" / "__init__.py"  # only a docstring (checked below): not a dependency


def _module_file(name: str) -> Path | None:
    """pipeline.a.b -> pipeline/a/b.py or pipeline/a/b/__init__.py (None if not ours)."""
    base = REPO.joinpath(*name.split("."))
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


def _imports(path: Path) -> set[Path]:
    """Project modules imported anywhere in `path` (function-level imports included)."""
    out: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] != "pipeline":
                continue
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # a package's __init__ runs on import too
                f = _module_file(".".join(parts[:i]))
                if f is not None:
                    out.add(f)
    return out


def _closure(script: Path) -> set[Path]:
    seen: set[Path] = set()
    todo = [script]
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        todo.extend(_imports(f) - seen)
    return seen


def _stages() -> list[tuple[str, str, list[str]]]:
    """(stage name, cmd, deps) with `${item}` expanded for foreach stages."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    out = []
    for name, st in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items():
        if "foreach" in st:
            items = params
            for key in re.fullmatch(r"\$\{([\w.]+)\}", st["foreach"]).group(1).split("."):
                items = items[key]
            for item in items:
                body = yaml.safe_dump(st["do"]).replace("${item}", str(item))
                do = yaml.safe_load(body)
                out.append((f"{name}@{item}", do["cmd"], do.get("deps", [])))
        else:
            out.append((name, st["cmd"], st.get("deps", [])))
    return out


@pytest.mark.parametrize("name,cmd,deps", _stages(), ids=lambda v: v if isinstance(v, str) else "")
def test_stage_declares_every_module_it_imports(name: str, cmd: str, deps: list[str]) -> None:
    script = REPO / (re.search(r"python -m (\S+)", cmd).group(1).replace(".", "/") + ".py")
    declared = [REPO / d for d in deps]
    missing = sorted(str(f.relative_to(REPO)) for f in _closure(script) - {PACKAGE_INIT}
                     if not any(f == d or d in f.parents for d in declared))
    assert not missing, f"dvc.yaml stage {name!r} imports but does not declare: {missing}"


def test_package_init_has_no_code() -> None:
    """pipeline/__init__.py is exempt above only while it holds nothing but its docstring."""
    body = ast.parse(PACKAGE_INIT.read_text()).body
    assert all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def test_ingest_tracks_the_rig_tilt_it_accepts_planes_by() -> None:
    """ingest keeps only rig planes tilted at most `suspect.max_rig_tilt_deg` (pipeline.data.rig):
    `dvc exp run -S suspect.max_rig_tilt_deg=10` must re-run it, not only the suspect flags."""
    script = (REPO / "stages" / "ingest.py").read_text()
    assert "p.suspect.max_rig_tilt_deg" in script
    params = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["ingest"]["params"]
    assert "suspect.max_rig_tilt_deg" in params
