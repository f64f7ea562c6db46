"""Augmentations keep K consistent with the pixels, and masks/depth with the image."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.geometry.camera import resize_K
from pipeline.train.augment import augment_sample, similarity, warp_K, warp_sample

K0 = np.array([[300.0, 0, 159.5], [0, 300.0, 119.5], [0, 0, 1]])


def project(K: np.ndarray, X: np.ndarray) -> np.ndarray:
    p = K @ X
    return p[:2] / p[2]


def roll(A: np.ndarray) -> np.ndarray:
    """The camera roll equivalent to the in-plane rotation of A (as warp_K uses it)."""
    R = np.eye(3)
    R[:2, :2] = A[:, :2] / np.hypot(A[0, 0], A[1, 0])
    return R


def test_resize_K_moves_projections_with_pixels():
    X = np.array([0.05, -0.03, 0.5])
    K1 = resize_K(K0, (240, 320), (126, 168))
    p0, p1 = project(K0, X), project(K1, X)
    # pixel centres at integer coordinates: u' = (u + 0.5) * s - 0.5
    np.testing.assert_allclose(p1, (p0 + 0.5) * np.array([168 / 320, 126 / 240]) - 0.5, atol=1e-9)


@pytest.mark.parametrize("scale,angle,shift", [(1.0, 0.0, (0, 0)), (1.2, 10.0, (5, -3)),
                                               (0.85, -10.0, (-7, 4)), (1.0, 7.0, (0, 0))])
def test_projected_point_lands_on_same_feature(scale, angle, shift):
    """A 3D point seen as a bright dot: after the warp the dot sits where K' projects it."""
    X = np.array([0.04, 0.03, 0.45])
    u, v = project(K0, X)
    img = np.zeros((240, 320, 3), np.float32)
    ui, vi = int(round(u)), int(round(v))
    img[vi - 1:vi + 2, ui - 1:ui + 2] = 1.0
    # snap X so that its projection is exactly the dot centre
    X = np.linalg.inv(K0) @ np.array([ui, vi, 1.0]) * X[2]
    depth = np.full((240, 320), 0.45, np.float32)
    mask = np.zeros((240, 320), bool)
    A = similarity((120, 160), (240, 320), scale, angle, shift)
    rgb2, depth2, mask2, K2 = warp_sample(img, depth, mask, K0, A, (120, 160))
    Xc = roll(A) @ X
    assert abs(Xc[2] - X[2]) < 1e-12  # a roll keeps z-depth
    pu, pv = project(K2, Xc)
    ys, xs = np.nonzero(rgb2[..., 0] > 0.2)
    w = rgb2[ys, xs, 0]
    cu, cv = (xs * w).sum() / w.sum(), (ys * w).sum() / w.sum()
    assert abs(cu - pu) < 0.6 and abs(cv - pv) < 0.6
    assert K2[0, 1] == 0 and K2[2, 2] == 1
    assert np.allclose(depth2[depth2 > 0], 0.45)  # z-depth values resampled, never rescaled


def test_warp_K_pure_scale_matches_resize():
    A = similarity((120, 160), (240, 320), 1.0, 0.0, (0, 0))
    np.testing.assert_allclose(warp_K(K0, A), resize_K(K0, (240, 320), (120, 160)), atol=1e-9)


def test_similarity_rejects_aspect_change():
    with pytest.raises(ValueError, match="aspect"):
        similarity((126, 126), (240, 320), 1.0, 0.0, (0, 0))


def _sample_inputs():
    rng = np.random.default_rng(0)
    rgb = rng.random((240, 320, 3)).astype(np.float32)
    depth = np.full((240, 320), 0.5, np.float32)
    mask = np.zeros((240, 320), bool)
    mask[100:140, 140:190] = True
    return rgb, depth, mask


def test_train_augment_keeps_food_in_view_and_is_seeded():
    rgb, depth, mask = _sample_inputs()
    cfg = {"p_geometric": 1.0, "p_holes": 1.0, "p_depth_noise": 1.0, "p_blur": 1.0}
    for s in range(8):
        out = augment_sample(rgb, depth, mask, K0, (84, 112), cfg, np.random.default_rng(s))
        assert out["rgb"].shape == (84, 112, 3) and out["depth"].shape == (84, 112)
        assert out["rgb"].min() >= 0 and out["rgb"].max() <= 1
        m = out["mask"]
        assert m.any() and not (m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any())
        assert (out["depth"] == 0).any()  # holes
    a = augment_sample(rgb, depth, mask, K0, (84, 112), cfg, np.random.default_rng(1))
    b = augment_sample(rgb, depth, mask, K0, (84, 112), cfg, np.random.default_rng(1))
    assert np.array_equal(a["rgb"], b["rgb"]) and np.array_equal(a["K"], b["K"])


