"""DVC stage `compare`: every model vs each baseline, vs its own stage 0 and vs each zero-shot model
(eval.zero_shot, which are compared with the baselines too), in each mask setting (end to end with the
food-mask head's mask also vs the model's cut from its predicted depth), each distilled student vs its
teacher and vs the same student fine-tuned directly (distill.students), on the same test
dishes (paired bootstrap 95 % intervals, Wilcoxon p), on the whole split and per scene-family group
(`models.<m>.<setting>.by_family.<rig|table>.vs_<other>`, synthetic) -> metrics/compare.json."""

from pipeline import io
from pipeline.cli import run_stage
from pipeline.config import load_params
from pipeline.evaluate.compare import compare_mass, compare_models, comparison_plan, mass_plan, read_table
from pipeline.evaluate.names import (
    BASELINE_NAMES,
    DIRECT_SUFFIX,
    END_TO_END,
    END_TO_END_HEAD,
    HEAD_SUFFIX,
    MODEL_SETTINGS,
    RIG,
    SETTINGS,
    STAGE0_SUFFIX,
    TABLE,
    mass_names,
)
from pipeline.paths import COMPARE_JSON, EVAL_METRICS_DIR, repo_path

FAMILIES_NOTE = (f"`{RIG}`: every scene family except `{TABLE}`, pooled (one overhead camera, as on Nutrition5k); "
                 f"`{TABLE}`: camera distance and focal length drawn per dish")
NO_FAMILIES_NOTE = "the per-dish tables carry no scene (Nutrition5k): everything is one group, the whole split"


def main() -> None:
    p = load_params()
    ecfg = p.eval
    eval_dir = repo_path(EVAL_METRICS_DIR)
    names = [m + s0 + s for m in p.models for s0 in ("", STAGE0_SUFFIX) for s in SETTINGS.values()]
    names += [m + HEAD_SUFFIX for m in p.models]   # unavailable (n_dishes 0) for a model without a mask head
    names += [z + s for z in p.eval.zero_shot for s in SETTINGS.values()] + list(BASELINE_NAMES)
    students = {n: st.teacher for n, st in p.distill.students.items()}   # distill@<student>
    names += [n + d + s for n in students for d in ("", DIRECT_SUFFIX) for s in SETTINGS.values()]
    available = set()
    for n in names:
        js = eval_dir / f"{n}.json"
        if not js.is_file():
            raise ValueError(f"{js}: metrics missing (run `dvc repro` for evaluate/baselines first)")
        if (io.read_json(js) or {}).get("n_dishes"):
            available.add(n)
    out: dict = {"n_bootstrap": ecfg.n_bootstrap, "seed": ecfg.seed}
    plan = comparison_plan(p.models, available, BASELINE_NAMES, MODEL_SETTINGS, STAGE0_SUFFIX, p.eval.zero_shot,
                           alternatives={END_TO_END_HEAD: END_TO_END}, students=students)
    out["models"], out["families"] = compare_models(plan, lambda n: read_table(eval_dir / f"{n}.csv"),
                                                    ecfg.n_bootstrap, ecfg.seed, log=print)
    out["families_note"] = FAMILIES_NOTE if out["families"] else NO_FAMILIES_NOTE
    out["mass"] = {}   # mass rows: MAE as a share of the mean mass, kept dishes and all (`_all`)
    have = {n for n in mass_names(p.models)
            if (eval_dir / f"{n}.json").is_file() and (io.read_json(eval_dir / f"{n}.json") or {}).get("n_all")}
    for model, setting, key, row, other in mass_plan(p.models, have):
        c = compare_mass(read_table(eval_dir / f"{row}.csv"), read_table(eval_dir / f"{other}.csv"),
                         ecfg.n_bootstrap, ecfg.seed)
        out["mass"].setdefault(model, {}).setdefault(setting, {})[key] = c
        print(f"{row} vs {other}: {c}")
    io.write_json(repo_path(COMPARE_JSON), out)


if __name__ == "__main__":
    run_stage(main)
