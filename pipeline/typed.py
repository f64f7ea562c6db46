"""Strict dataclass-from-mapping: how params.yaml blocks become typed configs.

Unknown keys and values of the wrong type are ValueErrors that name the key, e.g.
`params.yaml: masks.min_heigt_mm: unknown key (did you mean 'min_height_mm'?)`; keys left
out take the dataclass default (the one place a default is defined). Ranges sit with the type:
`n_dishes: Annotated[int, Range(1)]` (aliases in pipeline.config) fails as
`params.yaml: data.n_dishes = -5: must be >= 1`, and a dataclass's `check(where)` method tests
what spans keys (`split.val_fraction + split.test_fraction < 1`).
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

# a number in exponent notation without a dot, which PyYAML (YAML 1.1) leaves a string
_EXP_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _key(where: str, key: object) -> str:
    """`params.yaml:` + `masks` -> `params.yaml: masks`; `params.yaml: masks` + `x` -> `...masks.x`."""
    return f"{where} {key}" if where.endswith(":") else f"{where}.{key}"


def shown(value: Any) -> str:
    """A value as params.yaml writes it (lists, not tuples)."""
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def out_of_range(where: str, value: Any, why: str) -> ValueError:
    """`params.yaml: split.val_fraction = 1.5: must be in [0, 1)`."""
    return ValueError(f"{where} = {shown(value)}: {why}")


@dataclass(frozen=True)
class Range:
    """A number in [lo, hi] (open ends with lo_open / hi_open; None: unbounded), optionally a
    multiple of `multiple`. Annotated on a tuple/list type, applies to every item."""
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    multiple: int | None = None

    def why(self) -> str:
        if self.hi is None:
            rule = f"must be {'>' if self.lo_open else '>='} {self.lo:g}" if self.lo is not None else ""
        else:
            lo = "-inf" if self.lo is None else f"{self.lo:g}"
            rule = f"must be in {'(' if self.lo_open else '['}{lo}, {self.hi:g}{')' if self.hi_open else ']'}"
        if self.multiple:
            rule += f"{' and' if rule else 'must be'} a multiple of {self.multiple}"
        return rule

    def ok(self, x: float) -> bool:
        return ((self.lo is None or (x > self.lo if self.lo_open else x >= self.lo))
                and (self.hi is None or (x < self.hi if self.hi_open else x <= self.hi))
                and (not self.multiple or x % self.multiple == 0))

    def check(self, value: Any, where: str) -> None:
        items = value if isinstance(value, (list, tuple)) else [value]
        if not all(self.ok(x) for x in items):
            why = self.why()
            raise out_of_range(where, value, why.replace("must be", "items must be", 1)
                               if isinstance(value, (list, tuple)) else why)


@dataclass(frozen=True)
class Increasing:
    """A sequence in increasing order (`strict`: no two equal), e.g. an interval [lo, hi]."""
    strict: bool = False

    def check(self, value: Any, where: str) -> None:
        pairs = list(zip(value, list(value)[1:]))
        if not all(a < b if self.strict else a <= b for a, b in pairs):
            if len(value) == 2:
                raise out_of_range(where, value, f"must be [low, high] with low {'<' if self.strict else '<='} high")
            raise out_of_range(where, value, "must be increasing" if self.strict else "must not decrease")


@dataclass(frozen=True)
class NonEmpty:
    """A list or mapping with at least one item."""

    def check(self, value: Any, where: str) -> None:
        if len(value) == 0:
            raise out_of_range(where, value, "must not be empty")


def _convert(value: Any, tp: Any, where: str) -> Any:
    """`value` checked against the annotation `tp` (the subset of typing used here)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        value = _convert(value, args[0], where)
        for rule in tp.__metadata__:
            rule.check(value, where)
        return value
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        alternatives = [a for a in args if a is not type(None)]
        if len(alternatives) == 1:   # `X | None`: X's own message
            return _convert(value, alternatives[0], where)
        errors = []
        for a in (a for a in args if a is not type(None)):
            try:
                return _convert(value, a, where)
            except ValueError as e:
                errors.append(str(e).rsplit(": ", 1)[-1])
        raise ValueError(f"{where}: {' or '.join(errors)}")
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ValueError(f"{where}: expected {len(args)} values, got {list(value)!r}")
            return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = args or (str, Any)
        return {_convert(k, kt, where): _convert(v, vt, _key(where, k)) for k, v in value.items()}
    if tp is Any or tp is dict:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _EXP_NUMBER.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads 5e-05 (as `dvc exp run -S x=5e-5` writes it) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{where}: unsupported annotation {tp!r}")  # a bug in a config class


def build(cls: type, raw: Any, where: str) -> Any:
    """Instance of dataclass `cls` from a mapping: unknown keys and wrong types are errors
    naming `where.key`; keys left out take the class's default."""
    if isinstance(raw, cls):
        return raw
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in raw if k not in fields]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), list(fields), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(fields)})"
        raise ValueError(f"{_key(where, unknown[0])}: unknown key{hint}")
    kwargs = {k: _convert(v, hints[k], _key(where, k)) for k, v in raw.items()}
    obj = cls(**kwargs)
    if hasattr(obj, "check"):   # rules that span keys
        obj.check(where)
    return obj
