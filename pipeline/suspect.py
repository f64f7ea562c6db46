"""Implausible masks and labels are flagged with a reason, not counted as ok.

A mask can be "valid" (non-empty, written) and still be wrong: a few specks of a scale frame on
a dish that weighs 178 g, a region glued to the image border, a support plane that no rig has.
Each check adds a reason to the dish's `suspect` column (masks.csv, then index.csv; reasons
joined by ';', '' = fine). `drop_suspect` leaves them out of training and evaluation
(params `suspect.exclude`, default on).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from pipeline.config import SuspectConfig, or_default
from pipeline.typed import build

REASONS = ("specks", "border", "support_inliers", "support_tilt", "density", "bowl_floor")
Settings = SuspectConfig | Mapping | None   # params `suspect:` (typed), a partial mapping, or defaults


def _cfg(cfg: Settings) -> SuspectConfig:
    return build(SuspectConfig, cfg, "suspect")


def border_fraction(mask: np.ndarray) -> float:
    """Share of the mask's outline that runs along the image border."""
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return 0.0
    inner = np.zeros_like(m)
    inner[1:-1, 1:-1] = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    outline = m & ~inner
    edge = np.zeros_like(m)
    edge[[0, -1], :] = edge[:, [0, -1]] = True
    return float((outline & edge).sum() / max(outline.sum(), 1))


def mask_reasons(mask: np.ndarray, mass_g: float, support_kind: str, inlier_fraction: float,
                 cfg: Settings = None, floor_guess_m: float | None = None,
                 floor_wall_colour: float | None = None,
                 uncertainty: float | None = None) -> list[str]:
    """Reasons a mask (and the support found with it) is implausible; [] when none.
    bowl_floor: food fills the bowl wall to wall, its floor was guessed from the bowl's shape
    more than `max_floor_guess_m` below what is seen (the label is an extrapolation), or the
    level surface taken for the bowl's floor matches the wall's colours less than
    `min_floor_wall_colour` (it is food filling the bowl, not the bare floor), or food levelled
    in a bowl was estimated with a relative `uncertainty` above `max_level_uncertainty`."""
    c = _cfg(cfg)
    out = []
    px = int(np.asarray(mask).sum())
    if np.isfinite(mass_g) and mass_g > 0 and px < c.min_mask_px:
        out.append("specks")
    if px and border_fraction(mask) > c.max_border_fraction:
        out.append("border")
    if support_kind != "plane" and np.isfinite(inlier_fraction) \
            and inlier_fraction < c.min_support_inliers:
        out.append("support_inliers")
    if (floor_guess_m is not None and floor_guess_m > c.max_floor_guess_m) or \
            floor_hidden(floor_wall_colour, c) or \
            (uncertainty is not None and uncertainty > c.max_level_uncertainty):
        out.append("bowl_floor")
    return out


def floor_hidden(floor_wall_colour: float | None, cfg: Settings = None) -> bool:
    """The level surface inside a bowl looks unlike its wall: food fills the bowl."""
    return floor_wall_colour is not None and floor_wall_colour < _cfg(cfg).min_floor_wall_colour


def label_reasons(volume_ml: float, mass_g: float, tilt_deg: float, rig: bool,
                  cfg: Settings = None) -> list[str]:
    """Reasons a volume label is implausible: a support plane tilted as no view of the scene
    is (the fixed rig: `max_rig_tilt_deg`), or mass/volume outside the wide density band."""
    c = _cfg(cfg)
    out = []
    if np.isfinite(tilt_deg) and tilt_deg > (c.max_rig_tilt_deg if rig else c.max_tilt_deg):
        out.append("support_tilt")
    return out + density_reason(volume_ml, mass_g, c)


def density_reason(volume_ml: float, mass_g: float, cfg: Settings = None) -> list[str]:
    """['density'] when a mass exists and mass/volume lies outside the (wide) band."""
    lo, hi = _cfg(cfg).density_g_ml
    if not (np.isfinite(mass_g) and mass_g > 0):
        return []
    if not (np.isfinite(volume_ml) and volume_ml > 0):
        return ["density"]
    return [] if lo <= mass_g / volume_ml <= hi else ["density"]


def join(reasons: list[str], previous: object = "") -> str:
    """';'-joined reasons, added to a previous entry (NaN / '' = none)."""
    old = [r for r in str(previous).split(";") if r and r != "nan"] if isinstance(previous, str) else []
    return ";".join(dict.fromkeys(old + reasons))


def count(series: pd.Series) -> dict:
    """{'n_suspect': dishes with any reason, 'suspect': {reason: dishes}} for a metrics file."""
    s = series.fillna("").astype(str)
    per = {r: int(s.str.split(";").apply(lambda x, r=r: r in x).sum()) for r in REASONS}
    return {"n_suspect": int((s != "").sum()), "suspect": per}


def drop_suspect(df: pd.DataFrame, exclude: bool | None = None) -> pd.DataFrame:
    """The rows with no suspect reason, unless `exclude` is False (params `suspect.exclude`,
    passed in by the training and evaluation stages; None: its default)."""
    exclude = or_default(SuspectConfig, exclude=exclude)
    if not exclude or "suspect" not in df.columns:
        return df
    return df[df["suspect"].fillna("").astype(str) == ""]
