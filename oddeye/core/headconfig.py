"""One config dataclass per head: defaults written once, checked on construction, stored as a plain dict.

    @dataclass
    class MyConfig(HeadConfig):
        k: int = param(1, ge=1, doc="neighbours")
        mode: str = param("max", choices=("max", "mean"))

    cfg = MyConfig(k=3)                     # ConfigError("MyConfig.k: ...") on a bad value
    MyConfig.from_dict(cfg.to_dict()) == cfg
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Self

from oddeye.core.errors import ConfigError

_CHECKS = ("ge", "gt", "le", "lt", "choices")


def param(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING, ge: float | None = None,
          gt: float | None = None, le: float | None = None, lt: float | None = None,
          choices: tuple[Any, ...] | None = None, doc: str = "") -> Any:
    """A config field with its bounds or choices (checked by HeadConfig) and a one-line description."""
    meta = {k: v for k, v in dict(ge=ge, gt=gt, le=le, lt=lt, choices=choices, doc=doc).items() if v is not None}
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta)
    return dataclasses.field(default=default, default_factory=default_factory, metadata=meta)


def given(**options: Any) -> dict[str, Any]:
    """The settings a user gave (command-line options left at None keep the config's default)."""
    return {k: v for k, v in options.items() if v is not None}


@dataclasses.dataclass
class HeadConfig:
    """Base of every head's settings: validated on construction, `to_dict` / `from_dict` for the manifest."""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            name = f"{type(self).__name__}.{f.name}"
            value = _coerce(getattr(self, f.name), hints.get(f.name, Any), name)
            _check_bounds(value, f.metadata, name)
            object.__setattr__(self, f.name, value)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples as lists, nested configs as dicts)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, doc: dict[str, Any] | None, *, defaults: dict[str, Any] | None = None) -> Self:
        """Rebuild from `to_dict()` output; keys missing from `doc` take `defaults`, then the class defaults."""
        doc = dict(doc or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ConfigError(f"{cls.__name__}.{unknown[0]}", f"unknown setting (known: {', '.join(sorted(known))})",
                              "the model folder may come from a newer oddeye; upgrade, or refit")
        kw = {**{k: v for k, v in (defaults or {}).items() if k in known and k not in doc}, **doc}
        return cls(**kw)

    @classmethod
    def build(cls, config: HeadConfig | None = None, **overrides: Any) -> Self:
        """`config` (default: the class defaults) with `overrides` applied and checked; a config of another type
        is a ConfigError. What every head's constructor does with `Head(config, **overrides)`."""
        if config is None:
            config = cls()
        elif not isinstance(config, cls):
            raise ConfigError(cls.__name__, f"expected a {cls.__name__}, got {type(config).__name__}",
                              f"build the head with {cls.__name__}(...) or with keyword settings")
        return config.replace(**overrides) if overrides else config

    def replace(self, **changes: Any) -> Self:
        """A copy with `changes` applied and checked; an unknown name is a ConfigError naming it."""
        known = {f.name for f in dataclasses.fields(self)}
        for k in changes:
            if k not in known:
                raise ConfigError(f"{type(self).__name__}.{k}", f"unknown setting (known: {', '.join(sorted(known))})")
        return dataclasses.replace(self, **changes)

    @classmethod
    def describe(cls) -> dict[str, str]:
        """Field name -> its one-line description (for --help and docs)."""
        return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(cls)}


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):  # a forward reference we cannot resolve: check values only
        return {}


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _fail(name: str, value: Any, want: str) -> ConfigError:
    return ConfigError(name, f"expected {want}, got {value!r} ({type(value).__name__})")


def _coerce(value: Any, tp: Any, name: str) -> Any:
    """`value` converted to the annotated type `tp` where that is lossless (int -> float, list -> tuple)."""
    origin = typing.get_origin(tp)
    if tp is Any or tp is object:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, a, name)
            except ConfigError as e:
                errors.append(e)
        raise _fail(name, value, " or ".join(_tname(a) for a in args))
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(name, f"must be one of {typing.get_args(tp)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if isinstance(value, dict):
            if issubclass(tp, HeadConfig):
                try:
                    return tp.from_dict(value)
                except ConfigError as e:  # name the field from the outer config down: "PatrolConfig.change.x"
                    raise ConfigError(f"{name}.{e.field.split('.', 1)[-1]}", e.detail, e.hint) from None
            try:
                return tp(**value)
            except TypeError as e:
                raise ConfigError(name, str(e)) from None
        raise _fail(name, value, f"a {tp.__name__} or a dict")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _fail(name, value, "a list")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis and len(args) != len(value):
            raise ConfigError(name, f"expected {len(args)} values, got {len(value)}")
        item = args[0] if args else Any
        items = [_coerce(v, args[i] if origin is tuple and args and args[-1] is not Ellipsis else item,
                         f"{name}[{i}]") for i, v in enumerate(value)]
        return origin(items)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise _fail(name, value, "a mapping")
        return dict(value)
    if tp is bool:
        if not isinstance(value, (bool,)):
            raise _fail(name, value, "true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise _fail(name, value, "an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(name, value, "a number")
        if not math.isfinite(value):
            raise ConfigError(name, f"must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _fail(name, value, "a string")
        return value
    return value


def _tname(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _check_bounds(value: Any, meta: Any, name: str) -> None:
    if value is None:
        return
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if "choices" in meta and v not in meta["choices"]:
            raise ConfigError(name, f"must be one of {', '.join(map(repr, meta['choices']))}, got {v!r}")
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        for key, ok, word in (("ge", v >= meta.get("ge", v), ">="), ("gt", "gt" not in meta or v > meta["gt"], ">"),
                              ("le", v <= meta.get("le", v), "<="), ("lt", "lt" not in meta or v < meta["lt"], "<")):
            if key in meta and not ok:
                raise ConfigError(name, f"must be {word} {meta[key]}, got {v}")
