"""Camera views of a synthetic scene: random oblique views of a table dish that keep a floor ring
around the food visible (what the support-plane fit needs), the rig's overhead camera, and the
back-off that keeps every given point in frame."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pipeline.data.shapes import Camera

if TYPE_CHECKING:
    from pipeline.data.scene import Scene


def _free_along(c: tuple[float, float], r: float, w: np.ndarray, R: float) -> float:
    """Flat floor between an item's footprint circle (centre c, radius r) and the floor
    edge (radius R), walking from the item along the horizontal unit vector w."""
    cw = c[0] * w[0] + c[1] * w[1]
    s = -cw + np.sqrt(max(cw * cw - (c[0] ** 2 + c[1] ** 2) + R * R, 0.0))
    return float(s - r)


def _view_ok(sc: Scene, el: float, az: float, ring_m: float) -> bool:
    """Is a ring of floor around every item visible from (el, az)? Tall food overhangs the
    floor on the far side by h*cot(el); a rim or bowl wall hides wall_h*cot(el) of floor on
    the near side."""
    cot = 1.0 / np.tan(np.deg2rad(el))
    away = -np.array([np.cos(np.deg2rad(az)), np.sin(np.deg2rad(az))])  # away from camera
    for c, r, h in zip(sc.centres, sc.radii, sc.heights):
        if h * cot + ring_m > _free_along(c, r, away, sc.floor_r):
            return False
        if sc.wall_h * cot + ring_m > _free_along(c, r, -away, sc.floor_r):
            return False
    return True


def table_camera(rng: np.random.Generator, W: int, H: int, target: np.ndarray,
                 keep_in: np.ndarray, sc: Scene, ring_px: int) -> tuple[Camera, dict]:
    """Random view of the plate that keeps a floor ring around the food visible (`ring_px`
    wide at 640x480: params `volume.ring_px`, the ring the support-plane fit wants); backs off
    (then widens) until `keep_in` points are in frame."""
    el = rng.uniform(45, 90)
    az = rng.uniform(0, 360)
    dist = rng.uniform(0.20, 0.50)
    f640 = rng.uniform(480, 700)
    f = f640 * W / 640
    ring_m = 1.1 * ring_px * dist / f640
    for _ in range(40):  # raise the camera a little at a time, trying several azimuths
        ok = [a for a in (az + rng.uniform(0, 360, 6)) if _view_ok(sc, el, a, ring_m)]
        if ok:
            az = float(ok[0]) % 360
            break
        el = min(el + 2.0, 90.0)
    cx = (W - 1) / 2 + rng.normal(0, 0.01 * W)
    cy = (H - 1) / 2 + rng.normal(0, 0.01 * H)
    return _fit_in_frame(el, az, dist, f, target, keep_in, W, H, cx, cy)


def rig_camera(rng: np.random.Generator, W: int, H: int, target: np.ndarray,
               keep_in: np.ndarray, az: float) -> tuple[Camera, dict]:
    """The rig's overhead camera: ~0.41 m above the surrounding surface, nearly straight
    down, f ~ 616 px at 640x480 (RealSense D435 colour); image x along the rig's u axis."""
    el = rng.uniform(84, 90)
    height = rng.uniform(0.395, 0.425)
    dist = (height - target[2]) / np.sin(np.deg2rad(el))
    f = rng.uniform(595, 640) * W / 640
    cx = (W - 1) / 2 + rng.normal(0, 0.01 * W)
    cy = (H - 1) / 2 + rng.normal(0, 0.01 * H)
    return _fit_in_frame(el, az, dist, f, target, keep_in, W, H, cx, cy)


def _fit_in_frame(el: float, az: float, dist: float, f: float, target: np.ndarray,
                  keep_in: np.ndarray, W: int, H: int, cx: float, cy: float
                  ) -> tuple[Camera, dict]:
    """Back off (up to 0.5 m, then widen) until every `keep_in` point is in frame."""
    m = 4 * W / 640
    for _ in range(100):
        cam = Camera.look_at(el, az, dist, target=tuple(target), f_px=f, width=W, height=H,
                             cx=cx, cy=cy)
        uv, z = cam.project(keep_in)
        if (z > 0).all() and (uv[:, 0] >= m).all() and (uv[:, 0] <= W - 1 - m).all() \
                and (uv[:, 1] >= m).all() and (uv[:, 1] <= H - 1 - m).all():
            break
        if dist < 0.5:
            dist = min(dist * 1.06, 0.5)
        else:
            f *= 0.95
    else:
        raise RuntimeError("synthetic: could not fit the food in frame")
    return cam, dict(elevation_deg=float(el), azimuth_deg=float(az), distance_m=float(dist),
                     f_px=float(f), cx=float(cx), cy=float(cy))

