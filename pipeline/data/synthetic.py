"""Procedural synthetic dishes: the embedded default data set.

Why: the pipeline must train, label and evaluate without any download, and synthetic
dishes come with exact truth (analytic volumes, clean depth, masks). Each dish is a
textured table (or the Nutrition5k rig's platform), a plate or bowl, and 1-4 non-overlapping
food items sitting on its flat floor, ray cast exactly by `pipeline.data.shapes`, then shaded
and, optionally, given RealSense-like depth noise and holes.

The jobs live in their own modules: `scene` (families, vessels, food layout, rig), `food_items`
(solids and looks of the food), `views` (cameras), `appearance` (colour and light), `sensor`
(the depth sensor model). `generate_dish` composes them; its steps draw from one rng in a fixed
order, so everything is a pure function of (seed, index).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.config import VolumeConfig
from pipeline.data.appearance import (
    draw_table_style,
    food_albedo,
    light,
    rig_albedo,
    steel_colour,
    table_albedo,
    vessel_albedo,
)
from pipeline.data.density import dish_mass
from pipeline.data.food_items import item_extent
from pipeline.data.rooms import ROOM_MAX_DEPTH_M, build_room, room_camera
from pipeline.data.scene import PART, Scene, build_scene, family_of, rig_platform_z
from pipeline.data.sensor import metal_holes, sensor_noise, stereo_shadow
from pipeline.data.shapes import Camera, Plane, Shape, render_full
from pipeline.data.textures import noise_texture
from pipeline.data.views import rig_camera, table_camera


@dataclass
class Dish:
    rgb: np.ndarray          # HxWx3 uint8
    depth: np.ndarray        # HxW float32 m, camera z-depth (noisy if noise=True, 0 = hole)
    depth_clean: np.ndarray  # HxW float32 m, exact
    mask: np.ndarray         # HxW bool, first hit is food
    items: np.ndarray        # HxW int16 item id (1..n), 0 elsewhere
    K: np.ndarray            # 3x3
    item_volumes_ml: list[float]
    item_kinds: list[str]
    volume_ml_true: float
    meta: dict = field(default_factory=dict)
    parts: np.ndarray | None = None  # HxW uint8 PART code of the first hit (surface, platform, ...)


def dish_scene(seed: int, index: int, families: dict[str, float] | None = None,
               family: str | None = None) -> Scene:
    """The geometry `generate_dish(seed, index, ...)` renders (drawn first from the same rng)."""
    fam = family or family_of(seed, index, families)
    return build_scene(np.random.default_rng([int(seed), int(index)]), fam, rig_platform_z(seed))


def generate_dish(seed: int, index: int, width: int = 640, height: int = 480,
                  noise: bool = True, families: dict[str, float] | None = None,
                  family: str | None = None, ring_px: int | None = None) -> Dish:
    """One synthetic dish, a pure function of (seed, index) and the family mixture
    `families` (None: the original `table` dishes; `family` forces one); geometry and
    volumes do not depend on the image size. `ring_px`: the floor ring (px at 640x480) that
    table views keep visible around the food, params `volume.ring_px` (None: its default)."""
    if width < 32 or height < 32:
        raise ValueError(f"width/height: image too small ({width}x{height}, need >= 32)")
    ring_px = VolumeConfig().ring_px if ring_px is None else ring_px
    fam = family or family_of(seed, index, families)
    rng = np.random.default_rng([int(seed), int(index)])
    W, H = int(width), int(height)
    sc = build_scene(rng, fam, rig_platform_z(seed))
    lay = _layout(sc)
    cam, cam_meta, target = _view(rng, sc, W, H, ring_px)
    hits = _cast(lay, cam)
    albedo, tex, table_kind = _albedo(rng, sc, lay, hits, H, W)
    rgb, L, ambient, metal = _photo(rng, sc, lay, hits, albedo, tex, target, H, W)
    depth_clean, depth, hole_frac = _measured_depth(rng, sc, hits, cam, metal, noise, H, W)
    mask, items, item_vols = _truth(sc, lay, hits.label, H, W)
    mass_g, densities = dish_mass(seed, index, sc.looks, item_vols)   # own random stream
    meta = dict(cam_meta, seed=int(seed), index=int(index), scene=fam, vessel=sc.vessel,
                floor_z_m=float(sc.floor_z), floor_radius_m=sc.floor_r,
                vessel_outer_radius_m=sc.outer_r, target=target.tolist(),
                n_items=len(sc.food), item_looks=sc.looks, table=table_kind,
                light_dir=L.tolist(), ambient=float(ambient), total_ml_target=sc.total_ml_target,
                mass_g=mass_g, item_densities_g_ml=densities.round(4).tolist(),
                R=cam.R.tolist(), t=cam.t.tolist())
    if fam != "table":
        meta.update(platform_z_m=sc.platform_z, metal=sc.metal, metal_hole_fraction=hole_frac,
                    **sc.info)
    return Dish(rgb=rgb, depth=depth, depth_clean=depth_clean, mask=mask, items=items,
                K=cam.K.copy(), item_volumes_ml=item_vols, item_kinds=sc.kinds,
                volume_ml_true=float(sum(item_vols)), meta=meta, parts=hits.parts.reshape(H, W))


def generate_room(seed: int, index: int, width: int = 320, height: int = 240) -> Dish:
    """One wide scene for the pretraining (`pipeline.data.rooms`): objects on a table or a rug,
    0.6-3 m away, a pure function of (seed, index). Exact depth as a synthetic data set gives
    it (no sensor model); floor farther than ROOM_MAX_DEPTH_M (near the horizon) reads 0."""
    rng = np.random.default_rng([int(seed), int(index), 7])
    W, H = int(width), int(height)
    sc = build_room(rng)
    lay = _layout(sc)
    cam, cam_meta, target = room_camera(rng, sc, W, H)
    hits = _cast(lay, cam)
    albedo, tex, table_kind = _albedo(rng, sc, lay, hits, H, W)
    rgb, L, ambient, _ = _photo(rng, sc, lay, hits, albedo, tex, target, H, W)
    depth = np.where(hits.hit & (hits.depth <= ROOM_MAX_DEPTH_M), hits.depth, 0.0).astype(np.float32)
    mask, items, item_vols = _truth(sc, lay, hits.label, H, W)
    meta = dict(cam_meta, seed=int(seed), index=int(index), scene="room", vessel=sc.vessel,
                floor_z_m=float(sc.floor_z), n_items=len(sc.food), table=table_kind,
                light_dir=L.tolist(), ambient=float(ambient), mass_g=float("nan"))
    return Dish(rgb=rgb, depth=depth, depth_clean=depth.copy(), mask=mask, items=items, K=cam.K.copy(),
                item_volumes_ml=item_vols, item_kinds=sc.kinds, volume_ml_true=float(sum(item_vols)),
                meta=meta, parts=hits.parts.reshape(H, W))


# --------------------------------------------------------------------------- the steps
@dataclass
class _Layout:
    """The scene's solids in render order: food first (labels < n_food are food), then the
    vessel, the rig extras and the surface plane (the last label)."""
    shapes: list[Shape]
    item_of_shape: np.ndarray  # item index of each food shape
    part_of_shape: np.ndarray  # PART code of every shape
    n_food: int


def _layout(sc: Scene) -> _Layout:
    shapes: list[Shape] = [s for item in sc.food for s in item]
    item_of_shape = np.array([i for i, item in enumerate(sc.food) for _ in item], np.int64)
    n_food = len(shapes)
    shapes += sc.vessel_shapes + sc.extras + [Plane(0.0)]
    part_of_shape = np.array([PART["food"]] * n_food + [PART["vessel_floor"]]
                             + [PART["vessel"]] * (len(sc.vessel_shapes) - 1) + sc.extra_parts
                             + [PART["surface"]], np.uint8)
    return _Layout(shapes, item_of_shape, part_of_shape, n_food)


def _view(rng: np.random.Generator, sc: Scene, W: int, H: int, ring_px: int
          ) -> tuple[Camera, dict, np.ndarray]:
    """(camera, its meta, look-at target): the food footprints + 15 mm and their tops (and on
    the rig the platform edge, rails and cable end) must be in frame."""
    ang = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    pts = []
    for item, (x, y), r in zip(sc.food, sc.centres, sc.radii):
        top = item_extent(item)[1][2]
        for zz in (sc.floor_z, top):
            rr = r + 0.015
            pts.append(np.stack([x + rr * np.cos(ang), y + rr * np.sin(ang),
                                 np.full_like(ang, zz)], 1))
    target = np.array([rng.normal(0, 0.008), rng.normal(0, 0.008), sc.floor_z])
    if sc.family == "table":
        cam, cam_meta = table_camera(rng, W, H, target, np.concatenate(pts), sc, ring_px)
    else:
        if sc.frame_pts is not None:
            pts.append(sc.frame_pts)
        cam, cam_meta = rig_camera(rng, W, H, target, np.concatenate(pts), sc.rig_az)
    return cam, cam_meta, target


@dataclass
class _Hits:
    """First hit of every camera ray; the flat arrays have H*W rows."""
    origin: np.ndarray   # (3,) camera centre
    dirs: np.ndarray     # (H*W, 3) ray directions (camera-z component 1)
    depth: np.ndarray    # HxW z-depth, inf = miss
    label: np.ndarray    # HxW shape index, -1 = miss
    hit: np.ndarray      # HxW bool
    P: np.ndarray        # (H*W, 3) hit points (the camera centre on a miss)
    normals: np.ndarray  # (H*W, 3) world normals
    parts: np.ndarray    # (H*W,) PART code


def _cast(lay: _Layout, cam: Camera) -> _Hits:
    origin, dirs = cam.rays()
    depth, label, normals = render_full(lay.shapes, cam, rays=(origin, dirs))
    hit = np.isfinite(depth)
    dflat, lflat = depth.ravel(), label.ravel()
    P = origin + np.where(np.isfinite(dflat), dflat, 0.0)[:, None] * dirs
    parts = np.where(lflat >= 0, lay.part_of_shape[np.maximum(lflat, 0)], PART["surface"])
    return _Hits(origin, dirs, depth, label, hit, P, normals.reshape(-1, 3), parts)


def _albedo(rng: np.random.Generator, sc: Scene, lay: _Layout, hits: _Hits, H: int, W: int
            ) -> tuple[np.ndarray, np.ndarray, str]:
    """(albedo (H*W, 3), the broad noise texture (steel reuses it), the surface kind)."""
    tex = noise_texture(rng)
    fine = noise_texture(rng, base=32, octaves=2)
    albedo = np.zeros((H * W, 3))
    rig = sc.family not in ("table", "room")
    style = draw_table_style(rng, rig)
    lflat, P = hits.label.ravel(), hits.P
    sel = lflat == len(lay.shapes) - 1
    albedo[sel] = table_albedo(P[sel], tex, style)
    sel = (lflat >= lay.n_food) & (lflat < lay.n_food + len(sc.vessel_shapes))
    albedo[sel] = vessel_albedo(rng, P[sel], tex)
    if rig:
        rig_albedo(rng, albedo, hits.parts, P, tex)
    if sc.family == "room":  # furniture around the support: painted or laminate
        sel = (lflat >= lay.n_food + len(sc.vessel_shapes)) & (lflat < len(lay.shapes) - 1)
        albedo[sel] = vessel_albedo(rng, P[sel], tex)
    for i, look in enumerate(sc.looks):
        sel = np.isin(lflat, np.nonzero(lay.item_of_shape == i)[0]) & (lflat < lay.n_food)
        albedo[sel] = food_albedo(P[sel], tex, fine, look, seed_off=0.37 * i)
    return albedo, tex, style["kind"]


def _photo(rng: np.random.Generator, sc: Scene, lay: _Layout, hits: _Hits, albedo: np.ndarray,
           tex: np.ndarray, target: np.ndarray, H: int, W: int
           ) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """(8-bit image, light direction, ambient, metal pixels (H*W,)): lit albedo, steel
    reflecting its surroundings, a little sensor noise."""
    L, ambient, shade, light_col = light(rng, lay.shapes[:lay.n_food], hits.P, hits.normals,
                                         hits.hit, target, sc.floor_z, H, W)
    rgb = albedo * shade[:, None] * light_col[None]
    metal = _metal_pixels(sc, hits.parts)
    steel = metal & (hits.parts != PART["rail"])  # rails: dark anodised, shaded like the rest
    if steel.any():  # steel: environment reflection + highlight instead of Lambert
        rgb[steel] = steel_colour(rng, hits.dirs[steel], hits.normals[steel], L, tex,
                                  shade[steel]) * light_col[None]
    rgb = rgb.reshape(H, W, 3) + 0.008 * rng.standard_normal((H, W, 3), dtype=np.float32)
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8), L, ambient, metal


def _metal_pixels(sc: Scene, parts: np.ndarray) -> np.ndarray:
    """Specular surfaces without depth in places: a steel vessel and the frame rails."""
    out = parts == PART["rail"]
    if sc.metal:
        out |= (parts == PART["vessel"]) | (parts == PART["vessel_floor"])
    return out


def _measured_depth(rng: np.random.Generator, sc: Scene, hits: _Hits, cam: Camera,
                    metal: np.ndarray, noise: bool, H: int, W: int
                    ) -> tuple[np.ndarray, np.ndarray, float]:
    """(exact depth, what the sensor reads, metal hole fraction). Through a clear (glass)
    platform top the depth is the bench's; the rig's D435 adds stereo occlusion bands
    beside raised objects and drops specular metal."""
    depth = hits.depth
    if sc.info.get("platform_glass"):
        see = hits.parts == PART["platform"]
        depth.ravel()[see] = -hits.origin[2] / hits.dirs[see, 2]
    depth_clean = np.where(hits.hit, depth, 0.0).astype(np.float32)
    hole_frac = 0.0
    if not noise:
        return depth_clean, depth_clean.copy(), hole_frac
    depth_noisy = sensor_noise(rng, depth_clean)
    if sc.family != "table":
        depth_noisy[stereo_shadow(depth_clean, cam.K[0, 0])] = 0.0
    if metal.any():
        hole_frac = float(rng.uniform(0.25, 0.38))
        view = hits.dirs / np.linalg.norm(hits.dirs, axis=1, keepdims=True)
        cosang = np.abs(np.sum(view * hits.normals, axis=1)).reshape(H, W)
        metal_holes(rng, depth_noisy, metal.reshape(H, W), cosang, hole_frac)
    return depth_clean, depth_noisy, hole_frac


def _truth(sc: Scene, lay: _Layout, label: np.ndarray, H: int, W: int
           ) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """(food mask, item ids (1..n, 0 elsewhere), exact item volumes in mL)."""
    mask = (label >= 0) & (label < lay.n_food)
    items = np.zeros((H, W), np.int16)
    items[mask] = (lay.item_of_shape[label[mask]] + 1).astype(np.int16)
    return mask, items, [float(sum(s.volume_m3 for s in item) * 1e6) for item in sc.food]
