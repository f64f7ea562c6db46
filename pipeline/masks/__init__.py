"""Food masks and the surface the food stands on: from the measured depth (`from_depth`, rig-aware
on Nutrition5k via `rig`), SAM 2 (`sam2`), or the RGB image alone (`rgb`: the depth-free masks of
the given-mask evaluation); `support` fits plate floors and bowl surfaces; `cleanup` holds the
mask morphology they share; `make` runs the masks stage."""
