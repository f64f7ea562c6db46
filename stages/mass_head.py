"""DVC stage `mass_head@<model>`: the learned density head on the fine-tuned model's encoder
features, fitted on the train split only -> models/<model>/mass_head/ and
metrics/train/<model>_mass_head.json (train leave-one-out error, chosen alpha, global density)."""
import numpy as np
from tqdm import tqdm

from pipeline import io
from pipeline.cli import run_stage
from pipeline.evaluate.scoring import inference_size
from pipeline.mass import (
    HEAD_DIR,
    DensityHead,
    global_density,
    image_features,
    stage_inputs,
    train_densities,
    write_global_only,
)
from pipeline.paths import TRAIN_METRICS_DIR, model_dir, repo_path


def main(argv: list[str] | None = None) -> None:
    name, p, _, train = stage_inputs(argv, __doc__)
    from pipeline.models.inference import load_model

    dens = train_densities(train)
    rho = global_density(train)
    train = train.loc[dens.index]
    out_dir = model_dir(name, HEAD_DIR)
    model = load_model(model_dir(name, "stage2"))
    size, roots = inference_size(p, name), p.data_roots()
    with io.atomic_dir(out_dir) as tmp:
        try:
            X = [image_features(model, io.read_rgb(io.resolve(r["rgb_path"], roots)),
                                [io.read_mask(io.resolve(r["mask_path"], roots))], size)[0]
                 for _, r in tqdm(train.iterrows(), total=len(train), desc=f"mass head {name}", unit="dish")]
            head = DensityHead.fit(np.stack(X), dens.to_numpy(), p.mass.ridge_alphas, p.mass.density_range, rho)
            head.save(tmp, name, size)
            report = {"kind": "learned", "alpha": head.alpha, **head.info}
        except (NotImplementedError, ValueError) as e:   # no image features, or too few dishes to fit
            write_global_only(tmp, name, rho, str(e))
            report = {"kind": "global density only", "reason": str(e)}
    report = {"model": name, "global_density_g_ml": round(rho, 4), "n_train_with_mass": int(len(dens)), **report}
    io.write_json(repo_path(TRAIN_METRICS_DIR / f"{name}_mass_head.json"), report)
    print(report)


if __name__ == "__main__":
    run_stage(main)