def test_eval_view_is_plain_resize():
    rgb, depth, mask = _sample_inputs()
    out = augment_sample(rgb, depth, mask, K0, (120, 160), None, None)
    np.testing.assert_allclose(out["K"], resize_K(K0, (240, 320), (120, 160)), atol=1e-9)
    assert np.all(out["depth"] == 0.5)


def _mound_scene(h: int = 240, w: int = 320, table_z: float = 0.36, radius: float = 0.04,
                 height: float = 0.03) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Depth and mask of a paraboloid mound (pi R^2 H / 2 = 75.4 mL) on a level table."""
    K = np.array([[300.0, 0, (w - 1) / 2], [0, 300.0, (h - 1) / 2], [0, 0, 1]])
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    rx, ry = (u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1]
    z = np.full((h, w), table_z)
    for _ in range(60):  # ray / surface intersection by fixed-point iteration
        hh = height * np.clip(1 - ((rx * z) ** 2 + (ry * z) ** 2) / radius ** 2, 0, None)
        z = table_z - hh
    return z.astype(np.float32), hh > 0, K


@pytest.mark.parametrize("scale", [0.85, 1.2])
def test_zoom_keeps_volume_consistent_with_K(scale):
    """The volume of the augmented view, computed with the view's own K, equals the original
    times the view's volume_scale: exact for a model that ignores K ("depth": depth / s,
    unzoomed focal length) and for one that follows K ("intrinsics"). Zooming the pixels while
    keeping depth and focal length (what a K-blind model would otherwise be taught) is not."""
    from pipeline.geometry import estimate_volume
    depth, mask, K = _mound_scene()
    v0 = estimate_volume(depth, mask, K).volume_ml
    assert abs(v0 - np.pi * 0.04 ** 2 * 0.03 / 2 * 1e6) < 0.03 * v0
    cfg = {"p_geometric": 1.0, "scale": [scale, scale], "rotate_deg": 8.0, "shift_frac": 0.05,
           "p_blur": 0.0, "p_depth_noise": 0.0, "p_holes": 0.0}
    rgb = np.zeros((*depth.shape, 3), np.float32)
    vols = {}
    for zoom in ("depth", "intrinsics"):
        out = augment_sample(rgb, depth, mask, K, depth.shape, {**cfg, "zoom": zoom},
                             np.random.default_rng(4))
        v = estimate_volume(out["depth"], out["mask"], out["K"]).volume_ml
        vols[zoom] = v
        label = v0 * out["volume_scale"]
        assert abs(v - label) < 0.03 * label, (zoom, v, label)
        if zoom == "depth":
            assert out["volume_scale"] == pytest.approx(1 / scale)
            # focal length unzoomed: the same fx as the plain (unzoomed) view
            assert out["K"][0, 0] == pytest.approx(K[0, 0]) and out["K"][1, 1] == pytest.approx(K[1, 1])
            # zoomed pixels, depth unchanged, unzoomed focal: off by about s^2
            naive = estimate_volume(out["depth"] * scale, out["mask"], out["K"]).volume_ml
            assert abs(naive / v0 - scale ** 2) < 0.05
        else:
            assert out["volume_scale"] == 1.0 and out["K"][0, 0] == pytest.approx(scale * K[0, 0])
    print(f"zoom {scale}: original {v0:.1f} mL; depth mode {vols['depth']:.1f} mL "
          f"(label {v0 / scale:.1f}); intrinsics mode {vols['intrinsics']:.1f} mL")


def test_zoom_off_and_bad_mode():
    rgb, depth, mask = _sample_inputs()
    cfg = {"p_geometric": 1.0, "zoom": "off", "rotate_deg": 0.0}
    out = augment_sample(rgb, depth, mask, K0, (120, 160), cfg, np.random.default_rng(0))
    assert out["volume_scale"] == 1.0
    np.testing.assert_allclose(out["K"][[0, 1], [0, 1]], 0.5 * K0[[0, 1], [0, 1]])
    with pytest.raises(ValueError, match="zoom"):
        augment_sample(rgb, depth, mask, K0, (120, 160), {"zoom": "bogus"}, np.random.default_rng(0))
