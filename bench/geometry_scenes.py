"""Scene sets for bench/bench_geometry.py: the TUNED-ON set and a HELD-OUT set.

Why two sets: the geometry's constants were chosen on the tuned-on shapes (caps, domes,
cylinders, boxes, cones of 50-800 mL, alone and centred on a table). The held-out set is
drawn from its own generator with a fixed seed (HELDOUT_SEED, fixed before any tuning and
never tuned on): families, sizes and placements the tuned-on set lacks - small items
(5-50 mL), vertical walls (cylinders/boxes 8-40 mm high), thin flat items (3-8 mm), items on
plate floors and in bowls, and several items touching. 1-4 items of 5-400 mL per scene.

Depth noise (`realsense_noise`, a RealSense-D4xx-like model): Gaussian z noise with
sigma = 1 mm x (Z / 0.36 m)^2 (stereo error grows with Z^2), smoothed over 3x3 pixels
(stereo matching correlates neighbours) and re-scaled to that sigma, quantised to 0.1 mm
(16-bit PNG in 1e-4 m); holes: 2 % of pixels dropped at random, depth edges (a 4-neighbour
more than 5 mm away) dropped with probability 0.5, and 0-3 blobs of 3-8 px radius. Masks
stay exact.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.data.shapes import Box, Camera, Cone, Cylinder, Ellipsoid, Plane, Ring, Shape, SphereCap, render

DISTANCE_M = 0.36
F_PX = 615.0
HELDOUT_SEED = 20261111      # fixed before tuning; never changed to improve a number
HELDOUT_N = 40               # scenes (each rendered at every elevation)
TUNED_SIZES_ML = (50, 100, 200, 400, 800)


@dataclass
class Scene:
    name: str
    food: list[Shape]        # food solids (their volumes are the truth)
    props: list[Shape]       # support: table plane, plate, bowl (not food)
    azimuth: float

    @property
    def true_ml(self) -> float:
        return float(sum(s.volume_m3 for s in self.food) * 1e6)

    def render(self, elevation: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(float32 depth, exact food mask, K) at one elevation."""
        cam = Camera.look_at(elevation, self.azimuth, DISTANCE_M, f_px=F_PX)
        depth, label = render(self.food + self.props, cam)
        return depth, (label >= 0) & (label < len(self.food)), cam.K


# --------------------------------------------------------------------------- tuned-on set
def _cap(v: float) -> SphereCap:
    r = (v / (np.pi * 0.5 * (3 + 0.25) / 6)) ** (1 / 3)
    return SphereCap(0.0, 0.0, r, 0.5 * r)


def _dome(v: float) -> SphereCap:
    r = (v / (np.pi * 0.9 * (3 + 0.81) / 6)) ** (1 / 3)
    return SphereCap(0.0, 0.0, r, 0.9 * r)


def _cyl(v: float) -> Cylinder:
    r = (v / (np.pi * 0.6)) ** (1 / 3)
    return Cylinder(0.0, 0.0, r, 0.6 * r)


def _box(v: float) -> Box:
    s = (v / (0.8 * 0.5)) ** (1 / 3)
    return Box(0.0, 0.0, s, 0.8 * s, 0.5 * s, yaw=0.4)


def _cone(v: float) -> Cone:
    r = (v / (np.pi * 0.8 / 3)) ** (1 / 3)
    return Cone(0.0, 0.0, r, 0.8 * r)


TUNED_SHAPES = {"cap": _cap, "dome": _dome, "cylinder": _cyl, "box": _box, "cone": _cone}


def tuned_scenes(sizes=TUNED_SIZES_ML) -> list[Scene]:
    """One centred item on a table, azimuth 30 deg: what the constants were tuned on."""
    return [Scene(f"{k}{ml}", [make(ml * 1e-6)], [Plane()], 30.0)
            for k, make in TUNED_SHAPES.items() for ml in sizes]


# --------------------------------------------------------------------------- held-out set
def _item(rng: np.random.Generator, family: str, x: float, y: float, z0: float,
          max_r: float) -> Shape:
    """One food solid of a family at (x, y) on z0, footprint radius at most max_r."""
    for _ in range(50):
        if family == "small":
            v = rng.uniform(5, 50) * 1e-6
            kind = rng.choice(["cap", "cyl", "box", "cone", "ell"])
            hr = rng.uniform(0.3, 0.9)                # height / radius
        elif family == "wall":
            v = np.exp(rng.uniform(np.log(7), np.log(400))) * 1e-6
            kind = rng.choice(["cyl", "box"])
            hz = rng.uniform(0.008, 0.040)
        elif family == "flat":
            v = np.exp(rng.uniform(np.log(7), np.log(120))) * 1e-6
            kind = rng.choice(["cyl", "box", "ell"])
            hz = rng.uniform(0.003, 0.008)
        else:  # "any": mounds and cones of mid size
            v = np.exp(rng.uniform(np.log(7), np.log(400))) * 1e-6
            kind = rng.choice(["cap", "cone", "ell", "cyl", "box"])
            hr = rng.uniform(0.25, 0.9)
        if family in ("wall", "flat"):
            hr = None
        s = _make(rng, kind, v, hr, hz if hr is None else None, x, y, z0)
        if _radius(s) <= max_r:
            return s
    return _make(rng, "cap", 5e-6, 0.5, None, x, y, z0)


