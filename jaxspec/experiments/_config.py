"""Typed configs from TOML: validation, ``--set`` overrides, ``--quick``, and sweep expansion.

A config file::

    experiment = "spectra"        # optional inside experiments/<name>/
    seed = 0                      # runner-owned; becomes the PRNG key
    [optimizer]                   # sections are nested frozen dataclasses
    lr = 3e-4
    [sweep.product]               # cartesian product of axes (dotted keys)
    seed = [0, 1, 2]
    [sweep.zip]                   # equal-length lists zipped into one axis
    "optimizer.lr" = [1e-3, 3e-3]
    "optimizer.c" = [1.0, 2.0]
    [quick]                       # dotted overrides applied by --quick
    "train.steps" = 50
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

RESERVED = ("experiment", "seed", "sweep", "quick")


class ConfigError(ValueError):
    """A config file, override or sweep names an unknown key or a value of the wrong type."""


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """A leaf field of a config dataclass."""

    path: str
    type: Any
    dynamic: bool


def _resolved_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def field_table(cls: type, prefix: str = "") -> dict[str, FieldInfo]:
    """Every leaf field of a (nested) config dataclass, by dotted path."""
    out: dict[str, FieldInfo] = {}
    hints = _resolved_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.update(field_table(tp, prefix=f"{path}."))
            continue
        mode = f.metadata.get("sweep")
        dynamic = (tp is float) if mode is None else (mode == "dynamic")
        out[path] = FieldInfo(path, tp, dynamic)
    return out


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (int -> float allowed; lists -> tuples)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"`{key}` expects a float, got {value!r} ({type(value).__name__}).")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"`{key}` expects an int, got {value!r} ({type(value).__name__}).")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"`{key}` expects a bool, got {value!r} ({type(value).__name__}).")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"`{key}` expects a string, got {value!r} ({type(value).__name__}).")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"`{key}` expects a list, got {value!r}.")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"`{key}` expects {len(args)} items, got {len(value)}.")
        return tuple(coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(args, value)))
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return coerce(value, option, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"`{key}` expects {tp}, got {value!r}.")
    if typing.get_origin(tp) is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"`{key}` must be one of {typing.get_args(tp)}, got {value!r}.")
        return value
    return value


def _unknown(key: str, valid: list[str]) -> ConfigError:
    return ConfigError(f"Unknown config key `{key}`. Valid keys: {', '.join(sorted(valid))}.")


def build_config(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Instantiate the nested frozen dataclass ``cls`` from a dict, validating every key."""
    if not isinstance(data, dict):
        raise ConfigError(f"`{prefix.rstrip('.') or 'config'}` must be a table, got {data!r}.")
    hints = _resolved_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise _unknown(f"{prefix}{key}", [f"{prefix}{n}" for n in names])
    kwargs = {}
    for name in names:
        if name not in data:
            continue
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = build_config(tp, data[name], prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = coerce(data[name], tp, f"{prefix}{name}")
    return cls(**kwargs)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Nested dict of a config dataclass (tuples become lists for JSON)."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple):
            return [convert(v) for v in value]
        return value

    return convert(config)


def replace_path(config: Any, path: str, value: Any) -> Any:
    """``dataclasses.replace`` along a dotted path of a nested frozen dataclass."""
    head, _, rest = path.partition(".")
    if not rest:
        return dataclasses.replace(config, **{head: value})
    return dataclasses.replace(config, **{head: replace_path(getattr(config, head), rest, value)})


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=3e-4"`` -> ``("a.b", 3e-4)``; the value is a TOML literal (bare words = str)."""
    if "=" not in text:
        raise ConfigError(f"Override {text!r} must look like key=value.")
    key, _, raw = text.partition("=")
    key = key.strip()
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    # Sweep and quick tables hold dotted keys verbatim: sweep.product."optimizer.lr".
    for table in ("sweep.product.", "sweep.zip."):
        if key.startswith(table):
            section = table.split(".")[1]
            sweep = raw.setdefault("sweep", {})
            target = sweep.setdefault(section, {})
            if isinstance(target, list):
                raise ConfigError(
                    f"Cannot override `{key}`: sweep.{section} is an array of tables."
                )
            target[key[len(table) :]] = value
            return
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"Cannot set `{key}`: `{part}` is not a table.")
        node = child
    node[parts[-1]] = value


