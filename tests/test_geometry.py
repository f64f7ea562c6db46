"""pipeline.geometry: plane fit, both volume methods, validation, and the torch twin."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline import geometry as g
from pipeline.data.shapes import Box, Camera, Cylinder, Plane, SphereCap, render
from pipeline.geometry.shared import boundary
from pipeline.io import intrinsics

F_PX = 600.0


def box_scene(Z_table: float = 0.4, side: float = 0.08, height: float = 0.03,
              W: int = 320, H: int = 240) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Fronto-parallel table with a centred box seen straight from above: exact by hand.

    The box top is at Z_table - height; walls are hidden (the top occludes them)."""
    K = intrinsics(F_PX, F_PX, (W - 1) / 2, (H - 1) / 2)
    depth = np.full((H, W), Z_table, dtype=np.float32)
    Zt = Z_table - height
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    x = (u - K[0, 2]) / F_PX * Zt
    y = (v - K[1, 2]) / F_PX * Zt
    mask = (np.abs(x) <= side / 2) & (np.abs(y) <= side / 2)
    depth[mask] = Zt
    # the true volume of what the pixel grid covers (pixel-quantised top)
    true_ml = mask.sum() * (Zt / F_PX) ** 2 * height * 1e6
    return depth, mask, K, true_ml


@pytest.fixture(scope="module")
def cap_scenes() -> dict:
    """A spherical cap (mound) and a cylinder, exactly ray cast at 90 and 60 deg."""
    out = {}
    for el in (90, 60):
        cam = Camera.look_at(el, 30.0, 0.36, f_px=307.5, width=320, height=240)
        for name, shape in (("cap", SphereCap(0.0, 0.0, 0.05, 0.025)),
                            ("cyl", Cylinder(0.0, 0.0, 0.04, 0.03))):
            depth, label = render([shape, Plane()], cam)
            out[(name, el)] = (depth, label == 0, cam.K, shape.volume_m3 * 1e6)
    return out


# --------------------------------------------------------------------------- basics
def test_backproject_and_height():
    K = intrinsics(100.0, 120.0, 10.0, 8.0)
    depth = np.full((16, 20), 2.0, dtype=np.float32)
    depth[0, 0] = 0.0
    depth[1, 1] = np.nan
    X = g.backproject(depth, K)
    assert X.shape == (16, 20, 3)
    np.testing.assert_allclose(X[8, 15], [2.0 * 5 / 100, 0.0, 2.0])
    assert np.isnan(X[0, 0]).all() and np.isnan(X[1, 1]).all()
    h = g.height_above_plane(depth, K, np.array([0.0, 0.0, -1.0]), 2.5)
    np.testing.assert_allclose(h[5, 5], 0.5)
    assert np.isnan(h[0, 0])


def test_support_mask_ring_and_fallback():
    mask = np.zeros((100, 100), bool)
    mask[40:60, 40:60] = True
    valid = np.ones_like(mask)
    ring = g.support_mask(mask, valid, 5)
    assert not (ring & mask).any()
    assert ring[38, 50] and ring[35, 50] and not ring[33, 50]
    # invalid depth around the mask: the ring is too small -> all valid non-food pixels
    valid2 = valid.copy()
    valid2[30:70, 30:70] = False
    sup = g.support_mask(mask, valid2, 5)
    np.testing.assert_array_equal(sup, valid2 & ~mask)


def test_fit_plane_robust_and_oriented():
    rng = np.random.default_rng(3)
    n_true = np.array([0.1, -0.6, -0.8])
    n_true /= np.linalg.norm(n_true)
    d_true = 0.4
    p = rng.uniform(-0.2, 0.2, (5000, 2))
    # points on n.X + d = 0: solve for z
    z = -(d_true + n_true[0] * p[:, 0] + n_true[1] * p[:, 1]) / n_true[2]
    P = np.column_stack([p, z]) + rng.normal(0, 5e-4, (5000, 3))
    P[:1500, 2] -= rng.uniform(0.01, 0.1, 1500)  # 30 % outliers (food above the table)
    n, d = g.fit_plane(P, seed=0)
    assert d > 0 and n[2] < 0  # towards the camera at the origin
    assert np.degrees(np.arccos(min(1.0, n @ n_true))) < 0.2
    assert abs(d - d_true) < 1e-3
    with pytest.raises(ValueError, match="Nx3"):
        g.fit_plane(P[:, :2])


