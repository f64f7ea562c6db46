"""Training losses, computed in fp32 whatever the autocast precision.

Weights come from params.yaml `loss.*`. Volume and plane terms go through
pipeline.geometry (the same code that makes the labels and the evaluation), so the model
is trained on exactly the quantity it is judged by.
"""
from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from pipeline.config import LossConfig

LOSS_KEYS = ("w_depth", "w_grad", "w_plane", "w_volume", "w_silog", "w_intrinsics", "w_height",
             "w_mask")
SETTING_KEYS = ("volume_floor_ml", "label_height_mm")   # loss settings that are not weights


def valid_depth(depth: Tensor) -> Tensor:
    """True where a GT depth measurement exists (0 / non-finite = none)."""
    return torch.isfinite(depth) & (depth > 0)


def graph_zero(pred: Tensor) -> Tensor:
    """A zero that keeps the graph (so an all-skipped term still back-propagates cleanly)."""
    return pred.sum() * 0.0


def depth_l1(pred: Tensor, gt: Tensor, valid: Tensor) -> Tensor:
    """Mean |pred - gt| (m) over valid GT pixels of the batch."""
    if not valid.any():
        return graph_zero(pred)
    return (pred.float() - gt.float()).abs()[valid].mean()


def gradient_loss(pred: Tensor, gt: Tensor, valid: Tensor, scales: int = 4) -> Tensor:
    """Scale-invariant gradient matching on log depth (MegaDepth / MiDaS): with
    r = log pred - log gt, the mean |d r / dx| + |d r / dy| over pixel pairs where both GT
    pixels are valid, at `scales` resolutions (stride 1, 2, 4, ...). A global scale error leaves r
    constant and costs nothing; a flattened food mound or a missing table tilt does cost, and
    in log space its size does not shrink with the input resolution (a Sobel on metres did)."""
    pred = pred.float().clamp_min(1e-6)
    gt = torch.where(valid, gt.float(), torch.ones_like(gt, dtype=torch.float32))
    r = torch.where(valid, torch.log(pred) - torch.log(gt), torch.zeros_like(pred))
    total, n = pred.new_zeros(()), 0
    for k in range(max(1, int(scales))):
        s = 2 ** k
        rk, vk = r[:, ::s, ::s], valid[:, ::s, ::s]
        for dim in (1, 2):
            a, b = rk.narrow(dim, 1, rk.shape[dim] - 1), rk.narrow(dim, 0, rk.shape[dim] - 1)
            both = vk.narrow(dim, 1, vk.shape[dim] - 1) & vk.narrow(dim, 0, vk.shape[dim] - 1)
            if both.any():
                total = total + (a - b).abs()[both].mean()
                n += 1
    return total / n if n else graph_zero(pred)


def silog_loss(pred: Tensor, gt: Tensor, valid: Tensor, lam: float = 0.5, eps: float = 1e-8) -> Tensor:
    """Scale-invariant log loss per image, sqrt(mean g^2 - lam (mean g)^2), batch mean.
    fp32, log guarded (pred clamped > 0), images with < 2 valid pixels skipped."""
    pred = pred.float().clamp_min(1e-6)
    gt = torch.where(valid, gt.float(), torch.ones_like(gt, dtype=torch.float32))
    g = torch.where(valid, torch.log(pred) - torch.log(gt), torch.zeros_like(pred))
    n = valid.flatten(1).sum(1).float()
    keep = n >= 2
    if not keep.any():
        return graph_zero(pred)
    n = n.clamp_min(1)
    m1 = g.flatten(1).sum(1) / n
    m2 = (g * g).flatten(1).sum(1) / n
    var = (m2 - lam * m1 * m1).clamp_min(0)
    per = torch.sqrt(var + eps) - math.sqrt(eps)
    return per[keep].mean()


def focal_rel_errors(K_pred: Tensor, K_true: Tensor) -> Tensor:
    """Bx2 relative errors |fx_pred - fx| / fx, |fy_pred - fy| / fy (the reported K error)."""
    Kp, Kt = K_pred.float(), K_true.float()
    idx = torch.arange(2, device=Kp.device)
    return (Kp[:, idx, idx] - Kt[:, idx, idx]).abs() / Kt[:, idx, idx]


