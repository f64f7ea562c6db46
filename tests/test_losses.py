"""Each loss on simple cases: zero at pred == gt, positive otherwise, gradients, guards."""
from __future__ import annotations

import math

import pytest
import torch

from pipeline.train.losses import (
    check_weights,
    depth_l1,
    gradient_loss,
    height_loss,
    intrinsics_loss,
    normal_angle,
    plane_loss,
    silog_loss,
    total_loss,
    valid_depth,
    volume_loss,
)

H, W = 56, 70
K1 = torch.tensor([[60.0, 0, (W - 1) / 2], [0, 60.0, (H - 1) / 2], [0, 0, 1]])
WEIGHTS = {"w_depth": 1.0, "w_grad": 0.1, "w_plane": 0.05, "w_volume": 0.1, "w_silog": 0.1,
           "w_intrinsics": 0.1, "w_height": 1.0, "w_mask": 1.0}
GEOM = {"method": "heightmap", "ring_px": 5, "cell_mm": 2.0, "seed": 0}


def plane_depth(normal, d: float) -> torch.Tensor:
    """z-depth of the plane n.X + d = 0 seen through K1."""
    n = torch.tensor(normal, dtype=torch.float64)
    n = n / n.norm()
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    rays = torch.stack([(u - K1[0, 2]) / K1[0, 0], (v - K1[1, 2]) / K1[1, 1], torch.ones_like(u)], -1)
    return (-d / (rays @ n)).float()


def scene(tilt: float = 0.0) -> dict:
    """A table plane with a box of food on it (B=2, second one tilted differently)."""
    ds, ms = [], []
    for t in (tilt, tilt + 0.1):
        table = plane_depth([0.0, math.sin(t), -math.cos(t)], 0.5)
        mask = torch.zeros(H, W, dtype=torch.bool)
        mask[20:36, 25:45] = True
        ds.append(torch.where(mask, table - 0.03, table))
        ms.append(mask)
    depth, mask = torch.stack(ds), torch.stack(ms)
    return {"depth": depth, "mask": mask, "K": K1.repeat(2, 1, 1)}


@pytest.fixture(scope="module")
def sc():
    s = scene()
    from pipeline.geometry import estimate_volume_torch
    s["volume_ml"] = estimate_volume_torch(s["depth"], s["mask"], s["K"], method="heightmap", ring_px=5).float()
    return s


def _grad_ok(loss, pred):
    loss.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_depth_terms_zero_positive_grad(sc):
    gt = sc["depth"]
    valid = valid_depth(gt)
    for fn in (lambda p: depth_l1(p, gt, valid), lambda p: silog_loss(p, gt, valid),
               lambda p: gradient_loss(p, gt, valid)):
        assert float(fn(gt.clone())) == pytest.approx(0.0, abs=1e-6)
        pred = (gt * (1 + 0.05 * torch.rand_like(gt))).requires_grad_()
        loss = fn(pred)
        assert float(loss) > 0
        _grad_ok(loss, pred)


def test_silog_scale_part_and_log0_guard(sc):
    gt, valid = sc["depth"], valid_depth(sc["depth"])
    # lambda = 0.5: a global scale costs sqrt(0.5) |log s|
    assert float(silog_loss(gt * 2, gt, valid)) == pytest.approx(math.sqrt(0.5) * math.log(2), rel=1e-3)
    pred = gt.clone()
    pred[:, :5] = 0.0  # log 0 must not produce inf/NaN
    pred.requires_grad_()
    loss = silog_loss(pred, gt, valid)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(pred.grad).all()


def test_empty_masks_give_zero_with_graph(sc):
    gt = sc["depth"]
    none = torch.zeros_like(gt, dtype=torch.bool)
    pred = gt.clone().requires_grad_()
    for loss in (depth_l1(pred, gt, none), silog_loss(pred, gt, none),
                 gradient_loss(pred, gt, none)):
        assert float(loss) == 0.0
        loss.backward()  # still part of the graph
    z = volume_loss(pred, none, sc["K"], sc["volume_ml"], GEOM)
    assert float(z) == 0.0


def test_intrinsics_loss():
    K = K1.repeat(2, 1, 1)
    assert float(intrinsics_loss(K, K)) == 0.0
    Kp = K.clone().requires_grad_()
    Kq = Kp * torch.tensor([[1.1, 1, 1], [1, 0.9, 1], [1, 1, 1]])
    loss = intrinsics_loss(Kq, K)
    assert float(loss) == pytest.approx(0.1)
    _grad_ok(loss, Kp)


