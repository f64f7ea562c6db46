"""The release's vessel floor: how high above the rig plane (the surround) a plate's or a bowl's
inner floor lies when the scale platform under it is not seen in depth (glass).

Ingest's estimate (`floor_m` in rig_plane.json) is the median of every dish's lowest level, so a
release with many bowls of levelled food drags it up to the food. Here only evidence that bowls
cannot fake is used, per support kind:
- dishes whose platform is seen in depth: the platform's height above the surround, plus a
  bowl's typical floor (pipeline.masks.levelled.FLOOR_M);
- plates: a level floor with no wall around it and food standing on it, inside its hull,
  in at least a fifth of the dishes.
Food levelled in a bowl has neither. Without such evidence the vessels are taken to stand on the
surround itself (FLOOR_M above it), which is right for a release shot on a flat surface and
wrong for a release of only bowls on a glass platform (nothing in the depth tells those apart).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipeline import io
from pipeline.masks.levelled import FLOOR_M

if TYPE_CHECKING:
    from pipeline.masks.make import MaskSettings

MIN_DISHES = 1            # dishes of evidence needed (a two-dish sample release has one plate) ...
MIN_SHARE = 0.2          # ... and this share of the dishes sampled (a heap in a low-walled bowl
                         # can pass for food on a plate; real plates are most of a release)
PLATE_FOOD_M = 0.008      # food on a plate stands at least this high above its floor ...
PLATE_FOOD_SHARE = 0.02   # ... over at least this share of the dish


def dish_floor_evidence(depth: np.ndarray, K: np.ndarray, rig_plane: tuple[np.ndarray, float] | None,
                        seed: int = 0, max_tilt_deg: float | None = None) -> tuple[str, float] | None:
    """('platform', vessel floor above the surround) when the platform is seen, ('plate', its
    floor above the surround) for a plate with food on it, else None (a bowl, or nothing seen).
    `rig_plane` None (synthetic rig families): the dish's own surround plane."""
    from pipeline.data.rig import dish_rig_plane
    from pipeline.masks.rig import dish_geometry, plate_like

    if rig_plane is None:
        rig_plane = dish_rig_plane(depth, K, seed, max_tilt_deg)
        if rig_plane is None:
            return None
    g = dish_geometry(depth, K, rig_plane, seed)
    if g is None or g.plane_source != "release":
        return None
    if g.platform_seen:
        return "platform", g.base + FLOOR_M
    if g.level is None or not g.on_surround:
        return None
    return ("plate", g.base + g.level) if plate_like(g) else None


def release_floor(df: pd.DataFrame, cfg: MaskSettings, max_dishes: int) -> float | None:
    """The vessel floor (m above the rig plane) from up to `max_dishes` dishes spread over the
    release (the same sample ingest fits the plane on): the median of the platform evidence
    when any dish shows its platform, else of the plates' floors; None without either (the
    caller decides: a rig release stands on its surround, FLOOR_M; ingest's `floor_m`, the
    median of every dish's lowest level, is reported beside it, not used). With no release
    plane (synthetic rig families) each dish's own surround plane is used: a bowl on a glass
    platform then gets the platform height the other dishes show."""
    rows = df.to_dict("records")
    idx = np.unique(np.linspace(0, len(rows) - 1, min(max_dishes, len(rows))).astype(int)) if rows else []
    found: dict[str, list[float]] = {"platform": [], "plate": []}
    for i in idx:
        try:
            depth = io.read_dish_depth(rows[i], cfg.roots)
        except ValueError:
            continue   # the masks stage reports the dish itself
        ev = dish_floor_evidence(depth, io.K_from_row(rows[i]), cfg.rig_plane,
                                 max_tilt_deg=cfg.suspect.max_rig_tilt_deg)
        if ev is not None:
            found[ev[0]].append(ev[1])
    for kind in ("platform", "plate"):
        if len(found[kind]) >= max(MIN_DISHES, MIN_SHARE * len(idx)):
            return round(float(np.median(found[kind])), 5)
    return None   # no platform, no plate
