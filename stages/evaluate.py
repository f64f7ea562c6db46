"""DVC stage `evaluate@<model>`: the fine-tuned model (models/<model>/stage2) and its stage-0
start (`build_model` before any training: pretrained weights, or random init when
`pretrained` is null) on the test split, each with given masks and end to end ->
metrics/eval/<model>{,_stage0}{,_e2e}.{json,csv} and plots/eval/<model>{,_stage0}{,_e2e}/; with given
masks also each one's DIAGNOSTIC, its depth rescaled to the measured depth on the support ring ->
metrics/eval/<model>{,_stage0}_diag_ring_rescaled.{json,csv} (reads measured depth: never a model row).

With --zero-shot (stage `evaluate_zero_shot@<model>`, a model of `eval.zero_shot`): the model as
built from its model_cfg, never trained ("pretrained, not fine-tuned") -> metrics/eval/<model>{,_e2e}."""
import argparse

from pipeline import io
from pipeline.config import load_params
from pipeline.evaluate.names import DIAG_SUFFIX, GIVEN, SETTINGS, STAGE0_SUFFIX, stage0_kind, zero_shot_kind
from pipeline.evaluate.scoring import (
    MeasureConfig,
    evaluate_model,
    inference_size,
    model_predictor,
    select_split,
    stage0_seed,
)

SHOWN = ("mask_source", "n_dishes", "n_failed", "volume_mape", "volume_median_ape", "within_20pct", "depth_abs_rel",
         "ring_scale_ratio_median", "focal_rel_err")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model", help="a name from params.yaml `models:` (or `eval.zero_shot:` with --zero-shot)")
    ap.add_argument("--zero-shot", action="store_true", help="evaluate a model of eval.zero_shot, untrained")
    args = ap.parse_args(argv)
    p = load_params()
    name = args.model
    listed, key = (p.eval.zero_shot, "eval.zero_shot") if args.zero_shot else (p.models, "models")
    if name not in listed:
        raise ValueError(f"model: {name!r} is not in params.yaml {key} {listed}")
    from pipeline.models import build_model, config_for
    from pipeline.models.inference import load_model

    ecfg, vcfg = p.eval, MeasureConfig.from_params(p)
    dishes = select_split(io.read_index(io.REPO_ROOT / "data/dishes/index.csv"), ecfg.split,
                          p.suspect.exclude)
    size = inference_size(p, name)
    roots = p.data_roots()
    cfg = config_for(p, name)
    runs = [(name, lambda: load_model(io.REPO_ROOT / "models" / name / "stage2"), "fine-tuned (stage 2)"),
            (name + STAGE0_SUFFIX, lambda: build_model(name, cfg, seed=stage0_seed(p)).eval(), stage0_kind(cfg))]
    if args.zero_shot:
        runs = [(name, lambda: build_model(name, cfg, seed=stage0_seed(p)).eval(), zero_shot_kind(cfg))]
    for tag, make, kind in runs:
        predict = model_predictor(make(), size)
        for setting in SETTINGS:
            diagnostic = setting == GIVEN and not args.zero_shot
            summary = evaluate_model(tag, predict, dishes, vcfg, ecfg, io.REPO_ROOT / "metrics/eval",
                                     io.REPO_ROOT / "plots/eval", roots, setting, extra={"kind": kind},
                                     diagnostic=diagnostic)
            print(tag, setting, {k: summary.get(k) for k in SHOWN})
            if diagnostic:
                diag = io.read_json(io.REPO_ROOT / "metrics/eval" / f"{tag}{DIAG_SUFFIX}.json")
                print(tag + DIAG_SUFFIX, setting, {k: diag.get(k) for k in SHOWN})


if __name__ == "__main__":
    main()
