"""Fine-tuning: the lazily decoded dish datamodule (`datamodule`), augmentations that keep depth,
K and the volume label consistent (`augment`), the loss terms (`losses`), the LightningModule of
one training stage (`module`), and the run of a stage with checkpoints, resume, DVCLive and DDP
(`fit`)."""
