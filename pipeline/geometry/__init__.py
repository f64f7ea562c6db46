"""Volume geometry shared by labels, losses, evaluation and predict: the camera (K, rays,
back-projection), the support plane (robust fit, height above it), and the food volume above it
(`estimate_volume`, numpy) with its batched, differentiable torch twin (`estimate_volume_torch`).
The numpy path and the twin share the helpers in `shared.py`.

Importing this package does not import torch: the numpy workers (masks, labels) never need it.
The twin's names are loaded on first use (`_LAZY`); library code imports them from
`pipeline.geometry.volume_torch`."""
from importlib import import_module
from typing import Any

from pipeline.geometry.camera import backproject, check_K, rays, resize_K
from pipeline.geometry.plane import fit_plane, fit_support_plane, height_above_plane, plane_basis, support_mask
from pipeline.geometry.volume import VolumeResult, estimate_volume

# name -> module, imported on first access (torch is heavy and the numpy path needs none of it)
_LAZY = {"estimate_volume_torch": "pipeline.geometry.volume_torch",
         "fit_plane_torch": "pipeline.geometry.volume_torch",
         "fit_support_plane_torch": "pipeline.geometry.volume_torch"}

__all__ = ["VolumeResult", "backproject", "check_K", "estimate_volume", "estimate_volume_torch", "fit_plane",
           "fit_plane_torch", "fit_support_plane", "fit_support_plane_torch", "height_above_plane",
           "plane_basis", "rays", "resize_K", "support_mask"]


def __getattr__(name: str) -> Any:
    """The torch twin's names (`_LAZY`), imported when first asked for."""
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
