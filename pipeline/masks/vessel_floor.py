"""The release's vessel floor: how high above the rig plane (the surround) a plate's or a bowl's
inner floor lies when the scale platform under it is not seen in depth (glass).

Ingest's estimate (`floor_m` in rig_plane.json) is the median of every dish's lowest level, so a
release with many bowls of levelled food drags it up to the food. Here only evidence that bowls
cannot fake is used, per support kind:
- dishes whose platform is seen in depth: the platform's height above the surround, plus a
  bowl's typical floor (pipeline.masks.levelled.FLOOR_M); one such dish suffices (a release of
  bowls with a camera pose per dish shows its platform rarely);
- plates: a level floor with no wall around it and food standing on it, inside its hull,
  in at least a fifth of the dishes.
Food levelled in a bowl has neither. Without such evidence the caller says where the vessels
stand: a fixed rig's on the surround itself (FLOOR_M above it), which is right for a release shot
on a flat surface; a synthetic rig family's nowhere (None: its bowls keep their bowl_floor flag).
Bowls cannot set the floor, but they can rule one out (`contradicted`): food lying below a
plates' floor (heaped bowls filled to the rim pass for plates with food), or rims standing
higher above the surround than any bowl is deep (a release of only bowls on a glass platform the
depth never sees, the real rig's). The floor is then unknown (None), not a guess 5 cm off.
A release whose plane does not fit its dishes (a camera pose per dish) is read like a synthetic
family, on each dish's own surround plane: the floor's height above the surround holds in any pose.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

from pipeline import io
from pipeline.masks.from_depth import dish_surround_plane
from pipeline.masks.levelled import FLOOR_M

if TYPE_CHECKING:
    from pipeline.masks.make import MaskSettings

MIN_DISHES = 1            # dishes of evidence needed (a two-dish sample release has one plate) ...
MIN_SHARE = 0.2          # ... and this share of the dishes sampled (a heap in a low-walled bowl
                         # can pass for food on a plate; real plates are most of a release)
VETO_LOW = 0.25           # a floor with food below it in this share of the dishes is not the floor
VETO_DEEP = 0.5           # ... nor one with rims too high above it for a bowl in this share


@dataclass
class DishView:
    """What one dish says about where its vessel stands, in m above the surround: `kind`
    'platform' (the platform is seen: `floor` is its height + a bowl's floor) or 'plate' (a
    plate with food on it: `floor` is its floor), else None; its lowest level surface
    (`level`) and its rim (`rim`, of radius `rim_r`), when seen."""
    kind: str | None = None
    floor: float | None = None
    level: float | None = None
    rim: float | None = None
    rim_r: float | None = None


def dish_view(depth: np.ndarray, K: np.ndarray, rig_plane: tuple[np.ndarray, float] | None,
              seed: int = 0, max_tilt_deg: float | None = None,
              surround_plane: tuple[np.ndarray, float] | None = None) -> DishView | None:
    """The DishView of one dish (None: no surround to measure from). `rig_plane` None
    (synthetic rig families): the dish's own surround plane (`surround_plane` when the caller
    has fitted it, else fitted here)."""
    from pipeline.masks.bowls import bowl_axis, rim_height
    from pipeline.masks.from_depth import inside_vessel
    from pipeline.masks.rig import dish_geometry, plate_like

    own = rig_plane is None
    if own:
        rig_plane = surround_plane if surround_plane is not None else \
            dish_surround_plane(depth, K, seed, max_tilt_deg)
        if rig_plane is None or inside_vessel(depth, K, rig_plane):
            return None
    g = dish_geometry(depth, K, rig_plane, seed, plane_is_dish=own)
    if g is None or g.plane_source != "release":
        return None
    view = DishView(level=None if g.level is None else g.base + g.level)
    if g.edge is not None:   # a dish stands on the base
        rim = rim_height(g)
        view.rim, view.rim_r = g.base + rim, bowl_axis(g, K, rim).radius
    if g.platform_seen:
        view.kind, view.floor = "platform", g.base + FLOOR_M
    elif g.level is not None and g.on_surround and plate_like(g):
        view.kind, view.floor = "plate", g.base + g.level
    return view


class Against(NamedTuple):
    """What a release's own dishes say against a vessel floor (food lies above its vessel's
    floor; no bowl is deeper than about a hemisphere, pipeline.masks.levelled.deeper_than_a_bowl)."""
    low: int         # dishes with a level surface more than FLOOR_TOL_M below the floor ...
    n_levels: int    # ... of the dishes with a level
    deep: int        # dishes whose rim stands further above the floor than any bowl is deep ...
    n_rims: int      # ... of the dishes with a rim

    @property
    def n_against(self) -> int:
        return self.low + self.deep


def against(floor: float, views: list[DishView]) -> Against:
    """What the release's dishes (`views`) say against the vessel floor `floor`."""
    from pipeline.masks.levelled import deeper_than_a_bowl
    from pipeline.masks.rig import FLOOR_TOL_M

    levels = [v.level for v in views if v.level is not None]
    rims = [(v.rim, v.rim_r) for v in views if v.rim is not None and v.rim_r]
    return Against(sum(lv < floor - FLOOR_TOL_M for lv in levels), len(levels),
                   sum(deeper_than_a_bowl(rim, floor, r) for rim, r in rims), len(rims))


