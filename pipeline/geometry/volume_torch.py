"""The batched, differentiable torch twin of `volume.estimate_volume` (losses, validation):
same formulas, float64 agreement with numpy, gradients to the predicted depth."""
from __future__ import annotations

import contextvars
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.config import VolumeConfig, or_default
from pipeline.geometry.camera import check_K
from pipeline.geometry.plane import support_mask
from pipeline.geometry.shared import (
    EDGE_SMOOTH,
    GAP_KERNEL,
    NOISE_BAND,
    TOP_BAND,
    boundary,
    box_sum_torch,
    cell_of,
    cell_size,
    check_method,
    edge_areas,
    fill_plan,
    filled_depth,
    footprint_splat,
    grid_plan,
    hidden_samples,
    hidden_weight,
    in_mask,
    inlier_thr,
    noise_sigma,
    patch_maps,
    ransac_draws,
)


def _t_rays(Kinv: Tensor, ys: Tensor, xs: Tensor) -> Tensor:
    pix = torch.stack([xs.to(Kinv.dtype), ys.to(Kinv.dtype), torch.ones_like(xs, dtype=Kinv.dtype)], 1)
    r = pix @ Kinv.T
    return r / r[:, 2:3]


def _t_orient(n: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
    s = torch.where(d.detach() >= 0, 1.0, -1.0).to(n.dtype)
    return n * s, d * s


def _t_ls_plane(P: Tensor) -> tuple[Tensor, Tensor]:
    c = P.mean(0)
    Q = P - c
    _, vec = torch.linalg.eigh(Q.T @ Q)
    n = vec[:, 0]
    return _t_orient(n, -(n @ c))


def fit_plane_torch(points: Tensor, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Torch twin of fit_plane (same draws): differentiable through the LS refit."""
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points: must be Nx3, got shape {tuple(points.shape)}")
    P = points[torch.isfinite(points).all(1)]
    if len(P) < 3:
        raise ValueError(f"points: need >= 3 finite points to fit a plane, got {len(P)}")
    sub, hyp, refit = ransac_draws(len(P), seed)
    dev = P.device
    with torch.no_grad():
        S = P[torch.as_tensor(sub, device=dev)]
        thr = inlier_thr(S.cpu().numpy())
        hy = torch.as_tensor(hyp, device=dev)
        A, B, C = S[hy[:, 0]], S[hy[:, 1]], S[hy[:, 2]]
        nrm = torch.linalg.cross(B - A, C - A)
        ln = nrm.norm(dim=1)
        ok = ln > 1e-12
        nrm = nrm / torch.where(ok, ln, torch.ones_like(ln))[:, None]
        dd = -(nrm * A).sum(1)
        score = ((S @ nrm.T + dd).abs() < thr).sum(0)
        score = torch.where(ok, score, torch.full_like(score, -1))
        k = int(torch.argmax(score))
        if int(score[k]) < 3:
            raise ValueError("points: degenerate (collinear) point set, no plane")
        n, d = nrm[k], dd[k]
    R = P[torch.as_tensor(refit, device=dev)]
    for _ in range(2):
        inl = (R.detach() @ n.detach() + d.detach()).abs() < thr
        if int(inl.sum()) < 3:
            break
        n, d = _t_ls_plane(R[inl])
    return _t_orient(n, d)


def _t_check(depth: Tensor, mask: Tensor, K: Tensor) -> None:
    if depth.ndim != 3:
        raise ValueError(f"depth: must be BxHxW, got shape {tuple(depth.shape)}")
    if mask.shape != depth.shape:
        raise ValueError(f"depth/mask shape mismatch: {tuple(depth.shape)} vs {tuple(mask.shape)}")
    if K.ndim != 3 or K.shape[0] != depth.shape[0] or K.shape[1:] != (3, 3):
        raise ValueError(f"K: must be Bx3x3 with B={depth.shape[0]}, got {tuple(K.shape)}")


def _t_support_points(depth: Tensor, mask_np: np.ndarray, valid_np: np.ndarray,
                      Kinv: Tensor, ring_px: int) -> Tensor:
    ys, xs = np.nonzero(support_mask(mask_np, valid_np, ring_px))
    ys_t = torch.as_tensor(ys, device=depth.device)
    xs_t = torch.as_tensor(xs, device=depth.device)
    return _t_rays(Kinv, ys_t, xs_t) * depth[ys_t, xs_t][:, None].to(Kinv.dtype)


def _t_support_fit(depth: Tensor, mask_np: np.ndarray, valid_np: np.ndarray, Kinv: Tensor,
                   ring_px: int, seed: int) -> tuple[Tensor, Tensor]:
    P = _t_support_points(depth, mask_np, valid_np, Kinv, ring_px)
    if len(P) < 3:
        raise ValueError(f"depth: no valid support pixels around the mask ({len(P)} found)")
    return fit_plane_torch(P, seed)


def _t_prepare(depth: Tensor, mask: Tensor, K: Tensor, b: int):
    """Per-item numpy views of the non-differentiable inputs (mask, validity) and K^-1."""
    Kb = check_K(K[b].detach().cpu().numpy())
    dt = depth.dtype if depth.dtype in (torch.float32, torch.float64) else torch.float32
    Kinv = torch.linalg.inv(K[b].to(dt))
    m = mask[b].detach().cpu().numpy().astype(bool)
    if not m.any():
        raise ValueError(f"mask[{b}]: empty (no food pixels)")
    db = depth[b]
    valid_t = torch.isfinite(db) & (db > 0)
    return Kb, Kinv, m, valid_t, valid_t.cpu().numpy()


# while True, the twin works on a host copy: what it does there makes the device wait for
# nothing (sync counters in bench/bench_geometry.py skip it)
HOST_SIDE: contextvars.ContextVar[bool] = contextvars.ContextVar("geometry_host_side",
                                                                 default=False)
HOST_COPY: bool | None = None   # default of host_copy; None: when depth is not on the CPU


def _use_host(depth: Tensor, host_copy: bool | None) -> bool:
    host_copy = HOST_COPY if host_copy is None else host_copy
    return depth.device.type != "cpu" if host_copy is None else bool(host_copy)


def _host_twin(fn, depth: Tensor, mask: Tensor, K: Tensor, params: list[Tensor]) -> Tensor:
    """fn(depth, mask, K, *params) -> (B, k), evaluated on a host copy of the batch and
    returned on depth's device with the same values and the same first derivatives w.r.t.
    depth and params: y = y0 + sum(J * (x - x.detach())).

    Why: the twin's discrete decisions (which pixels, how many cells, which stencil) depend
    on the data, so on a GPU each is a host sync (about 75 per dish). Here the device sends
    one packed copy per call and gets the values and Jacobians back in one asynchronous
    (pinned) copy. First derivatives only (no double backward)."""
    dev, dt, B = depth.device, depth.dtype, depth.shape[0]
    grad_in = [x for x in [depth, *params] if x.requires_grad and torch.is_grad_enabled()]
    parts = [x.detach().reshape(B, -1).to(device=dev, dtype=dt) for x in [depth, mask, K, *params]]
    host = torch.cat(parts, 1).cpu().split([x.shape[1] for x in parts], 1)   # the one sync
    dh = host[0].reshape(depth.shape).requires_grad_(depth.requires_grad)
    ph = [h.reshape(p.shape).requires_grad_(p.requires_grad) for h, p in zip(host[3:], params)]
    token = HOST_SIDE.set(True)
    try:
        with torch.enable_grad():
            y = fn(dh, host[1].reshape(mask.shape) > 0.5, host[2].reshape(K.shape), *ph)
            h_in = [x for x, d in zip([dh, *ph], [depth, *params]) if any(d is g for g in grad_in)]
            jac = [torch.autograd.grad(y[:, j].sum(), h_in, retain_graph=j + 1 < y.shape[1],
                                       allow_unused=True, materialize_grads=True)
                   for j in range(y.shape[1])] if h_in else []
    finally:
        HOST_SIDE.reset(token)
    # values and Jacobians back in one copy: J[i] (B, k, numel of input i per dish)
    J = [torch.stack([jac[j][i].reshape(B, -1) for j in range(y.shape[1])], 1)
         for i in range(len(h_in))]
    back = torch.cat([y.detach()] + [x.reshape(B, -1) for x in J], 1).to(dt)
    if dev.type == "cuda":
        back = back.pin_memory()
    back = back.to(dev, non_blocking=True).split(
        [y.shape[1]] + [x.shape[1] * x.shape[2] for x in J], 1)
    out = back[0]
    for x, Jx in zip(grad_in, back[1:]):
        delta = (x - x.detach()).reshape(B, 1, -1).to(dt)
        out = out + (Jx.reshape(B, y.shape[1], -1) * delta).sum(-1)
    return out


def fit_support_plane_torch(depth: Tensor, mask: Tensor, K: Tensor, ring_px: int | None = None,
                            seed: int = 0, host_copy: bool | None = None
                            ) -> tuple[Tensor, Tensor]:
    """Batched torch twin of fit_support_plane: (normals Bx3, d B). host_copy: see
    estimate_volume_torch."""
    ring_px = or_default(VolumeConfig, ring_px=ring_px)
    _t_check(depth, mask, K)
    if _use_host(depth, host_copy):
        def fit(dh, mh, Kh):
            n, d = fit_support_plane_torch(dh, mh, Kh, ring_px, seed, host_copy=False)
            return torch.cat([n, d[:, None]], 1)
        nd = _host_twin(fit, depth, mask, K, [])
        return nd[:, :3], nd[:, 3]
    ns, ds = [], []
    for b in range(depth.shape[0]):
        _, Kinv, m, _, valid = _t_prepare(depth, mask, K, b)
        n, d = _t_support_fit(depth[b], m, valid, Kinv, ring_px, seed)
        ns.append(n)
        ds.append(d)
    return torch.stack(ns), torch.stack(ds)


def height_above_plane_torch(depth: Tensor, K: Tensor, normal: Tensor, d: Tensor) -> Tensor:
    """Batched torch twin of plane.height_above_plane: BxHxW height n.X + d (m) of every pixel
    above its item's plane (normal Bx3 towards the camera, d B); differentiable in depth and plane."""
    B, H, W = depth.shape
    ys, xs = torch.meshgrid(torch.arange(H, device=depth.device), torch.arange(W, device=depth.device),
                            indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    hs = [(_t_rays(torch.linalg.inv(K[b].double()), ys, xs).to(depth.dtype) @ normal[b].to(depth.dtype))
          * depth[b].reshape(-1) + d[b].to(depth.dtype) for b in range(B)]
    return torch.stack(hs).reshape(B, H, W)


def estimate_volume_torch(depth: Tensor, mask: Tensor, K: Tensor, method: str | None = None,
                          ring_px: int | None = None, cell_mm: float | None = None,
                          plane: tuple[Tensor, Tensor] | None = None, seed: int = 0,
                          host_copy: bool | None = None) -> Tensor:
    """Batched, differentiable (w.r.t. depth and a given plane) twin of estimate_volume:
    volumes (B,) in mL.

    Discrete decisions (support pixels, inliers, cell indices, occupancy) are taken on
    detached values; every value that enters the volume keeps its graph. host_copy (default:
    when depth is not on the CPU): the per-dish work (data-dependent point counts, grid
    sizes, stencils) runs on one host copy of the batch and comes back as values plus their
    first derivatives (see _host_twin): one device->host copy per call instead of tens of
    host syncs per dish. method, ring_px, cell_mm: params `volume:` (None: its default)."""
    method, ring_px, cell_mm = or_default(VolumeConfig, method=method, ring_px=ring_px, cell_mm=cell_mm)
    check_method(method)
    _t_check(depth, mask, K)
    if cell_mm <= 0:
        raise ValueError(f"cell_mm: must be positive, got {cell_mm}")
    if _use_host(depth, host_copy):
        def vol(dh, mh, Kh, *pl):
            return estimate_volume_torch(dh, mh, Kh, method, ring_px, cell_mm,
                                         tuple(pl) if pl else None, seed, host_copy=False)[:, None]
        return _host_twin(vol, depth, mask, K, list(plane) if plane is not None else [])[:, 0]
    out = []
    for b in range(depth.shape[0]):
        Kb, Kinv, m, valid_t, valid = _t_prepare(depth, mask, K, b)
        db = depth[b].to(Kinv.dtype)
        food = m & valid
        if not food.any():
            raise ValueError(f"depth[{b}]: no valid depth inside the mask")
        P = _t_support_points(db, m, valid, Kinv, ring_px)
        if plane is None:
            if len(P) < 3:
                raise ValueError(f"depth[{b}]: no valid support pixels around the mask "
                                 f"({len(P)} found)")
            n, d = fit_plane_torch(P, seed)
        else:
            n0 = plane[0][b].to(db.dtype)
            ln = n0.norm()
            n, d = _t_orient(n0 / ln, plane[1][b].to(db.dtype) / ln)
        sigma = noise_sigma(P.detach().cpu().numpy(), n.detach().cpu().numpy(), float(d.detach()))
        out.append(_t_volume(db, m, food, Kb, Kinv, n, d, method, cell_mm * 1e-3, sigma))
    return torch.stack(out)


def _t_volume(db, m, food, Kb, Kinv, n, d, method, c, sigma) -> Tensor:
    dev = db.device
    ys, xs = np.nonzero(m)
    ys_t, xs_t = torch.as_tensor(ys, device=dev), torch.as_tensor(xs, device=dev)
    r = _t_rays(Kinv, ys_t, xs_t)
    Z = db[ys_t, xs_t]
    ok = food[ys, xs]
    if not ok.all():
        Z = filled_depth(Z, torch.as_tensor(ok, device=dev), r @ n, ys, xs, d,
                         fill_plan(m, food), torch)
    X = r * Z[:, None]
    h = (X @ n + d).clamp(min=0.0)
    area = Z * Z / (float(Kb[0, 0] * Kb[1, 1]) * (r @ n).abs())
    if method == "columns":
        return (h * area).sum() * 1e6
    c = cell_size(c * 1e3, area.detach().cpu().numpy())
    e1, e2 = _t_plane_basis(n)
    bnd = torch.as_tensor(boundary(m)[ys, xs], device=dev)
    Xb, hb = X[bnd], h[bnd]
    nX = Xb @ n
    s = torch.where(nX < -1e-9, (-hb / nX.clamp(max=-1e-9)).clamp(max=1.0), torch.zeros_like(hb))
    Xp = Xb * (1.0 + s)[:, None]
    ab, bb = Xb @ e1, Xb @ e2
    ap, bp = Xp @ e1, Xp @ e2
    a, b = X @ e1, X @ e2
    with torch.no_grad():
        a0, b0, nx, ny = grid_plan(torch.cat([a, ap]).cpu().numpy(),
                                    torch.cat([b, bp]).cpu().numpy(), c)
        cell = cell_of(a.detach(), b.detach(), a0, b0, nx, c)
    view = (*(x.detach().cpu().numpy() for x in (e1, e2, n)), float(d.detach()), Kb, m)
    patch_area = partial(edge_areas, area, *patch_maps(ys, xs, (a, b, h), torch), torch)
    grid = _t_heightmap(cell, h, patch_area, (a, b), (ab, bb, ap, bp, hb), a0, b0, nx, ny, c,
                        sigma, view)
    return grid.sum() * c * c * 1e6


def _t_plane_basis(n: Tensor) -> tuple[Tensor, Tensor]:
    ax = 0 if abs(float(n[0].detach())) < 0.9 else 1
    a = torch.zeros(3, dtype=n.dtype, device=n.device)
    a[ax] = 1.0
    e1 = a - (a @ n) * n
    e1 = e1 / e1.norm()
    return e1, torch.linalg.cross(n, e1)


def _t_dilate(x: Tensor, k: int) -> Tensor:
    return F.max_pool2d(x[None, None], k, stride=1, padding=k // 2)[0, 0]


def _t_erode(x: Tensor, k: int) -> Tensor:
    return -_t_dilate(-x, k)


def _t_heightmap(cell, h, patch_area, ab_pts, rays, a0, b0, nx, ny, c, sigma, view) -> Tensor:
    """Torch twin of _heightmap_np; heights and coverage keep their graph."""
    N = nx * ny
    dt, dev = h.dtype, h.device
    top = torch.full((N,), -torch.inf, dtype=dt, device=dev).scatter_reduce(
        0, cell, h.detach(), "amax")
    band = h.detach() >= top[cell] - (TOP_BAND * c + NOISE_BAND * sigma)
    cnt = torch.bincount(cell, minlength=N)
    nb = torch.bincount(cell[band], minlength=N).clamp(min=1).to(dt)
    vis = torch.zeros(N, dtype=dt, device=dev).index_add(0, cell[band], h[band]) / nb
    occ = (cnt > 0).reshape(ny, nx)
    vis = vis.reshape(ny, nx)
    occf = occ.to(dt)
    closed = _t_erode(_t_dilate(occf, GAP_KERNEL), GAP_KERNEL) > 0.5
    num = box_sum_torch(vis * occf, GAP_KERNEL)
    den = box_sum_torch(occf, GAP_KERNEL)
    gap_h = num / den.clamp(min=1.0)
    gap = torch.as_tensor(in_mask((closed & ~occ).cpu().numpy(), gap_h.detach().cpu().numpy(),
                                   a0, b0, c, *view), device=dev)
    zero = torch.zeros((), dtype=dt, device=dev)
    seen_h = torch.where(occ, vis, torch.where(gap, gap_h, zero))
    ab, bb, ap, bp, hb = rays
    with torch.no_grad():
        w = hidden_weight(*(x.detach().cpu().numpy() for x in (seen_h, ab, bb, ap, bp, hb)),
                           a0, b0, nx, c, sigma)
    ha, hbb, tw = hidden_samples(ab, bb, ap, bp, hb, c, torch)
    hcell = cell_of(ha.detach(), hbb.detach(), a0, b0, nx, c)
    hh = ((torch.as_tensor(w, dtype=dt, device=dev) * hb)[:, None] * tw).reshape(-1)
    hid = torch.full((N,), -torch.inf, dtype=dt, device=dev).scatter_reduce(0, hcell, hh, "amax")
    hid = torch.where(torch.isfinite(hid), hid, zero).reshape(ny, nx)
    fill = (hid.detach() > 0) & ~(occ | gap)
    out = torch.where(fill, hid, seen_h)
    seen = (occ | gap).to(dt)
    edge = occ & ~(_t_erode(seen, 3) > 0.5)
    near = (_t_dilate(edge.to(dt), 3) > 0.5).reshape(-1)[cell]
    area = patch_area(near, edge.reshape(-1)[cell][near])
    with torch.no_grad():
        tgt, wts = footprint_splat(*(x.detach().cpu().numpy()
                                      for x in (ab_pts[0][near], ab_pts[1][near], area)),
                                    a0, b0, nx, c, (cnt > 0).cpu().numpy())
    wts_t = torch.as_tensor(wts, dtype=dt, device=dev)
    asum = torch.zeros(N, dtype=dt, device=dev).index_add(
        0, torch.as_tensor(tgt, device=dev), wts_t * area.repeat(4)).reshape(ny, nx)
    ef = edge.to(dt)
    cov = box_sum_torch(asum * ef, EDGE_SMOOTH) / box_sum_torch(ef, EDGE_SMOOTH).clamp(min=1.0)
    cov = (cov / (c * c)).clamp(max=1.0)
    return out * torch.where(edge, cov, torch.ones_like(cov))
