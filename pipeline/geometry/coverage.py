"""What the numpy path and its torch twin share, written once for both array libraries
(`lib` is numpy or torch): each pixel's horizontal surface-patch area, edge coverage, the
food-side filling of depth holes, the height-map grid and the hidden-cell samples."""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.geometry.camera import _bbox, _median

HIDDEN_FILL = 0.8        # hidden cells get this fraction of the grazing-ray height
TOP_BAND = 1.0           # cell height = mean of samples within TOP_BAND * cell of its max
NOISE_BAND = 3.0         # ... plus NOISE_BAND * depth-noise sigma (from the support ring)
EDGE_SMOOTH = 3          # edge-cell coverage is averaged over this window of edge cells
MIN_CELL_PX = 3.0        # heightmap cells span at least this many pixel footprints
PROBE_NOISE = 2.0        # a fall smaller than PROBE_NOISE * sigma is noise, not a slope
HIDDEN_PROBE = 1         # cells inside the silhouette where the top's fall is probed
GAP_MASK_TOL_PX = 1      # a gap cell may project this far (px) outside the mask
GAP_KERNEL = 3           # closing kernel (cells) for sub-sampling gaps and holes
ENO_SMOOTH_M = 2e-5      # patch area: second differences below this (m) count as smooth
ENO_RATIO = 2.0          # ... and a one-sided stencil must be this much smoother


def _cell_size(cell_mm: float, area: np.ndarray) -> float:
    """Cell edge (m): cell_mm, but at least MIN_CELL_PX pixel footprints, so every cell
    holds several samples (edge coverage and gap closing need them at low resolution)."""
    return max(cell_mm * 1e-3, MIN_CELL_PX * float(np.sqrt(_median(area[::8]))))


def _eno_diff(S, lib):
    """Derivatives of plane coordinates (a, b) along the image axes from samples S
    (3 = [a, b, h], 2 axes, 5 offsets -2..2, N pixels; NaN = not food), each with the
    smoothest stencil (ENO): central where the surface is smooth across the pixel, else the
    one-sided difference whose side is smoother. Why: at a crease (a flat top meeting a
    wall) a central difference mixes the top's and the wall's footprints; the smoother side
    keeps each pixel on its own surface. Stencil choices are made on detached values.
    Returns (d (2, 2, N): [a, b] x axis x pixel, ok (2, N)). Pixels last: numpy is slow
    on short inner axes."""
    D = S if lib is np else S.detach()
    inf = float("inf")
    sec = D[:, :, 2:] - 2 * D[:, :, 1:4] + D[:, :, :3]   # at offsets -1, 0, +1
    nrm = lib.sqrt((sec * sec).sum(0))                   # (2 axes, 3, N)
    nrm = lib.where(lib.isfinite(nrm), nrm, inf) if lib is np else torch.nan_to_num(nrm, nan=inf)
    b2, c2, f2 = nrm[:, 0], nrm[:, 1], nrm[:, 2]
    has_b, has_f = lib.isfinite(D[0, :, 1]), lib.isfinite(D[0, :, 3])
    big = 1e30      # a side with one neighbour only is usable, but least preferred
    f2 = lib.where(has_f, f2.clip(max=big), inf)
    b2 = lib.where(has_b, b2.clip(max=big), inf)
    # central unless a side is clearly smoother: near-ties would flip the stencil with
    # round-off (a jump in the volume, wrong finite-difference gradients)
    use_c = has_f & has_b & (c2 <= ENO_RATIO * lib.minimum(f2, b2) + ENO_SMOOTH_M)
    use_f = ~use_c & has_f & (f2 <= b2)
    use_b = ~use_c & ~use_f & has_b
    x0 = S[:2, :, 2]
    zero = x0 * 0.0
    fwd = lib.where(use_f | use_c, S[:2, :, 3] - x0, zero)   # NaN-free where unused
    bwd = lib.where(use_b | use_c, x0 - S[:2, :, 1], zero)
    return lib.where(use_c, 0.5 * (fwd + bwd), fwd + bwd), use_c | use_f | use_b