def intrinsics_loss(K_pred: Tensor, K_true: Tensor) -> Tensor:
    """Mean relative error of predicted fx, fy."""
    return focal_rel_errors(K_pred, K_true).mean()


def normal_angle(n1: Tensor, n2: Tensor) -> Tensor:
    """Angle (rad) between unit normals, sign-agnostic, with a finite gradient at 0."""
    n1, n2 = n1.float(), n2.float()
    dot = (n1 * n2).sum(-1).abs()
    cross = torch.linalg.cross(n1, n2, dim=-1)
    return torch.atan2(torch.sqrt((cross * cross).sum(-1) + 1e-12), dot) - 1e-6


def fit_plane(depth: Tensor, mask: Tensor, K: Tensor, ring_px: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Support plane (normal Bx3 towards the camera, d B) via pipeline.geometry; GT holes stay 0."""
    from pipeline.geometry.volume_torch import fit_support_plane_torch
    d = torch.where(valid_depth(depth), depth.float(), torch.zeros_like(depth, dtype=torch.float32))
    return fit_support_plane_torch(d, mask, K.float(), ring_px=ring_px, seed=seed)


def gt_support_plane(gt: Tensor, mask: Tensor, K: Tensor, ring_px: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """The measured depth's support plane (no gradient): the target of the plane and height terms."""
    with torch.no_grad():
        return fit_plane(gt, mask, K, ring_px, seed)


def plane_loss(pred: Tensor, gt: Tensor, mask: Tensor, K: Tensor, ring_px: int, seed: int = 0,
               pred_plane: tuple[Tensor, Tensor] | None = None,
               gt_plane: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """Angle between the support-plane normals fitted (pipeline.geometry) on pred and GT:
    generalises the seed's 1-|n_z|, which assumed a level table seen from above."""
    n_gt = (gt_plane if gt_plane is not None else gt_support_plane(gt, mask, K, ring_px, seed))[0]
    n_pred = (pred_plane if pred_plane is not None else fit_plane(pred, mask, K, ring_px, seed))[0]
    return normal_angle(n_pred, n_gt).clamp_min(0).mean()


def height_loss(pred: Tensor, gt: Tensor, mask: Tensor, K: Tensor, ring_px: int, seed: int = 0,
                pred_plane: tuple[Tensor, Tensor] | None = None,
                gt_plane: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """Mean |h_pred - h_gt| (m) over the food mask's valid GT pixels: each pixel's height above
    the support plane fitted (pipeline.geometry) on its own depth map, the prediction's on the
    prediction. The volume term integrates these heights into one number per dish; this one asks
    every food pixel for its height, where the food's shape is (a flattened mound costs here even
    when a scale error happens to give the right volume)."""
    from pipeline.geometry.volume_torch import height_above_plane_torch
    food = mask & valid_depth(gt)
    if not food.any():
        return graph_zero(pred)
    n_gt, d_gt = gt_plane if gt_plane is not None else gt_support_plane(gt, mask, K, ring_px, seed)
    with torch.no_grad():
        h_gt = height_above_plane_torch(torch.where(valid_depth(gt), gt.float(), torch.zeros_like(pred)),
                                        K.float(), n_gt, d_gt)
    n_p, d_p = pred_plane if pred_plane is not None else fit_plane(pred, mask, K, ring_px, seed)
    h_pred = height_above_plane_torch(pred, K.float(), n_p, d_p)
    return (h_pred - h_gt).abs()[food].mean()


def plausible_label(target_ml: Tensor, mask: Tensor, gt: Tensor, K: Tensor,
                    height_mm: tuple[float, float]) -> Tensor:
    """B bool: the label is plausible for its mask. label / (mask area on the table) is the
    food's mean height; outside `height_mm` the mask missed the food (a 0.02 mL label on a
    plate-sized mask) or is a speck under a large label, and such a dish would dominate a
    relative volume loss. Area: mask pixels x Z^2 / (fx fy), Z the median valid GT depth in it."""
    valid = valid_depth(gt) & mask
    out = torch.zeros(len(mask), dtype=torch.bool, device=mask.device)
    for i in range(len(mask)):
        if not valid[i].any() or not torch.isfinite(target_ml[i]) or target_ml[i] <= 0:
            continue
        z = gt[i][valid[i]].float().median()
        area_m2 = mask[i].sum().float() * z * z / (K[i, 0, 0].float() * K[i, 1, 1].float())
        h_mm = float(target_ml[i].float() * 1e-6 / area_m2 * 1e3)
        out[i] = height_mm[0] <= h_mm <= height_mm[1]
    return out


def volume_loss(pred: Tensor, mask: Tensor, K: Tensor, target_ml: Tensor, geom: dict,
                pred_plane: tuple[Tensor, Tensor] | None = None, floor_ml: float = 20.0,
                keep: Tensor | None = None) -> Tensor:
    """Mean |log((V(pred) + floor) / (V_label + floor))|, V through
    pipeline.geometry.estimate_volume_torch with the true K. The floor bounds the gradient
    (<= 1 / floor per mL) where |V - t| / t would explode for a tiny label; for labels well
    above the floor it is the log ratio, symmetric in over- and underestimation.
    `keep`: dishes allowed in the term (plausible labels); others are left out."""
    from pipeline.geometry.volume_torch import estimate_volume_torch
    ok = torch.isfinite(target_ml) & (target_ml > 0) & mask.flatten(1).any(1)
    if keep is not None:
        ok = ok & keep
    if not ok.any():
        return graph_zero(pred)
    plane = None if pred_plane is None else (pred_plane[0][ok], pred_plane[1][ok])
    vol = estimate_volume_torch(pred[ok].float(), mask[ok], K[ok].float(),
                                method=geom["method"], ring_px=int(geom["ring_px"]),
                                cell_mm=float(geom["cell_mm"]), plane=plane, seed=int(geom["seed"]))
    t = target_ml[ok].float()
    f = float(floor_ml)
    return (torch.log(vol.float().clamp_min(0) + f) - torch.log(t + f)).abs().mean()


def check_weights(weights: dict | LossConfig) -> dict[str, float]:
    """`loss` params -> floats; unknown or missing keys are a ValueError naming them."""
    if dataclasses.is_dataclass(weights):
        weights = dataclasses.asdict(weights)
    missing = [k for k in LOSS_KEYS if k not in weights]
    unknown = [k for k in weights if k not in LOSS_KEYS + SETTING_KEYS]
    if missing or unknown:
        raise ValueError(f"params.yaml loss: missing {missing}, unknown {unknown}")
    out = {k: float(weights[k]) for k in LOSS_KEYS}
    bad = [k for k, v in out.items() if not math.isfinite(v) or v < 0]
    if bad:
        raise ValueError(f"params.yaml loss: weights must be finite and >= 0: {bad}")
    return out


def loss_settings(loss: dict | LossConfig | None) -> dict:
    """The `loss` params that are not weights (volume floor, plausible label heights)."""
    full = dataclasses.asdict(LossConfig())
    if loss is not None:
        full.update(dataclasses.asdict(loss) if dataclasses.is_dataclass(loss) else dict(loss))
    floor, (lo, hi) = float(full["volume_floor_ml"]), full["label_height_mm"]
    if not (math.isfinite(floor) and floor > 0) or not 0 <= float(lo) < float(hi):
        raise ValueError(f"params.yaml loss: volume_floor_ml must be > 0 ({floor}) and "
                         f"label_height_mm an increasing [low, high] pair ({[lo, hi]})")
    return {"volume_floor_ml": floor, "label_height_mm": (float(lo), float(hi))}


TERM_NAMES = ("depth", "grad", "plane", "volume", "silog", "intrinsics", "height",
              "mask")  # term k has weight w_k


def loss_terms(out: dict[str, Tensor], batch: dict[str, Tensor], weights: dict[str, float],
               geom: dict, predicts_K: bool, settings: dict | None = None) -> dict[str, Tensor] | None:
    """Each loss term with a positive weight (fp32 tensors, unweighted), or None for a batch
    with no valid GT pixel. Terms the model cannot have (intrinsics for a model that takes K)
    are left out, and so is the mask term for a model without a food-mask head (no `mask_logits`).
    `settings`: `loss_settings(...)` (defaults when None)."""
    settings = settings or loss_settings(None)
    gt, mask, K = batch["depth"], batch["mask"], batch["K"]
    valid = valid_depth(gt)
    if not valid.any():
        return None
    pred = out["depth"].float()
    ring = int(geom["ring_px"])
    with torch.autocast(device_type=pred.device.type, enabled=False):
        terms: dict[str, Tensor] = {}
        if weights["w_depth"] > 0:
            terms["depth"] = depth_l1(pred, gt, valid)
        if weights["w_grad"] > 0:
            terms["grad"] = gradient_loss(pred, gt, valid)
        if weights["w_silog"] > 0:
            terms["silog"] = silog_loss(pred, gt, valid)
        seed = int(geom["seed"])
        # one support-plane fit on the prediction serves the geometric terms
        plane = (fit_plane(pred, mask, K, ring, seed)
                 if weights["w_plane"] > 0 or weights["w_volume"] > 0 or weights["w_height"] > 0 else None)
        # and one on the measured depth serves the plane and height terms
        gt_plane = (gt_support_plane(gt, mask, K, ring, seed)
                    if weights["w_plane"] > 0 or weights["w_height"] > 0 else None)
        if weights["w_plane"] > 0:
            terms["plane"] = plane_loss(pred, gt, mask, K, ring, seed, pred_plane=plane, gt_plane=gt_plane)
        if weights["w_volume"] > 0:
            keep = plausible_label(batch["volume_ml"], mask, gt, K, settings["label_height_mm"])
            if "bowl_label" in batch:   # measured above a bowl's surface, which the ring plane does not
                # see: the ring-plane volume of even the measured depth reads such a label far low
                keep = keep & ~torch.as_tensor(batch["bowl_label"], device=keep.device).bool()
            terms["volume"] = volume_loss(pred, mask, K, batch["volume_ml"], geom, pred_plane=plane,
                                          floor_ml=settings["volume_floor_ml"], keep=keep)
        if weights["w_height"] > 0:
            terms["height"] = height_loss(pred, gt, mask, K, ring, seed, pred_plane=plane, gt_plane=gt_plane)
        if predicts_K and weights["w_intrinsics"] > 0:
            terms["intrinsics"] = intrinsics_loss(out["K"], K)
        if "mask_logits" in out and weights["w_mask"] > 0:   # the food-mask head vs the masks stage's mask
            from pipeline.models.mask_head import mask_loss
            terms["mask"] = mask_loss(out["mask_logits"], mask)
    return terms


def weighted_sum(terms: dict[str, Tensor], weights: dict[str, float]) -> Tensor:
    """sum_k w_k * term_k (the training loss)."""
    return sum(weights["w_" + k] * v for k, v in terms.items())


def total_loss(out: dict[str, Tensor], batch: dict[str, Tensor], weights: dict[str, float],
               geom: dict, predicts_K: bool, settings: dict | None = None) -> tuple[Tensor | None, dict[str, float]]:
    """Weighted sum of all terms (fp32). Returns (None, {}) for a batch with no valid GT
    pixel (the caller skips it); raises FloatingPointError naming the terms if non-finite."""
    terms = loss_terms(out, batch, weights, geom, predicts_K, settings)
    if terms is None:
        return None, {}
    total = weighted_sum(terms, weights)
    logs = {k: float(v.detach()) for k, v in terms.items()}
    if not torch.isfinite(total):
        raise FloatingPointError(f"non-finite training loss {float(total)}; terms: {logs}")
    return total, logs
