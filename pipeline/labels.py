"""GT volume labels: the volume under the measured depth over the mask, per dish.

The label is what the pipeline would compute from a perfect depth sensor; on synthetic
dishes it is compared with the analytic truth (`volume_ml_true`) so the label error of the
geometry and the masks is known before any model is trained.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from pipeline import io, suspect
from pipeline.config import Params, SuspectConfig, VolumeConfig
from pipeline.data.rig import tilt_deg
from pipeline.masks.support import Support, volume_above_support
from pipeline.parallel import map_dishes
from pipeline.volume_error import volume_metrics

DENSITY_OK = (0.4, 1.6)   # g/mL: real food (0.4-1.3) with some slack; labels.json counts outside


@dataclass
class LabelSettings:
    """What every per-dish label job needs: params `volume:` and `suspect:`, the data roots index
    paths may point into, and whether to also label with the ground-truth mask (synthetic dishes
    under non-GT masks: tells mask error from geometry error)."""
    volume: VolumeConfig = field(default_factory=VolumeConfig)
    suspect: SuspectConfig = field(default_factory=SuspectConfig)
    roots: list[Path] = field(default_factory=list)
    with_gt_mask: bool = False


def _support_of(row: dict) -> Support:
    """The support the masks stage found (masks.csv `support_json`); plane when absent."""
    text = row.get("support_json")
    return Support.from_json(text) if isinstance(text, str) and text else Support("plane")


def _label_one(job: tuple[dict, LabelSettings]) -> dict:
    row, cfg = job
    out = {"dish_id": row["dish_id"], "volume_ml": np.nan, "label_status": "ok",
           "support": row.get("support", "plane"), "suspect": row.get("suspect", "")}
    try:
        if row.get("mask_status", "ok") != "ok":
            raise ValueError(f"no usable mask ({row['mask_status']})")
        depth = io.read_dish_depth(row, cfg.roots)
        mask = io.read_mask(io.resolve(row["mask_path"], cfg.roots), shape=depth.shape)
        K = io.K_from_row(row)
        support = _support_of(row)
        vol = asdict(cfg.volume)
        res = volume_above_support(depth, mask, K, support, **vol)
        out["volume_ml"] = res.volume_ml
        out["plane_nz"] = float(res.plane_normal[2])
        out["n_holes"] = res.n_holes
        out["support"] = support.kind
        mass = float(row.get("mass_g", np.nan))
        out["suspect"] = suspect.join(suspect.label_reasons(
            res.volume_ml, mass, tilt_deg(res.plane_normal), support.kind != "plane",
            cfg.suspect), row.get("suspect", ""))
        if cfg.with_gt_mask and isinstance(row.get("gt_mask_path"), str) and row["gt_mask_path"]:
            gt_mask = io.read_mask(io.resolve(row["gt_mask_path"], cfg.roots), shape=depth.shape)
            out["volume_ml_gt_mask"] = volume_above_support(depth, gt_mask, K, support, **vol).volume_ml
    except ValueError as e:
        out["label_status"] = f"skipped: {e}"
    return out


def mass_sanity(volume_ml: pd.Series, mass_g: pd.Series) -> dict:
    """Labels against the scale (no GT volume on real data): implied density median/IQR,
    Spearman(volume, mass), dishes outside DENSITY_OK."""
    ok = volume_ml.notna() & (volume_ml > 0) & mass_g.notna() & (mass_g > 0)
    if not ok.any():
        return {"n_with_mass": 0}
    dens = mass_g[ok] / volume_ml[ok]
    q1, med, q3 = (float(x) for x in dens.quantile([0.25, 0.5, 0.75]))
    rho = float(spearmanr(volume_ml[ok], mass_g[ok]).statistic) if ok.sum() >= 3 else float("nan")
    return {"n_with_mass": int(ok.sum()),
            "density_g_per_ml": {"median": round(med, 4), "iqr": [round(q1, 4), round(q3, 4)]},
            "spearman_volume_mass": round(rho, 4) if np.isfinite(rho) else None,
            "n_density_outside_0.4_1.6": int(((dens < DENSITY_OK[0]) | (dens > DENSITY_OK[1])).sum())}


def plot_mass_vs_volume(index: pd.DataFrame, path) -> None:
    """plots/labels/mass_vs_volume.png: each dish's label against its mass, with density lines."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=110)
    mass = index.get("mass_g", pd.Series(np.nan, index=index.index))
    ok = index["volume_ml"].notna() & mass.notna() & (mass > 0)
    if ok.any():
        sus = index.get("suspect", pd.Series("", index=index.index)).fillna("").astype(str) != ""
        for sel, style in (((ok & ~sus), dict(c="tab:blue", label="label")),
                           ((ok & sus), dict(c="tab:red", marker="x", label="suspect"))):
            if sel.any():
                ax.scatter(index.loc[sel, "volume_ml"], mass[sel], s=14, **style)
        v = np.linspace(0, float(index.loc[ok, "volume_ml"].max()) * 1.1, 50)
        for rho in (0.4, 1.0, 1.6):
            ax.plot(v, rho * v, "--", lw=0.8, color="grey")
            ax.annotate(f"{rho} g/mL", (v[-1], rho * v[-1]), fontsize=7, color="grey")
        ax.set_xlabel("volume label (mL)")
        ax.set_ylabel("dish mass (g)")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no dish masses in this data source", ha="center", va="center")
        ax.set_axis_off()
    ax.set_title("volume labels against the scale")
    fig.tight_layout()
    with io.atomic_write(path, suffix=".png") as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def label_error(pred: pd.Series, true: pd.Series, prefix: str) -> dict:
    """The evaluation's volume metrics (pipeline.volume_error), for labels against the truth."""
    ok = pred.notna() & true.notna() & (true > 0)
    m = volume_metrics(true[ok].to_numpy(), pred[ok].to_numpy())
    return {f"{prefix}_{k.removeprefix('volume_')}": v if k == "n" else round(float(v), 4)
            for k, v in m.items()}