def _patch_maps(ys: np.ndarray, xs: np.ndarray, vals, lib):
    """(maps (3, P): a, b, h of the food pixels on their bounding box padded by 2 pixels,
    NaN off the food; that frame's row width less 4; each pixel's flat index in it)."""
    y0, x0 = int(ys.min()), int(xs.min())
    H, W = int(ys.max()) - y0 + 1, int(xs.max()) - x0 + 1
    pidx = (ys - y0 + 2) * (W + 4) + (xs - x0 + 2)
    if lib is np:
        maps = np.full((3, (H + 4) * (W + 4)), np.nan)
        for m, v in zip(maps, vals):
            m[pidx] = v
        return maps, W, pidx
    a = vals[0]
    pidx = torch.as_tensor(pidx, device=a.device)
    maps = torch.full((3, (H + 4) * (W + 4)), float("nan"), dtype=a.dtype, device=a.device)
    maps[:, pidx] = torch.stack(list(vals))
    return maps, W, pidx


def _patch_area(maps, W: int, idx, lib):
    """Horizontal area (m^2) of the surface patch seen by each selected pixel:
    |da/du db/dv - da/dv db/du| of the food's own plane coordinates. `maps` (3, P) = [a, b,
    h] flattened, padded by 2 pixels (row width W + 4) with NaN off the food; idx = flat
    indices of the pixels in that padded frame. Why not the column area Z^2/(fx fy |r.n|):
    that is a pixel's footprint on a level surface, so a pixel on a vertical wall counts
    as much table as one on the top; the patch area of a wall pixel is ~0, so walls add no
    coverage beyond the top's edge, and the error shrinks with resolution. Signed (the
    image -> plane map keeps its orientation on any surface seen from its front), so depth
    noise averages out instead of adding up. Returns (area, ok); ok is False where a pixel
    has no food neighbour along an axis."""
    k = np.arange(-2, 3)
    offs = np.stack([k, k * (W + 4)])                        # (2 axes, 5 offsets)
    if lib is np:
        ii = (offs[:, :, None] + idx[None, None]).ravel()
        S = np.stack([m[ii] for m in maps]).reshape(3, 2, 5, len(idx))
    else:
        S = maps[:, torch.as_tensor(offs, device=idx.device)[:, :, None] + idx[None, None]]
    dd, ok = _eno_diff(S, lib)
    # basis e1 ~ camera x, e2 = n x e1 flips the orientation: area = -(a_u b_v - a_v b_u)
    return -(dd[0, 0] * dd[1, 1] - dd[0, 1] * dd[1, 0]), ok[0] & ok[1]


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Mask pixels with a non-mask 4-neighbour (the silhouette; image border excluded)."""
    er = cv2.erode(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)),
                   borderType=cv2.BORDER_REPLICATE)
    return mask & ~er.astype(bool)


def _edge_areas(area, maps, W: int, pidx, lib, sel, sub):
    """Horizontal areas of the samples `sel`: surface patch areas (_patch_area) for the
    subset `sub` (those in edge cells) where defined, level-column areas `area` otherwise.
    numpy or torch (one formula for both twins)."""
    out = area[sel]                  # a copy (boolean index): safe to write into
    pa, ok = _patch_area(maps, W, pidx[sel][sub], lib)
    out[sub] = lib.where(ok, pa, out[sub])
    return out


def _fill_plan(mask: np.ndarray, food: np.ndarray) -> tuple[tuple[int, int],
                                                             list[np.ndarray], np.ndarray]:
    """How the mask's holes (no depth) are filled from the food side: the frame's origin
    (mask bbox padded by 1 px), per growth step the holes filled in it (each takes the mean
    height of its already known 8-neighbours), and the holes no step reaches. Why: depth
    cameras drop ~half the pixels at a depth edge, i.e. on the food's silhouette; without
    them the edge cells lose coverage (-2..-5 % on boxes), and a window median mixes in
    heights from far inside. Growing inwards from the valid side follows the surface.
    Depends on the masks only, so numpy and torch fill the same pixels the same way."""
    (y0, y1), (x0, x1) = _bbox(mask)
    y0, x0 = max(y0 - 1, 0), max(x0 - 1, 0)
    known = food[y0:y1 + 1, x0:x1 + 1].astype(np.uint8)
    todo = mask[y0:y1 + 1, x0:x1 + 1] & ~food[y0:y1 + 1, x0:x1 + 1]
    steps: list[np.ndarray] = []
    k = np.ones((3, 3), np.uint8)
    while todo.any():
        new = todo & cv2.dilate(known, k).astype(bool)
        if not new.any():
            break
        steps.append(new)
        known |= new.astype(np.uint8)
        todo &= ~new
    return (y0, x0), steps, todo


def _filled_depth(Z, ok, rn, ys, xs, d, plan, lib):
    """Z of the mask pixels (ys, xs) with the holes (~ok) filled: heights grown from the food
    side (_fill_plan), then Z where each hole's ray reaches its height (rn = r.n per pixel).
    numpy or torch; the torch version keeps the graph (a hole's depth follows its
    neighbours')."""
    (y0, x0), steps, left = plan
    shape = steps[0].shape if steps else left.shape
    iy, ix = ys - y0, xs - x0
    rn = lib.minimum(rn, lib.full_like(rn, -1e-9)) if lib is torch else np.minimum(rn, -1e-9)
    Zs = lib.where(ok, Z, lib.ones_like(Z))
    h = (Zs * rn + d).clamp(min=0.0) if lib is torch else np.maximum(Zs * rn + d, 0.0)
    h = lib.where(ok, h, lib.zeros_like(h))
    if lib is np:
        img = np.zeros(shape)
        img[iy, ix] = h
        wt = np.zeros(shape)
        wt[iy[ok], ix[ok]] = 1.0
        box = dict(ksize=(3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
        for new in steps:
            num, den = cv2.boxFilter(img, -1, **box), cv2.boxFilter(wt, -1, **box)
            img = np.where(new, num / np.maximum(den, 1.0), img)
            wt = wt + new
        img[left] = h[ok].mean()
        hf = img[iy, ix]
    else:
        dev = Z.device
        iy_t, ix_t = torch.as_tensor(iy, device=dev), torch.as_tensor(ix, device=dev)
        img = torch.zeros(shape, dtype=Z.dtype, device=dev).index_put((iy_t, ix_t), h)
        wt = torch.zeros(shape, dtype=Z.dtype, device=dev).index_put(
            (iy_t[ok], ix_t[ok]), torch.ones((), dtype=Z.dtype, device=dev))
        for new in steps:
            new_t = torch.as_tensor(new, device=dev)
            img = torch.where(new_t, _t_box(img, 3) / _t_box(wt, 3).clamp(min=1.0), img)
            wt = wt + new_t.to(Z.dtype)
        img = torch.where(torch.as_tensor(left, device=dev), h[ok].mean(), img)
        hf = img[iy_t, ix_t]
    return lib.where(ok, Z, (hf - d) / rn)


def _grid_plan(a: np.ndarray, b: np.ndarray, c: float, margin: int = 3
               ) -> tuple[float, float, int, int]:
    """Grid origin and size covering coordinates a, b with a margin (cells)."""
    a0 = float(np.floor(a.min() / c) - margin) * c
    b0 = float(np.floor(b.min() / c) - margin) * c
    nx = int(np.floor((a.max() - a0) / c)) + margin + 1
    ny = int(np.floor((b.max() - b0) / c)) + margin + 1
    return a0, b0, nx, ny


def _hidden_samples(ab, bb, ap, bp, hb, c, lib):
    """Points along each silhouette ray from its footprint to the plane (flattened)."""
    L = lib.hypot(ap - ab, bp - bb)
    Lmax = float(L.max().detach() if lib is torch else L.max()) if len(L) else 0.0
    S = int(np.clip(np.ceil(Lmax / (0.5 * c)) + 1, 2, 256))
    if lib is np:
        t = np.linspace(0.0, 1.0, S)
    else:
        t = torch.linspace(0.0, 1.0, S, dtype=ab.dtype, device=ab.device)
    ha = (ab[:, None] + t * (ap - ab)[:, None]).reshape(-1)
    hbb = (bb[:, None] + t * (bp - bb)[:, None]).reshape(-1)
    return ha, hbb, (1.0 - t)


def _t_box(x: Tensor, k: int) -> Tensor:
    w = torch.ones((1, 1, k, k), dtype=x.dtype, device=x.device)
    return F.conv2d(x[None, None], w, padding=k // 2)[0, 0]
