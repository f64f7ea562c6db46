"""DVC stage scripts: each a thin CLI over `pipeline`, run as `python -m stages.<name>` from the
repository root (so `pipeline` is imported from the checkout the stage runs in)."""
