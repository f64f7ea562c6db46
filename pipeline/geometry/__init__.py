"""Volume geometry shared by labels, losses, evaluation and predict: the camera (K, rays,
back-projection), the support plane (robust fit, height above it), and the food volume above it
(`estimate_volume`, numpy) with its batched, differentiable torch twin (`estimate_volume_torch`).
The numpy path and the twin share the coverage formulas in `coverage.py`."""
from pipeline.geometry.camera import backproject, check_K, rays, resize_K
from pipeline.geometry.plane import (fit_plane, fit_support_plane, height_above_plane, plane_basis,
                                     support_mask)
from pipeline.geometry.volume import VolumeResult, estimate_volume
from pipeline.geometry.volume_torch import estimate_volume_torch, fit_plane_torch, fit_support_plane_torch

__all__ = ["VolumeResult", "backproject", "check_K", "estimate_volume", "estimate_volume_torch", "fit_plane",
           "fit_plane_torch", "fit_support_plane", "fit_support_plane_torch", "height_above_plane",
           "plane_basis", "rays", "resize_K", "support_mask"]
