"""Ray casting agrees with the analytic volumes and the camera conventions of docs/contracts.md
(camera z-depth, pixel centres at integer coordinates)."""
import numpy as np
import pytest

from pipeline.data.shapes import (
    Box,
    Camera,
    Cone,
    Cylinder,
    Ellipsoid,
    Frustum,
    HeightField,
    Plane,
    Ring,
    SphereCap,
    render,
    render_full,
)


def _mound_grid(n: int = 41, size: float = 0.1, h: float = 0.03) -> HeightField:
    yy, xx = np.mgrid[-1:1:complex(n), -1:1:complex(n)]
    hf = np.clip(1 - xx ** 2 - yy ** 2, 0, None) ** 1.5 * h * (1 + 0.2 * np.sin(7 * xx) * np.cos(5 * yy))
    hf[0] = hf[-1] = hf[:, 0] = hf[:, -1] = 0
    return HeightField(-size / 2, -size / 2, size / (n - 1), hf)


FOOD = [
    SphereCap(0.01, 0.0, 0.05, 0.03),
    SphereCap(0.0, 0.0, 0.03, 0.04),          # more than a hemisphere (overhang)
    Cylinder(0.0, 0.01, 0.04, 0.03),
    Box(0.0, 0.0, 0.08, 0.05, 0.02, yaw=0.5),
    Cone(0.0, 0.0, 0.05, 0.06),
    Ellipsoid(0.0, 0.0, 0.06, 0.04, 0.03, yaw=0.3),
    _mound_grid(),
    Frustum(0.0, 0.01, 0.05, 0.03, 0.03),     # narrowing: no undercut
]


def _column_volume(depth: np.ndarray, label: np.ndarray, f: float, D: float) -> float:
    """Exact volume of the pixel frusta between the hit depth and the plane at depth D."""
    m = label == 0
    z = depth[m].astype(np.float64)
    return float(((D ** 3 - z ** 3) / (3 * f * f)).sum())


@pytest.mark.parametrize("shape", FOOD, ids=lambda s: type(s).__name__)
def test_topdown_volume_matches_analytic(shape):
    # near-orthographic top-down view: 20 m away, 1 mm pixels, so walls and overhangs
    # don't leak into the pixel columns
    D, f = 20.0, 20000.0
    cam = Camera.look_at(90, 30, D, f_px=f, width=160, height=160)
    depth, label, _ = render_full([shape, Plane(0.0)], cam)
    vol = _column_volume(depth, label, f, D)
    assert vol == pytest.approx(shape.volume_m3, rel=0.01)


@pytest.mark.parametrize("shape", [FOOD[0], FOOD[4], FOOD[5], FOOD[6]],
                         ids=lambda s: type(s).__name__)
def test_perspective_topdown_volume(shape):
    # shapes without undercuts: the perspective frustum columns integrate exactly
    D, f = 0.4, 260.0
    cam = Camera.look_at(90, 10, D, f_px=f, width=160, height=120)
    depth, label = render([shape, Plane(0.0)], cam)
    assert depth.dtype == np.float32 and label.dtype == np.int32
    assert _column_volume(depth, label, f, D) == pytest.approx(shape.volume_m3, rel=0.01)


@pytest.mark.parametrize("shape", FOOD, ids=lambda s: type(s).__name__)
def test_oblique_hits_lie_on_surface(shape):
    cam = Camera.look_at(50, 70, 0.35, f_px=500, width=160, height=120)
    o, d = cam.rays()
    t, n = shape.intersect(o, d)
    hit = np.isfinite(t)
    assert hit.sum() > 500
    before = o + (t[hit] * (1 - 1e-6))[:, None] * d[hit]
    after = o + (t[hit] * (1 + 1e-6))[:, None] * d[hit]
    assert not shape.contains(before).any()       # nothing in front of the first hit
    assert shape.contains(after).mean() > 0.995   # grazing silhouette rays may exit at once
    assert np.allclose(np.linalg.norm(n[hit], axis=1), 1.0)
    assert ((n[hit] * d[hit]).sum(1) <= 1e-9).all()  # normals face the camera


@pytest.mark.slow
def test_heightfield_volume_is_exact():
    hf = _mound_grid(n=21)
    # integrate the bilinear surface on a much finer grid (midpoint rule)
    lo, hi = hf.bounds()
    k = 2000
    xs = lo[0] + (np.arange(k) + 0.5) * (hi[0] - lo[0]) / k
    X, Y = np.meshgrid(xs, xs)
    num = hf.height_at(X.ravel(), Y.ravel()).sum() * ((hi[0] - lo[0]) / k) ** 2
    assert num == pytest.approx(hf.volume_m3, rel=1e-4)


def test_heightfield_rejects_bad_grid():
    with pytest.raises(ValueError, match="border"):
        HeightField(0, 0, 0.01, np.ones((5, 5)))
    with pytest.raises(ValueError, match=">= 0"):
        HeightField(0, 0, 0.01, -np.ones((5, 5)))


