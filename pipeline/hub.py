"""Hugging Face hub ids without the network: is a string a hub id, and is that checkpoint's file
in the local cache. Shared by `pipeline.predict` (which loads it) and `pipeline.preflight` (which
checks it is there before hours of GPU time). Light: no torch."""
from __future__ import annotations

import re
from pathlib import Path

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def is_hub_id(source: str) -> bool:
    """`owner/name` as the hub spells it (not a relative path such as ./x/y)."""
    return bool(_HUB_ID.fullmatch(source)) and not source.startswith(".")


def hub_cached(repo_id: str, filename: str) -> Path | None:
    """The file of a hub checkpoint in the local Hugging Face cache, or None (never downloads)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename)
    return Path(found) if isinstance(found, str) else None
