"""Every library module a stage imports (transitively) is a declared dependency of that stage in
dvc.yaml, so editing it re-runs the stage; and every declared code dependency is imported, so
editing unrelated code does not. Hand-kept lists drifted once; this keeps them honest."""
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


def _lazy_names(init: Path) -> dict[str, str]:
    """A package's `_LAZY` table (name -> module it is loaded from on first access), if any."""
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def _imports(path: Path) -> set[Path]:
    """Project modules imported anywhere in `path` (function-level imports included), the modules
    behind a package's lazy names (`_LAZY`), and every module of the package for a module that
    imports its siblings by name (pkgutil + importlib: the model registry)."""
    out: set[Path] = set()
    text = path.read_text()
    if "pkgutil.iter_modules" in text and "importlib.import_module" in text:
        out |= set(path.parent.glob("*.py"))
    for node in ast.walk(ast.parse(text, filename=str(path))):
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
            init = _module_file(".".join(parts[:-1])) if len(parts) > 1 else None
            if init is not None and init.name == "__init__.py" and parts[-1] in (lazy := _lazy_names(init)):
                out.add(_module_file(lazy[parts[-1]]))
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
            for item in items or ["<none>"]:   # an empty list (eval.zero_shot: []) is still checked
                body = yaml.safe_dump(st["do"]).replace("${item}", str(item))
                do = yaml.safe_load(body)
                out.append((f"{name}@{item}", do["cmd"], do.get("deps", [])))
        else:
            out.append((name, st["cmd"], st.get("deps", [])))
    return out


@pytest.mark.parametrize("name,cmd,deps", _stages(), ids=lambda v: v if isinstance(v, str) else "")
def test_stage_declares_every_module_it_imports(name: str, cmd: str, deps: list[str]) -> None:
    declared = [REPO / d for d in deps]
    missing = sorted(str(f.relative_to(REPO)) for f in _closure(_script(cmd)) - {PACKAGE_INIT}
                     if not any(f == d or d in f.parents for d in declared))
    assert not missing, f"dvc.yaml stage {name!r} imports but does not declare: {missing}"


def _script(cmd: str) -> Path:
    return REPO / (re.search(r"python -m (\S+)", cmd).group(1).replace(".", "/") + ".py")


@pytest.mark.parametrize("name,cmd,deps", _stages(), ids=lambda v: v if isinstance(v, str) else "")
def test_stage_declares_no_code_it_does_not_import(name: str, cmd: str, deps: list[str]) -> None:
    """Each declared code path (a module, or a package listed whole) holds a module the stage
    imports: e.g. compare and report, which read only metrics files, do not re-run when the data,
    masks, models or geometry code changes."""
    used = _closure(_script(cmd))
    code = [d for d in deps if d.startswith(("pipeline/", "stages/"))]
    unused = [d for d in code if not any(f == REPO / d or REPO / d in f.parents for f in used)]
    assert not unused, f"dvc.yaml stage {name!r} declares code it does not import: {unused}"


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