def test_normal_angle():
    a = torch.tensor([[0.0, 0.0, -1.0]])
    b = torch.tensor([[0.0, math.sin(0.2), -math.cos(0.2)]])
    assert float(normal_angle(a, b)) == pytest.approx(0.2, abs=1e-4)
    assert float(normal_angle(a, -a)) == pytest.approx(0.0, abs=1e-4)  # sign-agnostic
    x = a.clone().requires_grad_()
    normal_angle(x, a).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_plane_loss_is_angle_between_support_planes(sc):
    gt = sc["depth"]
    assert float(plane_loss(gt.clone(), gt, sc["mask"], sc["K"], 5)) == pytest.approx(0.0, abs=1e-3)
    tilted = scene(tilt=0.15)["depth"].requires_grad_()
    loss = plane_loss(tilted, gt, sc["mask"], sc["K"], 5)
    assert float(loss) == pytest.approx(0.15, abs=0.02)  # not just 1-|n_z|: a tilted GT table is fine
    _grad_ok(loss, tilted)


def test_volume_loss(sc):
    gt = sc["depth"]
    assert float(volume_loss(gt.clone(), sc["mask"], sc["K"], sc["volume_ml"], GEOM)) == pytest.approx(0, abs=1e-4)
    pred = gt.clone()
    pred = torch.where(sc["mask"], pred - 0.01, pred).requires_grad_()  # food 1 cm taller
    loss = volume_loss(pred, sc["mask"], sc["K"], sc["volume_ml"], GEOM)
    assert float(loss) > 0.1
    _grad_ok(loss, pred)


def test_total_loss_skips_empty_and_stops_on_nan(sc):
    batch = dict(sc)
    out = {"depth": sc["depth"].clone().requires_grad_(), "K": sc["K"]}
    loss, terms = total_loss(out, batch, WEIGHTS, GEOM, predicts_K=False)
    assert float(loss) == pytest.approx(0.0, abs=1e-3) and "intrinsics" not in terms
    loss.backward()
    empty = {**batch, "depth": torch.zeros_like(sc["depth"])}
    assert total_loss(out, empty, WEIGHTS, GEOM, predicts_K=False) == (None, {})
    bad = sc["depth"].clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite training loss"):
        total_loss({"depth": bad, "K": sc["K"]}, batch, {**WEIGHTS, "w_plane": 0, "w_volume": 0, "w_grad": 0},
                   GEOM, predicts_K=False)