def test_ring_volume_monte_carlo():
    ring = Ring(0.0, 0.0, 0.05, 0.07, 0.005, 0.03)
    rng = np.random.default_rng(0)
    p = rng.uniform([-0.08, -0.08, 0], [0.08, 0.08, 0.03], size=(400_000, 3))
    rho = np.hypot(p[:, 0], p[:, 1])
    r_in = 0.05 + 0.02 * p[:, 2] / 0.03
    inside = (rho >= r_in) & (rho <= r_in + 0.005)
    mc = inside.mean() * 0.16 * 0.16 * 0.03
    assert mc == pytest.approx(ring.volume_m3, rel=0.03)


def test_camera_conventions():
    cam = Camera.look_at(90, 0, 0.5, target=(0.01, 0.02, 0.0), f_px=600, width=64, height=48)
    assert np.allclose(cam.R @ cam.R.T, np.eye(3)) and np.isclose(np.linalg.det(cam.R), 1)
    uv, z = cam.project(np.array([[0.01, 0.02, 0.0]]))
    assert np.allclose(uv, [[31.5, 23.5]]) and np.isclose(z[0], 0.5)
    depth, label = render([Plane(0.0)], cam)
    assert np.allclose(depth, 0.5, atol=1e-6) and (label == 0).all()
    # oblique: ray parameter t is the camera z-depth of the hit point
    cam = Camera.look_at(45, 120, 0.4, f_px=500, width=40, height=30, cx=18.0, cy=16.0)
    o, d = cam.rays()
    t, _ = Plane(0.0).intersect(o, d)
    X = o + t[:, None] * d
    _, z = cam.project(X)
    assert np.allclose(z, t)
    assert np.allclose(cam.K[:2, 2], [18.0, 16.0])


def test_render_label_first_hit_and_misses():
    cam = Camera.look_at(60, 0, 0.4, f_px=100, width=80, height=60)
    shapes = [Cylinder(0, 0, 0.03, 0.02, z0=0.01), Cylinder(0, 0, 0.08, 0.01)]
    depth, label = render(shapes, cam)
    assert (label == 0).any() and (label == 1).any() and (label == -1).any()
    assert (depth[label == -1] == 0).all() and (depth[label >= 0] > 0).all()
    # the small cylinder stands on the big one: it is always in front where both are hit
    d0, l0 = render(shapes[1:], cam)
    both = (label == 0) & (l0 == 0)
    assert (depth[both] < d0[both]).all()


def test_bad_camera_arguments():
    with pytest.raises(ValueError, match="elevation"):
        Camera.look_at(0, 0, 0.4)
    with pytest.raises(ValueError, match="distance"):
        Camera.look_at(60, 0, -1)
    with pytest.raises(ValueError, match="radius"):
        SphereCap(0, 0, 0.0, 0.01)


def test_frustum_volume_monte_carlo():
    fr = Frustum(0.0, 0.0, 0.04, 0.07, 0.03, z0=0.01)  # flaring, like food filling a bowl
    rng = np.random.default_rng(1)
    p = rng.uniform([-0.07, -0.07, 0.01], [0.07, 0.07, 0.04], size=(400_000, 3))
    mc = fr.contains(p).mean() * 0.14 * 0.14 * 0.03
    assert mc == pytest.approx(fr.volume_m3, rel=0.02)
    with pytest.raises(ValueError, match="Frustum"):
        Frustum(0, 0, 0.0, 0.01, 0.01)


def test_render_order_independent_and_bowl_outside_hidden():
    # z-culling must not change the first hit: any shape order gives the same depth map.
    # A bowl (two flaring wall segments) filled with food that follows its wall, on a box.
    walls = [Ring(0, 0, 0.05, 0.08, 0.002, 0.02, z0=0.01), Ring(0, 0, 0.08, 0.1, 0.002, 0.03, z0=0.03)]
    scene = [Frustum(0, 0, 0.05, 0.08, 0.02, z0=0.01), Box(0.01, 0, 0.02, 0.03, 0.015, 0.3, 0.03),
             *walls, Cylinder(0, 0, 0.052, 0.01), Box(0, 0, 0.4, 0.3, 0.005), Plane(0.0)]
    cam = Camera.look_at(84, 30, 0.35, target=(0.01, 0, 0.02), f_px=150, width=160, height=120)
    d1, l1, _ = render_full(scene, cam)
    d2, l2, _ = render_full(scene[::-1], cam)
    assert np.allclose(d1, d2, rtol=0, atol=1e-12)
    assert (l1 == len(scene) - 1 - l2)[np.abs(d1 - d2) == 0].mean() > 0.999
    assert not (l1 == 4).any()  # the floor under the food is hidden
    # seen from above the rim and inside it, a flaring bowl's outside is never the first hit
    inner = [Ring(w.cx, w.cy, w.r_in0, w.r_in1, w.thickness, w.height, w.z0, outer_wall=False)
             for w in walls]
    d3, _, _ = render_full(scene[:2] + inner + scene[4:], cam)
    assert np.array_equal(d1, d3)