def usable_shares(labelled: pd.DataFrame) -> dict:
    """Share of dishes usable for training and evaluation (labelled, no suspect reason) per
    support kind and, on synthetic data, per scene family: what the flags drop is shown, not
    hidden (dropped food shapes bias the data set)."""
    ok = (labelled["label_status"] == "ok") & (labelled.get("suspect", pd.Series("", index=labelled.index))
                                                .fillna("").astype(str) == "")
    out = {"usable_share": round(float(ok.mean()), 4) if len(ok) else None}
    for col, key in (("support", "usable_share_per_support"), ("scene", "usable_share_per_family"),
                     ("support_plane", "usable_share_per_plane")):
        if col in labelled and labelled[col].notna().any():
            g = ok.groupby(labelled[col].fillna("none").replace("", "none"))
            out[key] = {str(k): {"n": int(v.size), "usable": round(float(v.mean()), 4)} for k, v in g}
    return out


def make_labels(df: pd.DataFrame, cfg: LabelSettings, workers: int = 1
                ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Label every dish; return (index of labelled dishes, skipped dishes with reasons, report)."""
    method = cfg.volume.method
    jobs = [(r, cfg) for r in df.to_dict("records")]
    rows = map_dishes(_label_one, jobs, workers, f"labels ({method})")
    rows = pd.DataFrame(rows)   # its support / suspect replace the masks stage's
    df = df.drop(columns=[c for c in rows.columns if c != "dish_id" and c in df.columns])
    labelled = df.merge(rows, on="dish_id", how="left", validate="one_to_one")
    ok = labelled["label_status"] == "ok"
    index, skipped = labelled[ok].reset_index(drop=True), labelled[~ok].reset_index(drop=True)
    report = {"method": method, "n_dishes": len(labelled), "n_labelled": int(ok.sum()),
              "n_skipped": int((~ok).sum()),
              "n_per_split": {s: int((index["split"] == s).sum()) for s in ("train", "val", "test")},
              **suspect.count(index.get("suspect", pd.Series(dtype=str))),
              "support": index.get("support", pd.Series(dtype=str)).value_counts().to_dict()}
    report.update(usable_shares(labelled))
    if "mass_g" in index and index["mass_g"].notna().any():   # Nutrition5k: labels vs the scale
        report.update(mass_sanity(index["volume_ml"], index["mass_g"]))
    if "volume_ml_true" in index and index["volume_ml_true"].notna().any():
        report.update(label_error(index["volume_ml"], index["volume_ml_true"], "label"))
        if "volume_ml_gt_mask" in index:
            report.update(label_error(index["volume_ml_gt_mask"], index["volume_ml_true"],
                                      "label_gt_mask"))
    return index, skipped, report


def labels_from_files(split_csv: Path, masks_csv: Path, p: Params, roots: list[Path]
                      ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The labels stage on the files earlier stages wrote (split.csv, the masks stage's
    masks.csv): (index, skipped, report). One entry for the stage and the benches."""
    split = io.read_index(split_csv, required=["dish_id", "split", "depth_path", "fx", "fy", "cx", "cy"])
    try:
        masks = pd.read_csv(masks_csv, dtype={"dish_id": str})
    except (OSError, pd.errors.ParserError) as e:
        raise ValueError(f"{masks_csv}: cannot read the masks table ({e})") from e
    df = split.merge(masks, on="dish_id", how="left", validate="one_to_one")
    df["mask_status"] = df["mask_status"].fillna(f"missing from {io.rel_to_repo(masks_csv)}")
    cfg = LabelSettings(p.volume, p.suspect, roots, with_gt_mask=p.masks.method != "gt")
    return make_labels(df, cfg, workers=p.data.workers)