# --------------------------------------------------------------------------- volumes
@pytest.mark.parametrize("method", ["heightmap", "columns"])
def test_box_top_down_exact(method):
    depth, mask, K, true_ml = box_scene()
    res = g.estimate_volume(depth, mask, K, method=method)
    assert abs(res.volume_ml / true_ml - 1) < 0.01, (res.volume_ml, true_ml)
    np.testing.assert_allclose(res.plane_normal, [0, 0, -1], atol=1e-6)
    assert res.plane_d == pytest.approx(0.4, abs=1e-5)
    assert res.n_food_px == mask.sum() and res.n_holes == 0
    assert (res.height_map is not None) == (method == "heightmap")


@pytest.mark.parametrize("method", ["heightmap", "columns"])
def test_holes_are_filled_not_summed(method):
    depth, mask, K, true_ml = box_scene()
    rng = np.random.default_rng(0)
    holes = mask & (rng.random(mask.shape) < 0.05)
    holes[118:124, 150:160] = mask[118:124, 150:160]  # plus one bigger hole
    bad = depth.copy()
    bad[holes] = 0.0
    bad[holes & (rng.random(mask.shape) < 0.5)] = np.nan
    res = g.estimate_volume(bad, mask, K, method=method)
    assert res.n_holes == holes.sum() and res.n_food_px == (mask & ~holes).sum()
    assert abs(res.volume_ml / true_ml - 1) < 0.01


@pytest.mark.parametrize("el", [90, 60])
def test_silhouette_holes_filled_from_the_food_side(el):
    """A depth camera drops about half the pixels at a depth edge, i.e. on the silhouette:
    their depth is grown from the food side, so the edge cells keep their coverage (without
    them a small box lost 2-5 %)."""
    cam = Camera.look_at(el, 20.0, 0.36)
    box = Box(0.02, 0.01, 0.03, 0.025, 0.015, yaw=0.3)
    depth, label = render([box, Plane()], cam)
    mask = label == 0
    exact = g.estimate_volume(depth, mask, cam.K).volume_ml
    holes = boundary(mask) & (np.random.default_rng(0).random(mask.shape) < 0.5)
    bad = depth.copy()
    bad[holes] = 0.0
    res = g.estimate_volume(bad, mask, cam.K)
    assert res.n_holes == holes.sum() > 30
    assert abs(res.volume_ml / exact - 1) < 0.01
    assert abs(res.volume_ml / (box.volume_m3 * 1e6) - 1) < 0.02


def test_heightmap_does_not_bridge_nearby_foods():
    """Two boxes 4 mm apart (2 cells): gap closing must not fill the table between them."""
    W, H, Z_table, height = 320, 240, 0.4, 0.03
    K = intrinsics(F_PX, F_PX, (W - 1) / 2, (H - 1) / 2)
    Zt = Z_table - height
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    x, y = (u - K[0, 2]) / F_PX * Zt, (v - K[1, 2]) / F_PX * Zt
    left = (x >= -0.042) & (x <= -0.002) & (np.abs(y) <= 0.03)
    right = (x >= 0.002) & (x <= 0.042) & (np.abs(y) <= 0.03)
    depth = np.where(left | right, Zt, Z_table).astype(np.float32)
    true_ml = (left | right).sum() * (Zt / F_PX) ** 2 * height * 1e6
    both = g.estimate_volume(depth, left | right, K)
    parts = sum(g.estimate_volume(depth, m, K, plane=(both.plane_normal, both.plane_d)).volume_ml
                for m in (left, right))
    assert abs(both.volume_ml / true_ml - 1) < 0.015
    assert both.volume_ml == pytest.approx(parts, rel=0.005)


def test_heightmap_beats_columns_on_mound(cap_scenes):
    depth, mask, K, true_ml = cap_scenes[("cap", 90)]
    hm = g.estimate_volume(depth, mask, K, method="heightmap").volume_ml
    col = g.estimate_volume(depth, mask, K, method="columns").volume_ml
    assert abs(hm / true_ml - 1) < 0.02
    assert col < true_ml * 0.98  # the slope term the per-pixel columns ignore
    assert abs(hm - true_ml) < abs(col - true_ml)


