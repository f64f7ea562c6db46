"""DVC stage `evaluate@<model>`: the fine-tuned model (models/<model>/stage2) and its stage-0
start (`build_model` before any training: pretrained weights, or random init when
`pretrained` is null) on the test split, each with given masks and end to end ->
metrics/eval/<model>{,_stage0}{,_e2e}.{json,csv} and plots/eval/<model>{,_stage0}{,_e2e}/; the fine-tuned
model also end to end with its food-mask head's mask -> metrics/eval/<model>_e2e_head (written as
unavailable when model_cfg.<model>.mask_head is false; the stage-0 model has no head); with given
masks also each one's DIAGNOSTIC, its depth rescaled to the measured depth on the support ring ->
metrics/eval/<model>{,_stage0}_diag_ring_rescaled.{json,csv} (reads measured depth: never a model row).

With --zero-shot (stage `evaluate_zero_shot@<model>`, a model of `eval.zero_shot`): the model as
built from its model_cfg, never trained ("pretrained, not fine-tuned") -> metrics/eval/<model>{,_e2e}."""
from pipeline import io
from pipeline.cli import model_parser, parse_model_args, run_stage
from pipeline.evaluate.names import (
    DIAG_SUFFIX,
    END_TO_END_HEAD,
    GIVEN,
    HEAD_SUFFIX,
    MODEL_SETTINGS,
    SETTINGS,
    STAGE0_SUFFIX,
    stage0_kind,
    zero_shot_kind,
)
from pipeline.evaluate.scoring import (
    MeasureConfig,
    evaluate_model,
    inference_size,
    model_predictor,
    select_split,
    stage0_seed,
    write_unavailable,
)
from pipeline.paths import EVAL_METRICS_DIR, EVAL_PLOTS_DIR, EVAL_TIMING_DIR, INDEX_CSV, model_dir, repo_path

SHOWN = ("mask_source", "n_dishes", "n_failed", "volume_mape", "volume_median_ape", "within_20pct", "depth_abs_rel",
         "ring_scale_ratio_median", "focal_rel_err", "mask_iou_mean")


def main(argv: list[str] | None = None) -> None:
    args, p = parse_model_args(model_parser(__doc__, zero_shot=True), argv)
    name = args.model
    from pipeline.models import build_model, config_for
    from pipeline.models.base import depth_only
    from pipeline.models.inference import WEIGHTS_FILE, load_model

    ecfg, vcfg = p.eval, MeasureConfig.from_params(p)
    dishes = select_split(io.read_index(repo_path(INDEX_CSV)), ecfg.split, p.suspect.exclude)
    size = inference_size(p, name)
    roots = p.data_roots()
    cfg = config_for(p, name)
    # the stage-0 row is the network before fine-tuning: no food-mask head (stage 0 never has one)
    runs = [(name, lambda: load_model(model_dir(name, "stage2")), "fine-tuned (stage 2)"),
            (name + STAGE0_SUFFIX, lambda: build_model(name, depth_only(cfg), seed=stage0_seed(p)).eval(),
             stage0_kind(cfg))]
    if args.zero_shot:
        runs = [(name, lambda: build_model(name, cfg, seed=stage0_seed(p)).eval(), zero_shot_kind(cfg))]
    for i, (tag, make, kind) in enumerate(runs):
        model = make()
        predict = model_predictor(model, size)
        fine_tuned = i == 0 and not args.zero_shot
        for setting in MODEL_SETTINGS if fine_tuned else SETTINGS:
            extra = {"kind": kind}
            if setting == END_TO_END_HEAD:   # the fine-tuned model's own food-mask head, when it has one
                if not model.has_mask_head:
                    write_unavailable(tag + HEAD_SUFFIX, f"no food-mask head (model_cfg.{name}.mask_head: false)",
                                      repo_path(EVAL_METRICS_DIR), repo_path(EVAL_PLOTS_DIR), {"kind": kind})
                    continue
                predict = model_predictor(model, size, food_prob=True)
                extra["weights_sha256"] = io.sha256_file(model_dir(name, "stage2") / WEIGHTS_FILE)
            diagnostic = setting == GIVEN and not args.zero_shot
            summary = evaluate_model(tag, predict, dishes, vcfg, ecfg, repo_path(EVAL_METRICS_DIR),
                                     repo_path(EVAL_PLOTS_DIR), roots, setting, extra=extra, diagnostic=diagnostic,
                                     timing_dir=repo_path(EVAL_TIMING_DIR))
            print(tag, setting, {k: summary.get(k) for k in SHOWN})
            if diagnostic:
                diag = io.read_json(repo_path(EVAL_METRICS_DIR) / f"{tag}{DIAG_SUFFIX}.json")
                print(tag + DIAG_SUFFIX, setting, {k: diag.get(k) for k in SHOWN})


if __name__ == "__main__":
    run_stage(main)
