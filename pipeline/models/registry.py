"""Model registry: a depth model is one module in `pipeline/models/` plus a `model_cfg` block.

A model module decorates its `DepthModel` subclass with `@register(name, ConfigClass)`. The
config class is a dataclass: its defaults are the model's defaults and `params.yaml`'s
`model_cfg.<name>` is checked against it (unknown keys and wrong types are errors naming the
key). The class provides `from_cfg(cfg, seed)` (build from the typed config: a checkpoint or a
small random config of the real classes) and `from_arch(arch)` (rebuild a saved architecture
offline). Modules are found by listing the package, so adding a model edits no other file.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.typed import build

_NOT_MODELS = {"base", "registry", "inference", "lora", "mask_head"}  # modules here that hold no model


@dataclass(frozen=True)
class Entry:
    name: str
    model_class: type
    config_class: type


_REGISTRY: dict[str, Entry] = {}
_discovered = False


def register(name: str, config_class: type) -> Callable[[type], type]:
    """Class decorator: make `model_class` buildable as `name` with `config_class` blocks."""
    def deco(model_class: type) -> type:
        old = _REGISTRY.get(name)
        if old is not None and old.model_class.__qualname__ != model_class.__qualname__:
            raise ValueError(f"model name {name!r} is registered twice "
                             f"({old.model_class.__qualname__}, {model_class.__qualname__})")
        model_class.name = name
        _REGISTRY[name] = Entry(name, model_class, config_class)
        return model_class
    return deco


def unregister(name: str) -> None:
    """Remove a model (tests that register a throw-away model clean up with this)."""
    _REGISTRY.pop(name, None)


def _discover() -> None:
    """Import every module of pipeline.models once, so their @register calls run."""
    global _discovered
    if _discovered:
        return
    for mod in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
        if mod.name not in _NOT_MODELS and not mod.name.startswith("_"):
            importlib.import_module(f"{__package__}.{mod.name}")
    _discovered = True


def model_names() -> tuple[str, ...]:
    _discover()
    return tuple(_REGISTRY)


def entry(name: str) -> Entry:
    _discover()
    if name not in _REGISTRY:
        raise ValueError(f"model name: unknown {name!r}, expected one of {model_names()}")
    return _REGISTRY[name]


def model_config(name: str, cfg: Any, where: str | None = None) -> Any:
    """The typed config of `name` from a params block (a mapping) or an already typed one."""
    e = entry(name)
    where = where or f"model_cfg.{name}"
    if isinstance(cfg, Mapping):
        refused = getattr(e.config_class, "REFUSED_KEYS", {})
        for key, why in refused.items():
            if key in cfg:
                raise ValueError(f"{where}.{key}: {why}; remove the key")
    return build(e.config_class, cfg, where)


def config_for(params: Any, name: str) -> Any:
    """The typed `model_cfg.<name>` block of typed `params` (pipeline.config.Params)."""
    raw = params.model_cfg.get(name)
    if raw is None:
        raise ValueError(f"{params.source}: model_cfg.{name}: missing (every model in `models` "
                         "needs a model_cfg block)")
    return model_config(name, raw, where=f"{params.source}: model_cfg.{name}")


def build_model(name: str, cfg: Any, seed: int = 0):
    """Build `name` from its `model_cfg` block (mapping or typed); `seed` fixes every random
    initialisation. `pretrained: null` builds the small random config of the same classes."""
    import torch
    typed = model_config(name, cfg)
    torch.manual_seed(seed)
    return entry(name).model_class.from_cfg(typed, seed=seed)


def build_from_arch(name: str, arch: dict):
    """Rebuild an architecture saved by `arch_config()` (weights loaded separately)."""
    return entry(name).model_class.from_arch(arch)