@pytest.mark.parametrize("name", ["cap", "cyl"])
def test_heightmap_robust_to_depth_noise(cap_scenes, name):
    """RealSense-like noise (1 mm) and 2 % holes: the top band averages noise instead of
    taking its maximum (which alone would overestimate by several percent)."""
    depth, mask, K, true_ml = cap_scenes[(name, 90)]
    rng = np.random.default_rng(0)
    noisy = depth + rng.normal(0.0, 1e-3, depth.shape).astype(np.float32)
    noisy[rng.random(depth.shape) < 0.02] = 0.0
    res = g.estimate_volume(noisy, mask, K)
    assert abs(res.volume_ml / true_ml - 1) < 0.03


@pytest.mark.parametrize("name", ["cap", "cyl"])
def test_heightmap_oblique(cap_scenes, name):
    depth, mask, K, true_ml = cap_scenes[(name, 60)]
    res = g.estimate_volume(depth, mask, K)
    assert abs(res.volume_ml / true_ml - 1) < 0.05
    assert res.height_map.max() == pytest.approx(0.025 if name == "cap" else 0.03, rel=0.05)
    # plane: world z up seen from 60 deg elevation
    assert np.degrees(np.arccos(-res.plane_normal[2])) == pytest.approx(30.0, abs=0.1)


@pytest.mark.parametrize("el", [90, 60])
def test_heightmap_small_walls_off_centre(el):
    """Small items with vertical walls away from the image centre (walls in view): wall
    pixels see no table area, so they must not add coverage past the top's edge (the
    column-area coverage over-counted these by +2..+10 %)."""
    cam = Camera.look_at(el, 20.0, 0.36)
    for shape in (Box(0.05, 0.03, 0.03, 0.025, 0.01, yaw=0.3), Cylinder(-0.04, 0.02, 0.012, 0.02)):
        depth, label = render([shape, Plane()], cam)
        res = g.estimate_volume(depth, label == 0, cam.K)
        assert abs(res.volume_ml / (shape.volume_m3 * 1e6) - 1) < 0.02, (type(shape), res.volume_ml)


def test_given_plane_skips_fit():
    depth, mask, K, _ = box_scene()
    fit = g.estimate_volume(depth, mask, K)
    given = g.estimate_volume(depth, mask, K, plane=(-2 * fit.plane_normal, -2 * fit.plane_d))
    assert given.volume_ml == pytest.approx(fit.volume_ml, rel=1e-9)
    np.testing.assert_allclose(given.plane_normal, fit.plane_normal)
    lower = g.estimate_volume(depth, mask, K, plane=(fit.plane_normal, fit.plane_d + 0.01))
    assert lower.volume_ml > fit.volume_ml


def test_validation_errors():
    depth, mask, K, _ = box_scene(W=64, H=48, side=0.015)
    with pytest.raises(ValueError, match="shape mismatch"):
        g.estimate_volume(depth, mask[:-1], K)
    with pytest.raises(ValueError, match="2-D"):
        g.estimate_volume(depth[None], mask[None], K)
    with pytest.raises(ValueError, match="empty"):
        g.estimate_volume(depth, np.zeros_like(mask), K)
    with pytest.raises(ValueError, match="K: must be 3x3"):
        g.estimate_volume(depth, mask, K[:2])
    with pytest.raises(ValueError, match="K: not invertible"):
        g.estimate_volume(depth, mask, np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match="focal"):
        g.estimate_volume(depth, mask, K * np.array([[-1], [1], [1]]))
    no_food_depth = depth.copy()
    no_food_depth[mask] = np.nan
    with pytest.raises(ValueError, match="no valid depth inside the mask"):
        g.estimate_volume(no_food_depth, mask, K)
    no_table = depth.copy()
    no_table[~mask] = 0.0
    with pytest.raises(ValueError, match="no valid support pixels"):
        g.estimate_volume(no_table, mask, K)
    with pytest.raises(ValueError, match="method"):
        g.estimate_volume(depth, mask, K, method="voxels")


# --------------------------------------------------------------------------- torch twin
def _t(depth, mask, K, dtype=torch.float64):
    return (torch.as_tensor(depth, dtype=dtype)[None], torch.as_tensor(mask)[None],
            torch.as_tensor(K, dtype=dtype)[None])


