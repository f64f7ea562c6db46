"""Exact ray casting of simple solids: the ground truth behind the synthetic dishes.

Why: synthetic depth, masks and volumes must agree exactly, so every food shape has an
analytic (or exact piecewise-bilinear) volume and a ray intersection of the same surface.
World frame: z up, table plane z = 0, metres. Camera: OpenCV pinhole (x right, y down,
z forward), X_cam = R @ X_world + t. Ray directions are scaled so that the ray parameter
t equals the camera z-depth, which is what depth maps store (docs/contracts.md, units).

The package's public API: `camera` (Camera), `solids` (the analytic solids), `heightfield`,
`render` (render, render_full, intersect_culled); `faces` holds the ray-face helpers they share.
"""
from pipeline.data.shapes.camera import Camera
from pipeline.data.shapes.heightfield import HeightField
from pipeline.data.shapes.render import intersect_culled, render, render_full
from pipeline.data.shapes.solids import Box, Cone, Cylinder, Ellipsoid, Frustum, Plane, Ring, Shape, SphereCap

__all__ = ["Box", "Camera", "Cone", "Cylinder", "Ellipsoid", "Frustum", "HeightField", "Plane", "Ring",
           "Shape", "SphereCap", "intersect_culled", "render", "render_full"]
