"""DVC stage `evaluate_distill@<student>`: the distilled student and the same student fine-tuned directly
(models/<student>/{distilled,direct}_stage2) on the test split, given masks and end to end, through the
scoring every model goes through -> metrics/eval/<student>{,_direct}{,_e2e}.{json,csv} and plots/eval/; and
the inference ms per image and peak memory of the teacher (models/<teacher>/stage2) and both students,
measured in this one process on the same test images -> metrics/eval/<student>_speed.json.

    python -m stages.evaluate_distill da2_small
"""
from pipeline import io
from pipeline.cli import run_stage, student_args
from pipeline.evaluate.names import DIRECT_KIND, DIRECT_SUFFIX, SETTINGS, SPEED_SUFFIX, distilled_kind
from pipeline.evaluate.scoring import (
    MeasureConfig,
    evaluate_model,
    inference_size,
    load_inputs,
    model_predictor,
    select_split,
)
from pipeline.paths import EVAL_METRICS_DIR, EVAL_PLOTS_DIR, EVAL_TIMING_DIR, INDEX_CSV, model_dir, repo_path

SHOWN = ("mask_source", "n_dishes", "n_failed", "volume_mape", "volume_median_ape", "within_20pct", "depth_abs_rel")


def main(argv: list[str] | None = None) -> None:
    args, p = student_args(__doc__, argv)
    from pipeline.evaluate.speed import device_note, speed_table
    from pipeline.models.inference import load_model
    from pipeline.students import student_config, student_dir, student_params
    name = args.student
    s = student_config(p, name)
    ecfg, vcfg = p.eval, MeasureConfig.from_params(p)
    dishes = select_split(io.read_index(repo_path(INDEX_CSV)), ecfg.split, p.suspect.exclude)
    size = inference_size(student_params(p, name), s.model)
    roots = p.data_roots()
    models = {s.teacher: (load_model(model_dir(s.teacher, "stage2")), inference_size(p, s.teacher))}
    for tag, variant, kind in ((name + DIRECT_SUFFIX, "direct", DIRECT_KIND),
                               (name, "distilled", distilled_kind(s.teacher))):
        model = load_model(student_dir(name, variant, 2))
        models[tag] = (model, size)
        for setting in SETTINGS:
            summary = evaluate_model(tag, model_predictor(model, size), dishes, vcfg, ecfg,
                                     repo_path(EVAL_METRICS_DIR), repo_path(EVAL_PLOTS_DIR), roots, setting,
                                     extra={"kind": kind, "teacher": s.teacher},
                                     timing_dir=repo_path(EVAL_TIMING_DIR))
            print(tag, setting, {k: summary.get(k) for k in SHOWN})
    n = min(p.distill.speed_images, len(dishes))
    inputs = [load_inputs(row, roots) for _, row in dishes.head(n).iterrows()]
    table = speed_table(models, inputs)
    out = {"student": name, "teacher": s.teacher, "n_images": n, "device": device_note(),
           "note": "measured in one process on the same test images; comparable within this file only",
           "models": table}
    io.write_json(repo_path(EVAL_METRICS_DIR) / f"{name}{SPEED_SUFFIX}.json", out)
    for tag, row in table.items():
        print(tag, row)


if __name__ == "__main__":
    run_stage(main)