def contradicted(floor: float, views: list[DishView]) -> bool:
    """A vessel floor the release's own dishes rule out (`against`): a level surface below it in
    VETO_LOW of them (heaped bowls filled to the rim pass for plates with food, their level far
    above the real floor), or a rim too high above it for a bowl in VETO_DEEP of them (the
    vessels stand on a platform the depth does not see)."""
    a = against(floor, views)
    return (a.n_levels > 0 and a.low >= VETO_LOW * a.n_levels) or (a.n_rims > 0 and a.deep >= VETO_DEEP * a.n_rims)


def densest_half(values: list[float]) -> float:
    """The median of the shortest interval holding half the values (the shorth): the rig's one
    floor height where the evidence clusters. A level taken for the platform is sometimes
    something standing on it (a plate's floor or a bowl's rim filling the frame's edge on a glass
    platform), scattered above the cluster; the plain median follows them up."""
    v = np.sort(np.asarray(values, float))
    k = (len(v) + 1) // 2
    widths = v[k - 1:] - v[:len(v) - k + 1]
    start = int(np.argmin(widths))
    return float(np.median(v[start:start + k]))


@dataclass
class ReleaseFloor:
    """The release's vessel floor (m above the rig plane; None: no evidence and no stated
    default), the evidence it came from, and the surround planes fitted on the way (synthetic:
    dish id -> its own plane or None), so the masks reuse them instead of fitting them again."""
    floor_m: float | None
    source: str = "none"      # 'platform' | 'plate': the evidence used; 'none': the caller's default;
                              # 'stated': the rig's stated floor (params nutrition5k.vessel_floor_m);
                              # 'contradicted': the dishes ruled out all (floor_m None)
    evidence: dict[str, int] = field(default_factory=dict)   # dishes showing each kind
    surround_planes: dict[str, tuple[np.ndarray, float] | None] = field(default_factory=dict)


def release_floor(df: pd.DataFrame, cfg: MaskSettings, max_dishes: int,
                  no_evidence_m: float | None, stated_m: float | None = None) -> ReleaseFloor:
    """The vessel floor (m above the rig plane) from up to `max_dishes` dishes spread over the
    release (the same sample ingest fits the plane on): the densest half of the platform evidence
    when a dish shows its platform, else of the plates' floors unless the dishes rule it out
    (`contradicted`); without either, of the rig's known floor `stated_m` (params
    `nutrition5k.vessel_floor_m`: its vessels stand on its platform, which the depth may never
    see, as in a release of only bowls) and `no_evidence_m` (a fixed rig's surround, FLOOR_M: a
    release shot on a flat surface) the one the fewest dishes speak against (`against`; the
    rig's on a tie), unless the dishes rule out both (then None). A synthetic rig family states
    None (a glass platform may hide under the vessel). Ingest's `floor_m`, the median of every dish's lowest level, is
    reported beside it, not used. With no release plane (synthetic rig families) each dish's
    own surround plane is used: a bowl on a glass platform then gets the platform height the
    other dishes show."""
    rows = df.to_dict("records")
    idx = np.unique(np.linspace(0, len(rows) - 1, min(max_dishes, len(rows))).astype(int)) if rows else []
    found: dict[str, list[float]] = {"platform": [], "plate": []}
    views: list[DishView] = []
    planes: dict[str, tuple[np.ndarray, float] | None] = {}
    for i in idx:
        try:
            depth = io.read_dish_depth(rows[i], cfg.roots)
        except ValueError:
            continue   # the masks stage reports the dish itself
        K = io.K_from_row(rows[i])
        surround = None
        if cfg.rig_plane is None:
            surround = planes[rows[i]["dish_id"]] = dish_surround_plane(depth, K, 0, cfg.suspect.max_rig_tilt_deg)
            if surround is None:
                continue
        view = dish_view(depth, K, cfg.rig_plane, max_tilt_deg=cfg.suspect.max_rig_tilt_deg,
                         surround_plane=surround)
        if view is not None:
            views.append(view)
            if view.kind is not None:
                found[view.kind].append(view.floor)
    counts = {k: len(v) for k, v in found.items()}
    if len(found["platform"]) >= MIN_DISHES:   # a platform seen is evidence no bowl can fake
        return ReleaseFloor(round(densest_half(found["platform"]), 5), "platform", counts, planes)
    if len(found["plate"]) >= max(MIN_DISHES, MIN_SHARE * len(idx)):
        floor = round(densest_half(found["plate"]), 5)
        if not contradicted(floor, views):
            return ReleaseFloor(floor, "plate", counts, planes)
    if no_evidence_m is None:
        return ReleaseFloor(None, "none", counts, planes)
    # the rig's floor or the surround: the one fewer dishes speak against (the rig's on a tie)
    left = [(f, src) for f, src in ((stated_m, "stated"), (no_evidence_m, "none"))
            if f is not None and not contradicted(f, views)]
    if not left:
        return ReleaseFloor(None, "contradicted", counts, planes)
    floor, source = min(left, key=lambda c: against(c[0], views).n_against)
    return ReleaseFloor(floor, source, counts, planes)
