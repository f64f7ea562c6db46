"""Render a list of solids through a camera: per pixel the nearest hit (z-depth, shape label,
world normal), solving each shape only for the rays that can reach its bounding box."""
from __future__ import annotations

import numpy as np

from pipeline.data.shapes.camera import Camera
from pipeline.data.shapes.faces import INF, box_corners
from pipeline.data.shapes.solids import Shape


def _slab_inv(origin: np.ndarray, inv: np.ndarray, lo: np.ndarray, hi: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """_slab with precomputed 1/dirs (zero components replaced by a tiny number, so a
    parallel ray gets +-huge slab parameters: inside the slab or never)."""
    o = np.asarray(origin, float)
    t1 = (lo[0] - o[0]) * inv[:, 0]
    t2 = (hi[0] - o[0]) * inv[:, 0]
    tmin = np.maximum(np.minimum(t1, t2), 0.0)
    tmax = np.maximum(t1, t2)
    for ax in (1, 2):
        t1 = (lo[ax] - o[ax]) * inv[:, ax]
        t2 = (hi[ax] - o[ax]) * inv[:, ax]
        np.maximum(tmin, np.minimum(t1, t2), out=tmin)
        np.minimum(tmax, np.maximum(t1, t2), out=tmax)
    return tmin, tmax


def _slab(origin: np.ndarray, dirs: np.ndarray, lo: np.ndarray, hi: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    """(t_enter, t_exit) of each ray through the box lo..hi (t_enter > t_exit: a miss)."""
    o = np.asarray(origin, float)
    tmin = np.zeros(len(dirs))
    tmax = np.full(len(dirs), INF)
    for ax in range(3):
        dax = dirs[:, ax]
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = (lo[ax] - o[ax]) / dax
            t2 = (hi[ax] - o[ax]) / dax
        par = dax == 0  # parallel: inside the slab or never
        inside = (o[ax] >= lo[ax]) & (o[ax] <= hi[ax])
        t1 = np.where(par, -INF if inside else INF, t1)
        t2 = np.where(par, INF if inside else -INF, t2)
        tmin = np.maximum(tmin, np.minimum(t1, t2))
        tmax = np.minimum(tmax, np.maximum(t1, t2))
    return tmin, tmax


def intersect_culled(shape: Shape, origin: np.ndarray, dirs: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """shape.intersect, solved only for rays that meet the shape's AABB (slab test): for
    ray bundles without a pixel box, e.g. shadow rays from a light."""
    b = shape.bounds()
    if b is None:
        return shape.intersect(origin, dirs)
    o = np.asarray(origin, float)
    tmin, tmax = _slab(o, dirs, b[0] - 1e-9, b[1] + 1e-9)
    idx = np.nonzero(tmax >= tmin)[0]
    t = np.full(len(dirs), INF)
    n = np.zeros((len(dirs), 3))
    if idx.size:
        t[idx], n[idx] = shape.intersect(o, dirs[idx])
    return t, n


def _pixel_box(shape: Shape, camera: Camera) -> tuple[int, int, int, int] | None:
    """(u0, u1, v0, v1) half-open pixel box covering the shape's projection; None = empty."""
    W, H = camera.width, camera.height
    b = shape.bounds()
    if b is None:
        return 0, W, 0, H
    uv, z = camera.project(box_corners(*b))
    if (z <= 1e-6).any():
        return 0, W, 0, H
    u0 = max(int(np.floor(uv[:, 0].min())) - 1, 0)
    u1 = min(int(np.ceil(uv[:, 0].max())) + 2, W)
    v0 = max(int(np.floor(uv[:, 1].min())) - 1, 0)
    v1 = min(int(np.ceil(uv[:, 1].max())) + 2, H)
    if u0 >= u1 or v0 >= v1:
        return None
    return u0, u1, v0, v1


def render_full(shapes: list[Shape], camera: Camera,
                rays: tuple[np.ndarray, np.ndarray] | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z-depth HxW float64 (inf = miss), label HxW int32, world normals HxWx3).
    `rays`: camera.rays(), when the caller already has them."""
    W, H = camera.width, camera.height
    origin, dirs = camera.rays() if rays is None else rays
    inv = 1.0 / np.where(dirs == 0, 1e-300, dirs)
    depth = np.full(H * W, INF)
    label = np.full(H * W, -1, dtype=np.int32)
    normals = np.zeros((H * W, 3))
    for i, s in enumerate(shapes):
        box = _pixel_box(s, camera)
        if box is None:
            continue
        u0, u1, v0, v1 = box
        if (u0, u1, v0, v1) == (0, W, 0, H):
            idx = np.arange(H * W)
        else:
            idx = (np.arange(v0, v1)[:, None] * W + np.arange(u0, u1)[None, :]).ravel()
        b = s.bounds()
        if b is not None:  # z-culling: skip rays that enter the AABB behind their current hit
            tmin, tmax = _slab_inv(origin, inv[idx], b[0] - 1e-9, b[1] + 1e-9)
            idx = idx[(tmax >= tmin) & (tmin < depth[idx])]
            if idx.size == 0:
                continue
        t, n = s.intersect(origin, dirs[idx])
        better = t < depth[idx]
        j = idx[better]
        depth[j] = t[better]
        label[j] = i
        normals[j] = n[better]
    return depth.reshape(H, W), label.reshape(H, W), normals.reshape(H, W, 3)


def render(shapes: list[Shape], camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """(z-depth HxW float32 m, 0 where nothing is hit; label HxW int32, -1 = none)."""
    depth, label, _ = render_full(shapes, camera)
    return np.where(np.isfinite(depth), depth, 0.0).astype(np.float32), label
