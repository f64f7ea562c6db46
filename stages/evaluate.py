"""DVC stage `evaluate@<model>`: the fine-tuned model (models/<model>/stage2) and its zero-shot
start (stage 0, `build_model` before any training) on the test split ->
metrics/eval/<model>{,_zeroshot}.{json,csv} and plots/eval/<model>{,_zeroshot}/."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline import io  # noqa: E402
from pipeline.evaluate import (EvalConfig, VolumeConfig, evaluate_model, inference_size,  # noqa: E402
                               model_predictor, select_split, zeroshot_seed)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model", help="a name from params.yaml `models:`")
    args = ap.parse_args(argv)
    p = io.load_params()
    name = args.model
    if name not in p.get("models", []):
        raise ValueError(f"model: {name!r} is not in params.yaml models {p.get('models')}")
    from pipeline.inference import load_model
    from pipeline.models import build_model

    ecfg, vcfg = EvalConfig.from_params(p), VolumeConfig.from_params(p)
    dishes = select_split(io.read_index(io.REPO_ROOT / "data/dishes/index.csv"), ecfg.split)
    size = inference_size(p, name)
    roots = io.data_roots(p)
    cfg = p["model_cfg"][name]
    runs = [(name, lambda: load_model(io.REPO_ROOT / "models" / name / "stage2")),
            (f"{name}_zeroshot", lambda: build_model(name, cfg, seed=zeroshot_seed(p)).eval())]
    for tag, make in runs:
        summary = evaluate_model(tag, model_predictor(make(), size), dishes, vcfg, ecfg,
                                 io.REPO_ROOT / "metrics/eval", io.REPO_ROOT / "plots/eval", roots)
        print(tag, {k: summary[k] for k in ("n_dishes", "n_failed", "volume_mape", "within_20pct",
                                            "depth_abs_rel", "height_mae_mm")})


if __name__ == "__main__":
    main()
