"""Distillation (distill@<student>, evaluate_distill@<student>): the teacher term pulls a student toward the
teacher, unlabelled dishes reach no labelled term, both student runs start from the same weights, the stage
runs end to end on tiny real dishes (2-process DDP too), its rows are scored, paired and reported, and a
UniDepth teacher teaches a Depth-Anything student."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from test_training import make_index, small_params

from pipeline import config, io
from pipeline.config import as_params
from pipeline.models import build_model
from pipeline.models.inference import save_model
from pipeline.train.datamodule import DishDataset
from pipeline.train.losses import loss_terms

REPO = Path(__file__).resolve().parent.parent
TEACHER_HW, STUDENT_HW = (84, 112), (56, 84)


def distill_params(n_unlabelled: int = 2, teacher: str = "depth_anything_v2", **trainer) -> dict:
    """Tiny params: a random-init DA-V2 teacher at 84x112, its student at 56x84, one epoch per stage."""
    p = small_params()
    p["model_cfg"]["depth_anything_v2"]["size"] = list(TEACHER_HW)
    p["data"].update({"width": 224, "height": 168, "workers": 1})
    p["trainer"].update(trainer)
    p["distill"] = {"students": {"stu": {"teacher": teacher, "model": "depth_anything_v2",
                                         "model_cfg": {"size": list(STUDENT_HW)}}},
                    "n_unlabelled": n_unlabelled, "stage1": {"epochs": 1}, "stage2": {"epochs": 1},
                    "speed_images": 2}
    return p


def save_teacher(root: Path, params: dict, name: str = "depth_anything_v2", seed: int = 5) -> None:
    """A teacher's 'fine-tuned' weights where distill@ reads them (models/<teacher>/stage2)."""
    cfg = params["model_cfg"][name]
    save_model(build_model(name, cfg, seed=seed), root / "models" / name / "stage2", name, cfg)


def lit_pair(w_teacher: float = 1.0):
    """A distillation module: student 56x84 and a differently seeded teacher at 84x112 (random, tiny)."""
    from pipeline.train.distill import DistillLitModule
    p = as_params(distill_params())
    cfg = p.model_cfg["depth_anything_v2"]
    student = build_model("depth_anything_v2", {**cfg, "size": list(STUDENT_HW)}, seed=0)
    teacher = build_model("depth_anything_v2", cfg, seed=5)
    geom = {"method": "heightmap", "ring_px": 6, "cell_mm": 2.0, "seed": 0}
    return DistillLitModule(student, 2, p.loss, geom, p.train.recipe_random, teacher=teacher,
                            teacher_size=TEACHER_HW, w_teacher=w_teacher)


def dish_batch(index: Path, labelled: list[bool]) -> dict:
    """Real dishes at the student's size, as the data module gives them, with their `labelled` flags."""
    rows = pd.read_csv(index).head(len(labelled)).assign(labelled=labelled)
    ds = DishDataset(rows, STUDENT_HW, None, allowed_roots=[index.parent])
    return torch.utils.data.default_collate([ds[i] for i in range(len(ds))])


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    return make_index(Path(tmp_path_factory.mktemp("dishes")), n_train=4, n_val=2)


