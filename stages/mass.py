"""DVC stage `mass@<model>`: the model's predicted volumes (metrics/eval/<model>[_e2e].csv; the
test dishes those rows left out are predicted here) turned into masses by the train-split global
density and by the model's learned density head, plus the label volume through that head ->
metrics/eval/mass_<model>_{global,learned}[_e2e].{json,csv} and mass_<model>_oracle_measured.*"""
import numpy as np
import pandas as pd
from tqdm import tqdm

from pipeline import io
from pipeline.evaluate.mass import mass_table, scored_dishes, write_mass_row, write_mass_unavailable
from pipeline.evaluate.names import END_TO_END, GIVEN, SETTINGS, model_rows
from pipeline.evaluate.scoring import (
    NO_GIVEN_MASKS,
    MeasureConfig,
    given_mask_source,
    given_masks,
    inference_size,
    load_given_mask,
    load_inputs,
    model_predictor,
    predict_dish,
)
from pipeline.masks.from_depth import geometry_mask
from pipeline.mass import HEAD_DIR, HEAD_WEIGHTS, DensityHead, global_density, image_features, stage_inputs


def predicted_volumes(name: str, dishes: pd.DataFrame, predict, cfg: MeasureConfig, roots) -> dict:
    """setting -> (volume mL, failed, error) per dish: from the evaluate stage's table, and for the
    dishes it left out (suspect) predicted here the same way (`predict_dish`)."""
    out = {}
    for setting, sfx in SETTINGS.items():
        t = pd.read_csv(io.REPO_ROOT / "metrics/eval" / f"{name}{sfx}.csv", dtype={"dish_id": str})
        t = t.set_index("dish_id")
        vols, failed, errors = [], [], []
        for _, row in dishes.iterrows():
            if row["dish_id"] in t.index:
                r = t.loc[row["dish_id"]]
                vols.append(float(r["volume_ml_pred"]))
                failed.append(bool(r["failed"]))
                errors.append("" if pd.isna(r["error"]) else str(r["error"]))
                continue
            rgb, K = load_inputs(row, roots)
            try:
                given = load_given_mask(row, rgb.shape[:2], roots) if setting == GIVEN else None
                d = predict_dish(predict, rgb, K, setting, given, cfg)
                vols.append(d.volume_ml)
                failed.append(d.failed)
                errors.append(d.error)
            except ValueError as e:
                vols.append(0.0)
                failed.append(True)
                errors.append(str(e)[:200])
        out[setting] = (np.array(vols), np.array(failed), errors)
    return out


def learned_densities(head: DensityHead, model, dishes: pd.DataFrame, predict, cfg: MeasureConfig,
                      size, roots) -> dict[str, np.ndarray]:
    """Density per dish from the head, the features pooled over each setting's mask: the given
    (depth-free) mask, the mask cut from the model's own depth (end to end), the label's mask."""
    out = {k: np.full(len(dishes), np.nan) for k in (GIVEN, END_TO_END, "label")}
    has_given = given_masks(dishes)[0].str.len() > 0
    for i, (_, row) in enumerate(tqdm(dishes.iterrows(), total=len(dishes), desc="mass features", unit="dish")):
        rgb, K = load_inputs(row, roots)
        masks = {"label": io.read_mask(io.resolve(row["mask_path"], roots), shape=rgb.shape[:2])}
        masks[END_TO_END] = geometry_mask(predict(rgb, K), K, cfg.masks.min_height_mm, cfg.masks.min_area_px)
        if has_given.iloc[i]:
            masks[GIVEN] = load_given_mask(row, rgb.shape[:2], roots)
        feats = image_features(model, rgb, list(masks.values()), size)
        for k, f in zip(masks, feats):
            if masks[k].any():
                out[k][i] = float(head.predict(f)[0])
    return out


def main(argv: list[str] | None = None) -> None:
    name, p, index, train = stage_inputs(argv, __doc__)
    from pipeline.models.inference import load_model

    metrics_dir = io.REPO_ROOT / "metrics/eval"
    dishes = scored_dishes(index, p.eval.split, p.suspect.exclude)
    rows = model_rows(name)
    if dishes.empty:
        for r in rows:
            write_mass_unavailable(r, "no dish masses in this data source", metrics_dir, {})
        return
    rho = global_density(train)
    model = load_model(io.REPO_ROOT / "models" / name / "stage2")
    size, roots, cfg = inference_size(p, name), p.data_roots(), MeasureConfig.from_params(p)
    predict = model_predictor(model, size)
    vols = predicted_volumes(name, dishes, predict, cfg, roots)
    head_dir = io.REPO_ROOT / "models" / name / HEAD_DIR
    head = DensityHead.load(head_dir) if (head_dir / HEAD_WEIGHTS).is_file() else None
    dens = learned_densities(head, model, dishes, predict, cfg, size, roots) if head else {}
    sources = {GIVEN: given_mask_source(dishes[~dishes["dropped"]]) or f"unavailable: {NO_GIVEN_MASKS}",
               END_TO_END: "predicted_depth"}
    for setting, sfx in SETTINGS.items():
        v, failed, err = vols[setting]
        common = {"volume_source": f"{name}{sfx}", "mask_source": sources[setting]}
        if sources[setting].startswith("unavailable"):   # no depth-free masks: as the volume row
            for d in ("global", "learned"):
                write_mass_unavailable(f"mass_{name}_{d}{sfx}", NO_GIVEN_MASKS, metrics_dir, common)
            continue
        s = write_mass_row(f"mass_{name}_global{sfx}", mass_table(dishes, rho * v, v, rho, failed, err), metrics_dir,
                           {**common, "kind": "global density x predicted volume", "density_source": "global",
                            "global_density_g_ml": round(rho, 4)})
        keys = ("n_dishes", "mass_mae_pct_of_mean", "mass_mae_pct_of_mean_all")
        print(f"mass_{name}_global{sfx}", {k: s[k] for k in keys})
        row = f"mass_{name}_learned{sfx}"
        if head is None:
            write_mass_unavailable(row, f"{name} has no learned mass head", metrics_dir, common)
            continue
        d = dens[setting]
        no_mask = ~np.isfinite(d)
        s = write_mass_row(row, mass_table(dishes, d * v, v, d, failed | no_mask,
                                           [e or ("no mask" if nm else "") for e, nm in zip(err, no_mask)]),
                           metrics_dir, {**common, "kind": "learned density x predicted volume",
                                         "density_source": f"learned ({HEAD_DIR}, alpha {head.alpha:g})"})
        print(row, {k: s[k] for k in ("n_dishes", "mass_mae_pct_of_mean", "mass_mae_pct_of_mean_all")})
    row = f"mass_{name}_oracle_measured"
    if head is None:
        write_mass_unavailable(row, f"{name} has no learned mass head", metrics_dir, {})
        return
    lv = dishes["volume_ml"].to_numpy(float)
    s = write_mass_row(row, mass_table(dishes, dens["label"] * lv, lv, dens["label"]), metrics_dir,
                       {"kind": "oracle: label volume (measured depth) x learned density",
                        "density_source": f"learned ({HEAD_DIR})", "volume_source": "label (measured depth)",
                        "mask_source": "label"})
    print(row, {k: s[k] for k in ("n_dishes", "mass_mae_pct_of_mean", "mass_mae_pct_of_mean_all")})


if __name__ == "__main__":
    main()
