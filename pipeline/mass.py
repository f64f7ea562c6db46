"""Volume -> mass: mass = density x volume, the density global or read from the image.

Why: Nutrition5k scores mass, not volume, and two dishes of the same volume (rice against
salad) differ in weight by 2-3x. Two density models, both fitted on the train split only:

- global: the median over training dishes of mass / label volume (one number);
- learned: a ridge regression from the fine-tuned depth model's encoder features, pooled over
  the food mask (and over the whole image), to log density. Its train targets are each dish's
  mass / label volume; at test time it multiplies the predicted volume. Ridge, because a few
  hundred dishes against hundreds of feature dimensions need the shrinkage, and its
  leave-one-out error is closed-form, so alpha is chosen on the train split alone.

The head is saved beside the depth model (`models/<model>/mass_head/`: head.safetensors with
the arrays, head.json with the rest) and read back by `python -m pipeline.predict`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pandas as pd

from pipeline import io

if TYPE_CHECKING:
    from pipeline.config import Params

HEAD_DIR = "mass_head"
HEAD_WEIGHTS = "head.safetensors"
HEAD_META = "head.json"


def train_densities(train: pd.DataFrame) -> pd.Series:
    """mass / label volume (g/mL) of the training dishes that have both (index rows)."""
    if "split" in train.columns and (train["split"] != "train").any():
        raise ValueError("mass: rows outside the train split were passed (test leakage)")
    for c in ("mass_g", "volume_ml"):
        if c not in train.columns:
            raise ValueError(f"index: missing column `{c}` (mass needs dish masses and volume labels)")
    m, v = train["mass_g"].astype(float), train["volume_ml"].astype(float)
    ok = m.notna() & (m > 0) & v.notna() & (v > 0)
    return (m[ok] / v[ok]).rename("density_g_ml")


def global_density(train: pd.DataFrame) -> float:
    """The train split's median mass / label volume; ValueError when no dish has both."""
    d = train_densities(train)
    if d.empty:
        raise ValueError("index: no training dish with both a mass and a positive volume label")
    return float(d.median())


def stage_inputs(argv: list[str] | None, doc: str | None) -> tuple[str, Params, pd.DataFrame, pd.DataFrame]:
    """(model, params, index, train rows) of a per-model mass stage (`python -m stages.mass[_head] MODEL`);
    the train rows leave suspect dishes out while `suspect.exclude`."""
    from pipeline.cli import model_parser, parse_model_args
    from pipeline.paths import INDEX_CSV, repo_path
    from pipeline.suspect import drop_suspect

    args, p = parse_model_args(model_parser(doc), argv)
    index = io.read_index(repo_path(INDEX_CSV))
    return args.model, p, index, drop_suspect(index[index["split"] == "train"], p.suspect.exclude)


def pooled_features(fmap: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """One vector per image from a C x h x w feature map: the mean over the food mask (its area
    share in each cell as weight) next to the mean over the whole image (the context)."""
    c, h, w = fmap.shape
    wts = cv2.resize(np.asarray(mask, np.float32), (w, h), interpolation=cv2.INTER_AREA)
    total = float(wts.sum())
    flat = fmap.reshape(c, -1).astype(np.float64)
    food = flat @ wts.ravel() / total if total > 0 else flat.mean(1)
    return np.concatenate([food, flat.mean(1)])


def image_features(model, rgb: np.ndarray, masks: Sequence[np.ndarray], size: tuple[int, int]) -> list[np.ndarray]:
    """Pooled encoder features of one photo, one vector per mask (the image is encoded once)."""
    import torch

    h, w = int(size[0]), int(size[1])
    small = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if h < rgb.shape[0] else cv2.INTER_LINEAR)
    device = next(model.parameters()).device
    x = torch.from_numpy(small).to(device).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        fmap = model.image_features(x)[0].float().cpu().numpy()
    return [pooled_features(fmap, m) for m in masks]