def test_check_weights():
    assert check_weights(WEIGHTS)["w_volume"] == 0.1
    with pytest.raises(ValueError, match="missing"):
        check_weights({"w_depth": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        check_weights({**WEIGHTS, "w_grad": -1})


def test_volume_floor_bounds_the_term_for_a_tiny_label(sc):
    """A 0.02 mL label (a mask that missed the food) must not dominate. |V - t| / t gave it a
    gradient ~1 / t (50x a 1 mL label's); the floored log ratio keeps its value and its gradient
    those of an ordinary dish, and is the plain log ratio well above the floor."""
    gt = sc["depth"]
    pred = torch.where(sc["mask"], gt - 0.01, gt)

    def value_and_grad(target: torch.Tensor, floor: float) -> tuple[float, float]:
        p = pred.clone().requires_grad_()
        loss = volume_loss(p, sc["mask"], sc["K"], target, GEOM, floor_ml=floor)
        loss.backward()
        return float(loss), float(p.grad.norm())

    tiny = torch.full_like(sc["volume_ml"], 0.02)
    v_norm, g_norm = value_and_grad(sc["volume_ml"], 20.0)
    v_tiny, g_tiny = value_and_grad(tiny, 20.0)
    assert g_tiny < 3 * g_norm                                      # bounded like a normal dish
    assert value_and_grad(tiny, 1e-3)[0] > 10.0 > 2 * v_tiny        # no floor: log(V / 0.02 mL)
    v = sc["volume_ml"]  # well above the floor: 2x too much volume costs ~log 2
    half = volume_loss(gt.clone(), sc["mask"], sc["K"], v / 2, GEOM, floor_ml=1e-6)
    assert float(half) == pytest.approx(math.log(2), rel=1e-3)


def test_implausible_labels_leave_the_volume_term(sc):
    from pipeline.train.losses import plausible_label
    gt, mask, K = sc["depth"], sc["mask"], sc["K"]
    v = sc["volume_ml"]  # 3 cm of food: plausible
    assert plausible_label(v, mask, gt, K, (3.0, 150.0)).all()
    tiny = torch.tensor([0.02, float(v[1])])  # dish 0: a label far below what its mask implies
    assert plausible_label(tiny, mask, gt, K, (3.0, 150.0)).tolist() == [False, True]
    pred = torch.where(mask, gt - 0.01, gt)
    only_second = volume_loss(pred, mask, K, tiny, GEOM, keep=torch.tensor([False, True]))
    second = volume_loss(pred[1:], mask[1:], K[1:], tiny[1:], GEOM)
    assert float(only_second) == pytest.approx(float(second), rel=1e-5)


def test_labels_above_a_bowl_surface_leave_the_volume_term(sc):
    """A label measured above a bowl's inner surface (index `support` bowl_surface) is not what the
    term's ring-plane geometry measures: that dish leaves the volume term, its depth terms stay."""
    from pipeline.train.datamodule import on_bowl
    from pipeline.train.losses import loss_terms
    assert on_bowl({"support": "bowl_surface"}) and not on_bowl({"support": "plate_floor"})
    assert not on_bowl({}) and not on_bowl({"support": float("nan")})
    gt, mask, K = sc["depth"], sc["mask"], sc["K"]
    pred = torch.where(mask, gt - 0.01, gt)
    w = dict.fromkeys(WEIGHTS, 0.0) | {"w_volume": 1.0, "w_depth": 1.0}
    batch = {"depth": gt, "mask": mask, "K": K, "volume_ml": sc["volume_ml"]}
    both = loss_terms({"depth": pred}, batch, w, GEOM, False)
    second = loss_terms({"depth": pred}, batch | {"bowl_label": torch.tensor([True, False])}, w, GEOM, False)
    alone = loss_terms({"depth": pred[1:]}, {k: v[1:] for k, v in batch.items()}, w, GEOM, False)
    assert float(second["volume"]) == pytest.approx(float(alone["volume"]), rel=1e-5)
    assert float(second["volume"]) != pytest.approx(float(both["volume"]), rel=1e-3)
    assert float(second["depth"]) == pytest.approx(float(both["depth"]))
    none = loss_terms({"depth": pred}, batch | {"bowl_label": torch.tensor([True, True])}, w, GEOM, False)
    assert float(none["volume"]) == 0.0


def test_gradient_term_is_scale_invariant_and_sees_a_flattened_mound(sc):
    gt = sc["depth"]
    valid = valid_depth(gt)
    assert float(gradient_loss(gt * 1.7, gt, valid)) == pytest.approx(0.0, abs=1e-5)  # global scale: free
    flat = torch.where(sc["mask"], gt + 0.015, gt)  # the food half as tall
    assert float(gradient_loss(flat, gt, valid)) > 1e-3


def test_height_term_reads_the_food_height_above_each_plane(sc):
    """Zero at pred == gt and for the same scene on a tilted table; a mound half as tall costs
    half its height (1.5 cm) on every food pixel; same heights as the numpy geometry."""
    import numpy as np

    from pipeline.geometry.plane import fit_support_plane, height_above_plane
    from pipeline.geometry.volume_torch import height_above_plane_torch
    gt, mask, K = sc["depth"], sc["mask"], sc["K"]
    assert float(height_loss(gt.clone(), gt, mask, K, 5)) == pytest.approx(0.0, abs=1e-4)
    tilted = scene(tilt=0.15)
    assert float(height_loss(tilted["depth"], gt, mask, K, 5)) == pytest.approx(0.0, abs=2e-3)
    flat = torch.where(mask, gt + 0.015, gt).requires_grad_()
    loss = height_loss(flat, gt, mask, K, 5)
    assert float(loss) == pytest.approx(0.015, rel=0.1)
    _grad_ok(loss, flat)
    n, d = fit_support_plane(gt[0].numpy(), mask[0].numpy(), K[0].numpy(), 5)
    h_np = height_above_plane(gt[0].numpy(), K[0].numpy(), n, d)
    h_t = height_above_plane_torch(gt[:1].double(), K[:1], torch.as_tensor(n)[None], torch.tensor([d]))[0]
    np.testing.assert_allclose(h_t.numpy(), h_np, atol=1e-6)