def test_teacher_term_pulls_the_student_toward_the_teacher(index: Path):
    lit = lit_pair()
    batch = dish_batch(index, [False, False])
    target = lit.teacher_depth(batch["image"], batch["K"])
    assert target.shape == (2, *STUDENT_HW) and torch.isfinite(target).all()
    opt = torch.optim.Adam([q for q in lit.model.parameters() if q.requires_grad], lr=2e-3)

    def gap() -> float:
        with torch.no_grad():
            return float((lit(batch["image"], batch["K"])["depth"] - target).abs().mean())
    before = gap()
    for _ in range(25):
        terms = lit.batch_terms(lit(batch["image"], batch["K"]), batch)
        assert set(terms) == {"teacher"}   # unlabelled dishes: the teacher term alone
        loss = lit.weights["w_teacher"] * terms["teacher"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert gap() < 0.5 * before, (before, gap())
    assert not any(q.grad is not None for q in lit.teacher.parameters())   # the teacher never trains


def test_unlabelled_dishes_reach_no_labelled_term(index: Path):
    lit = lit_pair()
    batch = dish_batch(index, [True, False])
    out = lit(batch["image"], batch["K"])
    terms = lit.batch_terms(out, batch)
    assert {"depth", "grad", "volume", "teacher"} <= set(terms)
    one = {k: batch[k][:1] for k in ("depth", "mask", "K", "volume_ml")}
    alone = loss_terms({"depth": out["depth"][:1], "K": out["K"][:1]}, one, lit.weights, lit.geom, False, lit.settings)
    for k, v in alone.items():   # the labelled terms are the labelled dish's alone
        torch.testing.assert_close(terms[k], v)
    assert torch.isnan(batch["volume_ml"][1])   # an unlabelled dish carries no label at all
    assert lit_pair(w_teacher=0.0).batch_terms(out, dish_batch(index, [False, False])) is None


def test_student_params_and_bad_students():
    from pipeline.students import student_params
    p = as_params(distill_params())
    sp = student_params(p, "stu")
    assert tuple(sp.model_cfg["depth_anything_v2"]["size"]) == STUDENT_HW
    assert sp.train.stage1.epochs == 1 and sp.train.stage2.epochs == 1
    assert tuple(p.model_cfg["depth_anything_v2"]["size"]) == TEACHER_HW   # the teacher's params untouched
    bad = distill_params()
    bad["distill"]["students"]["stu"]["teacher"] = "unidepth_v2"
    with pytest.raises(ValueError, match=r"distill.students.stu.teacher: 'unidepth_v2' is not in `models`"):
        as_params(bad)
    bad = distill_params()
    bad["distill"]["students"] = {"depth_anything_v2_direct": {"model_cfg": {"size": [56, 84]}}}
    with pytest.raises(ValueError, match="clashes"):
        as_params(bad)
    tiny = distill_params()
    tiny["model_cfg"]["depth_anything_v2"]["pretrained"] = "models/depth_anything_v2/pretrain"
    tiny["distill"]["students"]["stu"]["model_cfg"] = {"tiny": {"hidden_size": 32}}
    with pytest.raises(ValueError, match="keeps its own architecture"):
        student_params(as_params(tiny), "stu")


@pytest.mark.slow
def test_distill_and_evaluate_end_to_end(tmp_path: Path, monkeypatch):
    """distill@stu on 6 + 2 real dishes and 2 unlabelled ones, then evaluate_distill@stu; compare and the
    report pair the student with its teacher and with the same student fine-tuned directly."""
    from pipeline.evaluate.compare import compare_models, comparison_plan, read_table
    from pipeline.evaluate.names import BASELINE_NAMES, SETTINGS, STAGE0_SUFFIX
    from pipeline.evaluate.report import evaluated_names, render_report
    from pipeline.train.distill import run_distill
    from stages import evaluate_distill
    root = tmp_path / "proj"
    monkeypatch.setattr(io, "REPO_ROOT", root)
    monkeypatch.setattr(config, "REPO_ROOT", root)
    idx = make_index(root / "data" / "dishes", n_train=6, n_val=2, rel_root=root)
    raw = distill_params()
    save_teacher(root, raw)
    m = run_distill("stu", as_params(raw), idx)
    assert m["n_unlabelled"] == 2 and m["direct"]["n_train"] == 6 and m["distilled"]["n_train"] == 8
    runs = {t: json.loads((root / f"metrics/train/stu_{t}.json").read_text())
            for t in ("direct_stage1", "direct_stage2", "distilled_stage1", "distilled_stage2")}
    # the same start: both runs score the same weights on the same validation dishes before training
    assert runs["direct_stage1"]["val_start"] == runs["distilled_stage1"]["val_start"]
    assert "train/teacher" in runs["distilled_stage2"]["curve"][-1]
    assert "train/teacher" not in runs["direct_stage2"]["curve"][-1]
    assert runs["distilled_stage2"]["extra"]["teacher"] == "depth_anything_v2"
    assert not (root / "data/distill/stu").exists()   # the unlabelled dishes are removed after
    for v in ("direct", "distilled"):
        assert (root / f"models/stu/{v}_stage2/model.safetensors").is_file()

    # evaluate_distill: on the val split (this index has no test split), the given masks = the GT masks
    index = pd.read_csv(idx)
    io.write_csv(root / "data/dishes/index.csv", index.assign(gt_mask_path=index["mask_path"]))
    raw["eval"] = {**raw["eval"], "split": "val", "n_bootstrap": 200, "n_worst": 1}
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    evaluate_distill.main(["stu", "--params", str(root / "params.yaml")])
    ev = root / "metrics/eval"
    for n in ("stu", "stu_e2e", "stu_direct", "stu_direct_e2e"):
        assert json.loads((ev / f"{n}.json").read_text())["n_dishes"] == 2
    assert json.loads((ev / "stu.json").read_text())["kind"].startswith("distilled from `depth_anything_v2`")
    speed = json.loads((ev / "stu_speed.json").read_text())
    assert set(speed["models"]) == {"depth_anything_v2", "stu_direct", "stu"} and speed["n_images"] == 2
    for n, r in speed["models"].items():
        assert r["infer_ms_median"] > 0 and r["weights_mb"] > 0 and r["peak_mem_mb"] is not None, n
    assert speed["models"]["stu"]["size"] == list(STUDENT_HW)
    assert speed["models"]["depth_anything_v2"]["size"] == list(TEACHER_HW)

    # the teacher's own rows as evaluate@ writes them (here: its weights scored the same way)
    from pipeline.evaluate.scoring import MeasureConfig, evaluate_model, model_predictor, select_split
    from pipeline.models.inference import load_model
    p = as_params(raw)
    dishes = select_split(io.read_index(root / "data/dishes/index.csv"), "val", True)
    teacher = model_predictor(load_model(root / "models/depth_anything_v2/stage2"), TEACHER_HW)
    for setting in SETTINGS:
        evaluate_model("depth_anything_v2", teacher, dishes, MeasureConfig.from_params(p), p.eval, ev,
                       root / "plots/eval", setting=setting)
    available = {f.stem for f in ev.glob("*.json")}
    plan = comparison_plan(["depth_anything_v2"], available, BASELINE_NAMES, SETTINGS, STAGE0_SUFFIX,
                           students={"stu": "depth_anything_v2"})
    assert ("stu", "given", "stu", "depth_anything_v2") in plan and ("stu", "given", "stu", "stu_direct") in plan
    assert ("stu_direct", "end_to_end", "stu_direct_e2e", "depth_anything_v2_e2e") in plan
    models, _ = compare_models(plan, lambda n: read_table(ev / f"{n}.csv"), 200, 0)
    c = models["stu"]["given"]["vs_stu_direct"]
    assert c["n_dishes"] == 2 and c["mape_ci_low"] <= c["mape_diff"] <= c["mape_ci_high"]
    names = dict(evaluated_names(["depth_anything_v2"], raw["model_cfg"], (), {"stu": "depth_anything_v2"}))
    results = {n: json.loads((ev / f"{n}.json").read_text()) for n in names if (ev / f"{n}.json").is_file()}
    text = render_report(results, names, root / "metrics/report.md", root / "plots/eval",
                         compare={"n_bootstrap": 200, "seed": 0, "models": models}, speed={"stu": speed})
    assert "## Distillation" in text and "| `stu` | 56×84 |" in text
    assert "vs the same student fine-tuned directly (`stu_direct`)" in text
    lines = [ln for ln in text.splitlines() if ln.startswith(("- given masks: `stu` vs", "- end to end: `stu` vs"))]
    assert len(lines) == 4   # both references in both settings; a reference not beaten on MAPE is said so
    assert all(("does not beat" in ln) == ("**better** on MAPE" not in ln) for ln in lines)


def ddp_project(root: Path) -> Path:
    """pipeline/ + stages/ + tiny params (2 CPU processes, ddp) + 5 train / 3 val dishes + a teacher."""
    for d in ("pipeline", "stages"):
        shutil.copytree(REPO / d, root / d, ignore=shutil.ignore_patterns("__pycache__"))
    p = distill_params(accelerator="cpu", devices=2, strategy="ddp", threads=1)
    p["train"]["batch_size"] = 1
    (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    make_index(root / "data" / "dishes", n_train=5, n_val=3, rel_root=root)
    save_teacher(root, p)
    return root


@pytest.mark.slow
def test_distill_ddp_two_cpu_processes(tmp_path: Path):
    root = ddp_project(tmp_path / "proj")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    r = subprocess.run([sys.executable, "-m", "stages.distill", "stu"], cwd=root, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    runs = {t: json.loads((root / f"metrics/train/stu_{t}.json").read_text())
            for t in ("direct_stage1", "direct_stage2", "distilled_stage1", "distilled_stage2")}
    assert all(m["world_size"] == 2 for m in runs.values())
    assert runs["distilled_stage2"]["n_train"] == 7   # 5 labelled + 2 unlabelled, over both ranks
    # validation gathered from both ranks (the padded repeat counted once), the same start for both runs
    assert runs["distilled_stage2"]["val_reference_vs_fullres_label"]["n_dishes"] == 3
    assert runs["direct_stage1"]["val_start"] == runs["distilled_stage1"]["val_start"]
    summary = json.loads((root / "metrics/train/stu_distill.json").read_text())
    assert summary["teacher"] == "depth_anything_v2" and np.isfinite(summary["distilled"]["val_volume_ape"])
    assert "train_seconds" not in summary   # wall times are printed, never in a DVC metric
    assert (root / "models/stu/distilled_stage2/model.safetensors").is_file()


@pytest.mark.slow
def test_unidepth_teacher_teaches_a_depth_anything_student(tmp_path: Path, monkeypatch):
    """The other model as the teacher: a tiny UniDepth (given the true K, as evaluation gives it) teaches a
    Depth-Anything student. Runs in the UniDepth venv; skips, saying why, elsewhere."""
    from test_models import UD_CFG, UD_HW, _require_unidepth
    _require_unidepth()
    from pipeline.train.distill import run_distill
    root = tmp_path / "proj"
    monkeypatch.setattr(io, "REPO_ROOT", root)
    monkeypatch.setattr(config, "REPO_ROOT", root)
    idx = make_index(root / "data" / "dishes", n_train=4, n_val=2, rel_root=root)
    raw = distill_params(n_unlabelled=0, teacher="unidepth_v2")
    raw["models"] = ["depth_anything_v2", "unidepth_v2"]
    raw["model_cfg"]["unidepth_v2"] = {**UD_CFG, "size": list(UD_HW), "camera": "given"}
    save_teacher(root, raw, "unidepth_v2")
    m = run_distill("stu", as_params(raw), idx)
    assert m["teacher"] == "unidepth_v2" and m["teacher_size"] == list(UD_HW)
    curve = json.loads((root / "metrics/train/stu_distilled_stage2.json").read_text())["curve"][-1]
    assert np.isfinite(curve["train/teacher"]) and curve["train/teacher"] > 0


def test_dvc_yaml_declares_every_student_row_the_report_reads():
    """evaluate_distill@<student> declares every row json the report and compare read for a student (and
    its speed file); compare and report re-run when the students change."""
    from pipeline.evaluate.names import SPEED_SUFFIX
    from pipeline.evaluate.report import evaluated_names
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    students = {n: s["teacher"] for n, s in params["distill"]["students"].items()}
    assert students, "the default DAG distils a student"
    declared = {k for m in dvc["evaluate_distill"]["do"]["metrics"] for k in m}
    for st in students:
        have = {d.replace("${key}", st) for d in declared}
        rows = [n for n, _ in evaluated_names([], None, (), {st: students[st]}) if n.startswith(st)]
        assert len(rows) == 4 and all(f"metrics/eval/{n}.json" in have for n in rows)
        assert f"metrics/eval/{st}{SPEED_SUFFIX}.json" in have
    assert dvc["distill"]["foreach"] == dvc["evaluate_distill"]["foreach"] == "${distill.students}"
    assert "distill.students" in dvc["compare"]["params"] and "distill.students" in dvc["report"]["params"]


def test_no_unlabelled_dishes_on_nutrition5k(index: Path, tmp_path: Path, capsys):
    """Unlabelled dishes are rendered synthetic ones: on Nutrition5k none are added, and it is said."""
    from pipeline.train.distill import unlabelled_index
    raw = distill_params(n_unlabelled=4)
    raw["data"]["source"] = "nutrition5k"
    path, n = unlabelled_index(as_params(raw), index, tmp_path / "work")
    assert (path, n) == (index, 0) and not (tmp_path / "work").exists()
    assert "WARNING: distill.n_unlabelled = 4" in capsys.readouterr().out
