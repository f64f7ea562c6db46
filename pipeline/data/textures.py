"""Fractal value-noise textures and their wrap-around lookup: the grain of tables, food and
steel, and the bumps of irregular food mounds (one noise source for geometry and colour)."""
from __future__ import annotations

import cv2
import numpy as np


def noise_texture(rng: np.random.Generator, size: int = 256, base: int = 4,
                  octaves: int = 5) -> np.ndarray:
    """Tileable-enough fractal value noise in [-1, 1] (sampled with wrap-around)."""
    out = np.zeros((size, size), np.float32)
    amp, total = 1.0, 0.0
    g = base
    for _ in range(octaves):
        grid = rng.standard_normal((g, g)).astype(np.float32)
        grid = np.concatenate([grid, grid[:, :1]], 1)
        grid = np.concatenate([grid, grid[:1]], 0)
        up = cv2.resize(grid, (size + size // g, size + size // g), interpolation=cv2.INTER_CUBIC)
        out += amp * up[:size, :size]
        total += amp
        amp *= 0.55
        g *= 2
    out /= total
    return np.clip(out / (3 * out.std() + 1e-9), -1, 1)


def sample_texture(tex: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear wrap-around lookup of `tex` at texel coordinates (u, v)."""
    n, m = tex.shape[0], u.size
    if m == 0:
        return np.zeros(0, np.float32)
    cols = 1024  # remap wants both map sides < 32767
    pad = (-m) % cols
    mx = np.pad(np.mod(u, n).astype(np.float32), (0, pad)).reshape(-1, cols)
    my = np.pad(np.mod(v, n).astype(np.float32), (0, pad)).reshape(-1, cols)
    return cv2.remap(tex, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP).ravel()[:m]