@pytest.mark.parametrize("method", ["heightmap", "columns"])
def test_torch_twin_matches_numpy(cap_scenes, method):
    depth, mask, K, _ = cap_scenes[("cap", 60)]
    depth = depth.copy()
    depth[mask & (np.random.default_rng(1).random(mask.shape) < 0.03)] = 0.0  # holes
    ref = g.estimate_volume(depth, mask, K, method=method)
    d2, m2, K2 = cap_scenes[("cyl", 90)][:3]
    ref2 = g.estimate_volume(d2, m2, K2, method=method)
    batch = [_t(depth, mask, K), _t(d2, m2, K2)]
    vt = g.estimate_volume_torch(*(torch.cat(x) for x in zip(*batch)), method=method)
    assert vt.shape == (2,)
    assert vt[0].item() == pytest.approx(ref.volume_ml, rel=1e-6)
    assert vt[1].item() == pytest.approx(ref2.volume_ml, rel=1e-6)
    v32 = g.estimate_volume_torch(*_t(depth, mask, K, torch.float32), method=method)
    assert v32.dtype == torch.float32
    assert v32.item() == pytest.approx(ref.volume_ml, rel=1e-3)
    n, d = g.fit_support_plane_torch(*_t(depth, mask, K))
    np.testing.assert_allclose(n[0].numpy(), ref.plane_normal, atol=1e-9)
    assert d[0].item() == pytest.approx(ref.plane_d, rel=1e-9)


@pytest.mark.parametrize("method", ["heightmap", "columns"])
def test_torch_gradient_matches_finite_difference(method):
    depth, mask, K, _ = box_scene(W=48, H=40, side=0.012, height=0.01)
    ys, xs = np.nonzero(mask)
    ym, xm = ys[len(ys) // 2], xs[len(xs) // 2]
    depth[ym, xm] = 0.0          # a hole: its depth follows its neighbours', with gradients
    dt, mt, Kt = _t(depth, mask, K)
    dt.requires_grad_(True)
    vol = g.estimate_volume_torch(dt, mt, Kt, method=method)
    (grad,) = torch.autograd.grad(vol.sum(), dt)
    assert torch.isfinite(grad).all() and grad[0][torch.as_tensor(mask)].abs().sum() > 0
    assert grad[0, ym, xm] == 0
    eps = 1e-7
    ring = g.support_mask(mask, np.ones_like(mask), 20)
    ry, rx = np.nonzero(ring)
    for y, x in [(ym + 1, xm), (ym, xm - 1), (ry[0], rx[0]), (ry[-7], rx[-7])]:
        plus, minus = depth.astype(np.float64), depth.astype(np.float64)
        plus[y, x] += eps
        minus[y, x] -= eps
        fd = (g.estimate_volume_torch(*_t(plus, mask, K), method=method)
              - g.estimate_volume_torch(*_t(minus, mask, K), method=method)).item() / (2 * eps)
        assert grad[0, y, x].item() == pytest.approx(fd, rel=1e-3, abs=1e-3), (y, x)


def test_torch_validation():
    depth, mask, K, _ = box_scene(W=64, H=48, side=0.015)
    dt, mt, Kt = _t(depth, mask, K)
    with pytest.raises(ValueError, match="BxHxW"):
        g.estimate_volume_torch(dt[0], mt[0], Kt)
    with pytest.raises(ValueError, match="mask\\[0\\]: empty"):
        g.estimate_volume_torch(dt, torch.zeros_like(mt), Kt)
    with pytest.raises(ValueError, match="K"):
        g.estimate_volume_torch(dt, mt, Kt[:, :2])


@pytest.mark.parametrize("method", ["heightmap", "columns"])
def test_torch_host_copy_same_values_and_gradients(cap_scenes, method):
    """The GPU default (one host copy per call, values + Jacobians back) gives the direct
    path's values and first derivatives, through a plane fitted on the same prediction."""
    batch = [_t(*cap_scenes[(k, 60)][:3]) for k in ("cap", "cyl")]
    D, M, K = (torch.cat(x) for x in zip(*batch))
    res = []
    for host in (False, True):
        x = D.clone().requires_grad_()
        n, d = g.fit_support_plane_torch(x, M, K, host_copy=host)
        v = g.estimate_volume_torch(x, M, K, method=method, plane=(n, d), host_copy=host)
        (grad,) = torch.autograd.grad((v * torch.tensor([1.0, 2.0])).sum() + 3 * n.sum(), x)
        res.append((v.detach(), n.detach(), grad))
    for a, b in zip(*res):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert res[0][2].abs().max() > 0
