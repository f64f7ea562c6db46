"""Pinhole camera of the ray caster: OpenCV convention (x right, y down, z forward),
X_cam = R @ X_world + t; ray directions have camera-z component 1, so the ray parameter is
the z-depth that depth maps store."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Camera:
    """Pinhole camera; X_cam = R @ X_world + t, pixel centres at integer coordinates."""
    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    width: int
    height: int

    def __post_init__(self) -> None:
        self.K = np.asarray(self.K, dtype=np.float64)
        self.R = np.asarray(self.R, dtype=np.float64)
        self.t = np.asarray(self.t, dtype=np.float64).reshape(3)
        if self.K.shape != (3, 3) or self.R.shape != (3, 3):
            raise ValueError(f"Camera: K and R must be 3x3, got {self.K.shape}, {self.R.shape}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"Camera: width/height must be positive, got {self.width}x{self.height}")

    @classmethod
    def look_at(cls, elevation_deg: float, azimuth_deg: float, distance_m: float,
                target: tuple[float, float, float] = (0.0, 0.0, 0.0), f_px: float = 615.0,
                width: int = 640, height: int = 480, cx: float | None = None,
                cy: float | None = None) -> Camera:
        """Camera on a sphere around `target`; elevation 90 = straight down.

        The image x axis is horizontal (perpendicular to the azimuth direction), so the
        pose stays well defined at elevation 90.
        """
        if not (0.0 < elevation_deg <= 90.0):
            raise ValueError(f"elevation_deg must be in (0, 90], got {elevation_deg}")
        if distance_m <= 0:
            raise ValueError(f"distance_m must be positive, got {distance_m}")
        el, az = np.deg2rad(elevation_deg), np.deg2rad(azimuth_deg)
        tgt = np.asarray(target, dtype=np.float64)
        back = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        C = tgt + distance_m * back
        z_ax = -back
        x_ax = np.array([-np.sin(az), np.cos(az), 0.0])
        y_ax = np.cross(z_ax, x_ax)
        R = np.stack([x_ax, y_ax, z_ax])
        t = -R @ C
        cx = (width - 1) / 2.0 if cx is None else cx
        cy = (height - 1) / 2.0 if cy is None else cy
        K = np.array([[f_px, 0.0, cx], [0.0, f_px, cy], [0.0, 0.0, 1.0]])
        return cls(K=K, R=R, t=t, width=int(width), height=int(height))

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates."""
        return -self.R.T @ self.t

    def rays(self) -> tuple[np.ndarray, np.ndarray]:
        """(origin (3,), dirs (H*W, 3)) in world; dirs have camera-z component 1."""
        u, v = np.meshgrid(np.arange(self.width, dtype=np.float64),
                           np.arange(self.height, dtype=np.float64))
        u, v = u.ravel(), v.ravel()
        Ki = np.linalg.inv(self.K)
        w = Ki[2, 0] * u + Ki[2, 1] * v + Ki[2, 2]
        x = (Ki[0, 0] * u + Ki[0, 1] * v + Ki[0, 2]) / w
        y = (Ki[1, 0] * u + Ki[1, 1] * v + Ki[1, 2]) / w
        R = self.R  # world dir = R.T @ (x, y, 1), written out: small matmuls are slow here
        dirs = x[:, None] * R[0][None] + y[:, None] * R[1][None] + R[2][None]
        return self.center, dirs

    def project(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (N,3) -> (pixel uv (N,2), camera z-depth (N,))."""
        Xc = np.asarray(X, dtype=np.float64) @ self.R.T + self.t
        z = Xc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = (Xc @ self.K.T)[:, :2] / z[:, None]
        return uv, z