@dataclass
class DensityHead:
    """log density = (x - mean) / std . coef + intercept, clipped to `density_range` (g/mL)."""
    mean: np.ndarray
    std: np.ndarray
    coef: np.ndarray
    intercept: float
    alpha: float
    density_range: tuple[float, float]
    global_density: float
    info: dict

    @classmethod
    def fit(cls, X: np.ndarray, density: np.ndarray, alphas: Sequence[float],
            density_range: tuple[float, float], global_density: float) -> DensityHead:
        """Ridge on standardised features, alpha with the smallest leave-one-out error."""
        X, y = np.asarray(X, np.float64), np.log(np.asarray(density, np.float64))
        if len(X) < 3 or X.shape[0] != y.shape[0]:
            raise ValueError(f"mass head: need >= 3 training dishes with features and a density, got {len(X)}")
        mean, std = X.mean(0), X.std(0) + 1e-8
        Z, yc = (X - mean) / std, y - y.mean()
        U, s, Vt = np.linalg.svd(Z, full_matrices=False)
        uy = U.T @ yc
        best = None
        for a in alphas:
            shrink = s ** 2 / (s ** 2 + a)
            fit = U @ (shrink * uy)
            hat = np.sum(U ** 2 * shrink, axis=1) + 1.0 / len(y)   # + the intercept's leverage
            loo = float(np.sqrt(np.mean(((yc - fit) / (1 - hat)) ** 2)))
            if best is None or loo < best[1]:
                best = (float(a), loo, Vt.T @ (s / (s ** 2 + a) * uy))
        alpha, loo, coef = best
        info = {"n_train": int(len(y)), "loo_rmse_log_density": round(loo, 4),
                "spread_rmse_log_density": round(float(np.std(y)), 4), "alphas": [float(a) for a in alphas]}
        return cls(mean, std, coef, float(y.mean()), alpha, tuple(density_range), float(global_density), info)

    def predict(self, X: np.ndarray) -> np.ndarray:
        z = (np.atleast_2d(np.asarray(X, np.float64)) - self.mean) / self.std
        return np.clip(np.exp(z @ self.coef + self.intercept), *self.density_range)

    def save(self, out_dir: Path, model_name: str, size: tuple[int, int]) -> None:
        from safetensors.numpy import save_file
        out_dir = Path(out_dir)
        with io.atomic_write(out_dir / HEAD_WEIGHTS) as tmp:
            save_file({"mean": self.mean, "std": self.std, "coef": self.coef}, str(tmp))
        io.write_json(out_dir / HEAD_META, {
            "kind": "ridge on pooled encoder features -> log density", "model": model_name,
            "size": list(size), "intercept": self.intercept, "alpha": self.alpha,
            "density_range": list(self.density_range), "global_density_g_ml": self.global_density, **self.info})

    @classmethod
    def load(cls, head_dir: Path) -> DensityHead:
        from safetensors.numpy import load_file
        head_dir = Path(head_dir)
        meta = io.read_json(head_dir / HEAD_META)
        try:
            arr = load_file(str(head_dir / HEAD_WEIGHTS))
            return cls(arr["mean"], arr["std"], arr["coef"], float(meta["intercept"]), float(meta["alpha"]),
                       tuple(meta["density_range"]), float(meta["global_density_g_ml"]), meta)
        except (OSError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{head_dir}: not a mass head ({type(e).__name__}: {e})") from None


def write_global_only(out_dir: Path, model_name: str, density: float, reason: str) -> None:
    """A model without image features still gets a head folder: the global density alone."""
    io.write_json(Path(out_dir) / HEAD_META, {"kind": "global density only", "model": model_name,
                                              "global_density_g_ml": density, "reason": reason})


def density_source(head_dir: Path, override: float | None, default: float
                   ) -> tuple[str, float | None, DensityHead | None]:
    """(description, fixed density or None, learned head or None) for `predict`: `--density`
    first, then the model's learned head, then its train-split global density, then `default`."""
    if override is not None:
        if not 0.05 <= override <= 3.0:
            raise ValueError(f"--density: {override} g/mL is not a food density (0.05-3)")
        return f"given (--density {override:g} g/mL)", float(override), None
    meta_path = Path(head_dir) / HEAD_META
    if not meta_path.is_file():
        return f"default {default:g} g/mL (no mass head at {head_dir})", float(default), None
    if (Path(head_dir) / HEAD_WEIGHTS).is_file():
        return f"learned head ({head_dir}), from the image", None, DensityHead.load(head_dir)
    meta = io.read_json(meta_path)
    d = float(meta["global_density_g_ml"])
    return f"train-split global density {d:.3f} g/mL ({meta_path})", d, None
