"""Where dishes come from: procedural synthetic scenes with exact volumes (`synthetic` composes
`scene`, `food_items`, `views`, `appearance`, `textures` and the depth `sensor` model, ray cast by
`shapes`), the Nutrition5k release read in place (`nutrition5k`) and its fixed rig's plane (`rig`),
the ingest stage (`ingest`) and the seeded train/val/test split (`split`)."""