@dataclasses.dataclass(frozen=True)
class ResolvedConfig:
    """A validated config file with overrides applied, and its expanded sweep.

    Attributes:
        name: the experiment's name.
        base: the config dataclass instance (values outside the sweep).
        seed: the base seed.
        axes: sweep axes as ``[(keys, values_per_point)]`` in declaration order.
        raw: the resolved TOML content (``quick`` table removed) for ``config.json``.
    """

    name: str
    base: Any
    seed: int
    axes: tuple[tuple[tuple[str, ...], tuple[tuple[Any, ...], ...]], ...]
    raw: dict[str, Any]

    def points(self) -> list[dict[str, Any]]:
        """Every sweep point as ``{dotted key: value}`` (always including ``"seed"``)."""
        if not self.axes:
            return [{"seed": self.seed}]
        out = []
        for combo in itertools.product(*[values for _, values in self.axes]):
            point: dict[str, Any] = {}
            for (keys, _), values in zip(self.axes, combo):
                point.update(zip(keys, values))
            point.setdefault("seed", self.seed)
            out.append(point)
        return out

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.raw)


def _sweep_axes(
    sweep: dict[str, Any], fields: dict[str, FieldInfo]
) -> tuple[tuple[tuple[str, ...], tuple[tuple[Any, ...], ...]], ...]:
    valid = ["seed", *fields]
    for key in sweep:
        if key not in ("product", "zip"):
            raise _unknown(f"sweep.{key}", ["sweep.product", "sweep.zip"])

    def check_values(key: str, values: Any) -> list[Any]:
        if key not in valid:
            raise _unknown(f"sweep axis {key}", valid)
        if not isinstance(values, list) or not values:
            raise ConfigError(f"Sweep axis `{key}` must be a non-empty list, got {values!r}.")
        tp = int if key == "seed" else fields[key].type
        return [coerce(v, tp, key) for v in values]

    axes = []
    seen: set[str] = set()
    for key, values in sweep.get("product", {}).items():
        axes.append(((key,), tuple((v,) for v in check_values(key, values))))
        seen.add(key)
    zips = sweep.get("zip", [])
    for group in [zips] if isinstance(zips, dict) else zips:
        if not group:
            continue
        columns = {k: check_values(k, v) for k, v in group.items()}
        lengths = {k: len(v) for k, v in columns.items()}
        if len(set(lengths.values())) != 1:
            raise ConfigError(f"Zipped sweep axes must have equal lengths, got {lengths}.")
        keys = tuple(columns)
        axes.append((keys, tuple(zip(*columns.values()))))
        seen.update(keys)
    duplicated = [k for k in seen if sum(k in keys for keys, _ in axes) > 1]
    if duplicated:
        raise ConfigError(f"Sweep axes appear twice: {duplicated}.")
    return tuple(axes)


def resolve(
    raw: dict[str, Any],
    name: str,
    config_cls: type,
    *,
    overrides: tuple[str, ...] | list[str] = (),
    quick: bool = False,
) -> ResolvedConfig:
    """Validate ``raw`` TOML content for ``config_cls`` with quick/CLI overrides applied."""
    raw = copy.deepcopy(raw)
    quick_table = raw.pop("quick", {})
    if not isinstance(quick_table, dict):
        raise ConfigError("`quick` must be a table of dotted overrides.")
    fields = field_table(config_cls)
    valid_override = [*fields, "seed", "experiment"]
    updates = list(quick_table.items()) if quick else []
    updates += [parse_override(o) for o in overrides]
    for key, value in updates:
        if not (key in valid_override or key.startswith(("sweep.product.", "sweep.zip."))):
            raise _unknown(key, valid_override + ["sweep.product.<key>", "sweep.zip.<key>"])
        _set_dotted(raw, key, value)
    experiment = raw.pop("experiment", name)
    if experiment != name:
        raise ConfigError(f"Config is for experiment {experiment!r}, not {name!r}.")
    seed = coerce(raw.pop("seed", 0), int, "seed")
    sweep = raw.pop("sweep", {})
    if not isinstance(sweep, dict):
        raise ConfigError("`sweep` must be a table with `product` and/or `zip`.")
    base = build_config(config_cls, raw)
    axes = _sweep_axes(sweep, fields)
    resolved_raw = {"experiment": name, "seed": seed, **config_to_dict(base), "sweep": sweep}
    return ResolvedConfig(name=name, base=base, seed=seed, axes=axes, raw=resolved_raw)


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, with a clear error for a syntax problem."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from None