def _make(rng, kind: str, v: float, hr, hz, x: float, y: float, z0: float) -> Shape:
    """A solid of volume v with height/radius hr (or absolute height hz)."""
    if kind == "cap":
        hr = hr if hr is not None else 0.5
        r = (v / (np.pi * hr * (3 + hr * hr) / 6)) ** (1 / 3)
        return SphereCap(x, y, r, hr * r, z0=z0)
    if kind == "cone":
        r = (v / (np.pi * hr / 3)) ** (1 / 3)
        return Cone(x, y, r, hr * r, z0=z0)
    if kind == "ell":
        q = rng.uniform(0.6, 1.0)                     # b / a
        if hz is None:
            a = (v / (2 / 3 * np.pi * q * hr)) ** (1 / 3)
            c = hr * a
        else:
            c = hz
            a = np.sqrt(v / (2 / 3 * np.pi * q * c))
        return Ellipsoid(x, y, a, q * a, c, yaw=rng.uniform(0, np.pi), z0=z0)
    if kind == "cyl":
        if hz is None:
            r = (v / (np.pi * hr)) ** (1 / 3)
            hz = hr * r
        else:
            r = np.sqrt(v / (np.pi * hz))
        return Cylinder(x, y, r, hz, z0=z0)
    q = rng.uniform(0.4, 1.0)                         # box: sy / sx
    if hz is None:
        s = (v / (q * hr * 0.5)) ** (1 / 3)
        hz = hr * 0.5 * s
    else:
        s = np.sqrt(v / (q * hz))
    return Box(x, y, s, q * s, hz, yaw=rng.uniform(0, np.pi), z0=z0)


def _radius(s: Shape) -> float:
    """Footprint radius (circumscribed circle) of a solid."""
    if isinstance(s, Box):
        return float(np.hypot(s.sx, s.sy) / 2)
    if isinstance(s, Ellipsoid):
        return float(max(s.a, s.b))
    return float(s.radius)


def _moved(s: Shape, x: float, y: float) -> Shape:
    s.cx, s.cy = x, y
    if isinstance(s, SphereCap):
        s.__post_init__()
    return s


def _place(rng, items: list[Shape], touching: bool, spread: float) -> list[Shape]:
    """Non-overlapping placement: touching = each item tangent (circumscribed circles) to
    one placed before it; otherwise scattered with a 5-25 mm gap."""
    out: list[Shape] = []
    for s in items:
        r = _radius(s)
        for _ in range(200):
            if not out:
                x, y = rng.uniform(-0.2, 0.2, 2) * spread
            else:
                p = out[rng.integers(len(out))]
                gap = 0.0 if touching else rng.uniform(0.005, 0.025)
                ang = rng.uniform(0, 2 * np.pi)
                dist = _radius(p) + r + gap
                x, y = p.cx + dist * np.cos(ang), p.cy + dist * np.sin(ang)
            if np.hypot(x, y) + r > spread:
                continue
            if all(np.hypot(x - q.cx, y - q.cy) >= _radius(q) + r - 1e-9 for q in out):
                out.append(_moved(s, x, y))
                break
    return out


def heldout_scenes(n: int = HELDOUT_N, seed: int = HELDOUT_SEED) -> list[Scene]:
    """The held-out scenes: a setting (table, plate floor, bowl), 1-4 items of mixed
    families, touching or scattered, a random azimuth. Deterministic in (n, seed)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        setting = ["table", "plate", "bowl"][i % 3]
        touching = rng.random() < 0.4
        if setting == "bowl":
            z0, spread, n_items = 0.005, 0.05, int(rng.integers(1, 3))
            props: list[Shape] = [Plane(), Cylinder(0.0, 0.0, 0.075, 0.005),
                                  Ring(0.0, 0.0, 0.075, 0.095, 0.004, 0.03)]
        elif setting == "plate":
            z0, spread, n_items = 0.012, 0.095, int(rng.integers(1, 5))
            props = [Plane(), Cylinder(0.0, 0.0, 0.12, 0.012),
                     Ring(0.0, 0.0, 0.12, 0.13, 0.005, 0.018)]
        else:
            z0, spread, n_items = 0.0, 0.11, int(rng.integers(1, 5))
            props = [Plane()]
        fams = rng.choice(["small", "wall", "flat", "any"], n_items)
        items = [_item(rng, f, 0.0, 0.0, z0, 0.6 * spread) for f in fams]
        items = _place(rng, items, touching, spread)
        name = f"{setting}-{'touch' if touching else 'apart'}-" + "+".join(
            type(s).__name__.lower()[:4] for s in items)
        out.append(Scene(name, items, props, float(rng.uniform(0, 360))))
    return out


def realsense_noise(depth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """RealSense-like float32 depth (see the module docstring for the model)."""
    z = depth.astype(np.float64)
    valid = z > 0
    e = cv2.blur(rng.normal(0.0, 1.0, z.shape), (3, 3)) * 3.0   # unit variance again
    sigma = 1e-3 * (z / DISTANCE_M) ** 2
    out = np.round((z + sigma * e) / 1e-4) * 1e-4
    drop = rng.random(z.shape) < 0.02
    zp = np.pad(z, 1, mode="edge")
    jump = np.zeros_like(valid)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        jump |= np.abs(zp[dy:dy + z.shape[0], dx:dx + z.shape[1]] - z) > 5e-3
    drop |= jump & (rng.random(z.shape) < 0.5)
    for _ in range(int(rng.integers(0, 4))):
        cy, cx = rng.integers(0, z.shape[0]), rng.integers(0, z.shape[1])
        cv2.circle(drop.view(np.uint8), (int(cx), int(cy)), int(rng.integers(3, 9)), 1, -1)
    out[drop | ~valid] = 0.0
    return out.astype(np.float32)


def iter_renders(scenes: list[Scene], elevations) -> Iterator[tuple[str, float, np.ndarray,
                                                                    np.ndarray, np.ndarray, float]]:
    """(name, elevation, depth, mask, K, true_ml) for every scene at every elevation."""
    for el in elevations:
        for s in scenes:
            depth, mask, K = s.render(el)
            if mask.any():
                yield s.name, el, depth, mask, K, s.true_ml
