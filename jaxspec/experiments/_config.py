"""Typed configs from TOML: validation, ``--set`` overrides, ``--quick``, and sweep expansion.

A config file::

    experiment = "spectra"        # optional inside experiments/<name>/
    seed = 0                      # runner-owned; becomes the PRNG key
    [optimizer]                   # sections are nested frozen dataclasses
    lr = 3e-4
    [sweep.product]               # cartesian product of axes (dotted keys)
    seed = [0, 1, 2]
    [sweep.zip]                   # equal-length lists zipped into one axis
    "optimizer.lr" = [1e-3, 3e-3] # ([[sweep.zip]] array of tables: several zipped axes)
    "optimizer.c" = [1.0, 2.0]
    [quick]                       # dotted overrides applied by --quick
    "train.steps" = 50
    "sweep.product.seed" = [0, 1]

Sweep points enumerate the product axes in file order, then the zip groups, the last axis
varying fastest. An override (``--set`` or ``[quick]``) of a swept field pins it: the field
leaves the sweep (its column leaves a zip group) and takes the given value.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import itertools
import json
import tomllib
import types
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

RESERVED = ("experiment", "seed", "sweep", "quick")
SEED_LIMIT = 2**31  # seeds are stacked as uint32; keep them where int and uint32 keys agree


class ConfigError(ValueError):
    """A config file, override or sweep names an unknown key or a value of the wrong type."""


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """A leaf field of a config dataclass.

    Attributes:
        path: dotted key, e.g. ``"optimizer.lr"``.
        type: the resolved annotation.
        dynamic: whether swept values are stacked and vmapped (else one compile per value).
    """

    path: str
    type: Any
    dynamic: bool


def _is_config_class(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def field_table(cls: type, prefix: str = "") -> dict[str, FieldInfo]:
    """Every leaf field of a (nested) config dataclass, by dotted key.

    Args:
        cls: a frozen dataclass; fields annotated with a dataclass are sections.
        prefix: prepended to every key (used for recursion).

    Returns:
        ``{dotted key: FieldInfo}`` in declaration order.

    Raises:
        ConfigError: a field uses a reserved top-level name, an unknown ``sweep`` metadata
            value, or asks to be dynamic with a non-numeric type.
    """
    if not _is_config_class(cls):
        raise ConfigError(f"config_cls must be a dataclass, got {cls!r}.")
    out: dict[str, FieldInfo] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        if not prefix and f.name in RESERVED:
            raise ConfigError(f"{cls.__name__}.{f.name}: `{f.name}` is reserved for the runner.")
        tp = hints[f.name]
        if _is_config_class(tp):
            out.update(field_table(tp, prefix=f"{path}."))
            continue
        mode = f.metadata.get("sweep")
        if mode not in (None, "static", "dynamic"):
            raise ConfigError(f"`{path}`: sweep metadata must be 'static' or 'dynamic'.")
        is_dynamic = (tp is float) if mode is None else (mode == "dynamic")
        if is_dynamic and tp not in (float, int, bool):
            raise ConfigError(f"`{path}`: only float, int or bool fields can be dynamic.")
        out[path] = FieldInfo(path, tp, is_dynamic)
    return out


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _got(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it.

    Allowed conversions: int -> float, list -> tuple. Bools are not ints here.

    Args:
        value: a value parsed from TOML.
        tp: the field's annotation (``float``, ``int``, ``bool``, ``str``, ``tuple[...]``,
            ``Literal[...]``, unions, ``Any``).
        key: dotted key, for the error message.

    Returns:
        The converted value.

    Raises:
        ConfigError: naming ``key``, the expected type and what was given.
    """
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"`{key}` expects float, got {_got(value)}.")
        return float(value)
    if tp in (int, bool, str):
        if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
            return value
        raise ConfigError(f"`{key}` expects {tp.__name__}, got {_got(value)}.")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"`{key}` expects {_type_name(tp)} (a list), got {_got(value)}.")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if not args:
            return tuple(value)
        if len(args) != len(value):
            raise ConfigError(f"`{key}` expects {len(args)} items, got {len(value)}: {value!r}.")
        return tuple(coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(args, value)))
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if not any(value == c and type(value) is type(c) for c in choices):
            raise ConfigError(f"`{key}` must be one of {list(choices)}, got {_got(value)}.")
        return value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            if option is type(None):
                continue
            try:
                return coerce(value, option, key)
            except ConfigError:
                pass
        raise ConfigError(f"`{key}` expects {_type_name(tp)}, got {_got(value)}.")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"`{key}` expects {_type_name(tp)}, got {_got(value)}.")
    return value


def _unknown(
    key: str, valid: Iterable[str], what: str = "config key", where: str = ""
) -> ConfigError:
    valid = list(valid)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean `{close[0]}`?" if close else ""
    where = f" in {where}" if where else ""
    return ConfigError(f"Unknown {what} `{key}`{where}.{hint} Valid keys: {', '.join(valid)}.")


def build_config(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Instantiate the nested frozen dataclass ``cls`` from a dict, validating every key.

    Args:
        cls: the config dataclass.
        data: nested dict (sections as sub-dicts); missing keys take their defaults.
        prefix: dotted prefix of ``cls`` inside the root config, for error messages.

    Returns:
        A ``cls`` instance.

    Raises:
        ConfigError: an unknown key (listing the valid ones) or a value of the wrong type.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"`{prefix.rstrip('.')}` is a section (a table), got {_got(data)}.")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    valid = [f"{prefix}{n}" for n in names] + ([] if prefix else list(RESERVED))
    for key in data:
        if key not in names:
            raise _unknown(f"{prefix}{key}", valid)
    kwargs = {}
    for name in names:
        if name not in data:
            continue
        tp = hints[name]
        if _is_config_class(tp):
            kwargs[name] = build_config(tp, data[name], prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = coerce(data[name], tp, f"{prefix}{name}")
    return cls(**kwargs)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Nested dict of a config dataclass instance (tuples become lists, for JSON)."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple | list):
            return [convert(v) for v in value]
        return value

    return convert(config)


def replace_path(config: Any, path: str, value: Any) -> Any:
    """``dataclasses.replace`` along a dotted path of a nested frozen dataclass.

    Args:
        config: the root config instance.
        path: dotted key, e.g. ``"optimizer.lr"``.
        value: the new leaf value (may be a tracer).

    Returns:
        A new config; ``config`` is unchanged.
    """
    head, _, rest = path.partition(".")
    if not rest:
        return dataclasses.replace(config, **{head: value})
    return dataclasses.replace(config, **{head: replace_path(getattr(config, head), rest, value)})


def parse_override(text: str) -> tuple[str, Any]:
    """Parse a ``--set`` argument.

    The value is read as a TOML literal (``3e-4``, ``true``, ``[1, 2]``, ``"adamw"``); a value
    that is not valid TOML is taken as a bare string (``name=adamw``).

    Args:
        text: ``"key=value"``.

    Returns:
        ``(key, value)``.

    Raises:
        ConfigError: ``text`` has no ``=`` or an empty key.

    Example:
        >>> parse_override("optimizer.lr=3e-4")
        ('optimizer.lr', 0.0003)
    """
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key:
        raise ConfigError(f"Override {text!r} must look like key=value.")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    # `a.b = 1` without quotes parses as nested tables; sweep and quick keys are dotted paths.
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


_WHOLE_TABLES = ("sweep", "sweep.product", "sweep.zip")


def _quick_updates(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The ``[quick]`` table as dotted ``key: value`` updates, like ``--set``'s: nested tables
    (however the file spelled the dots) merge key by key, except a whole sweep table given as
    a quoted dotted key (``"sweep.product" = {seed = [0]}``) or empty (``sweep = {}``, a single
    point), which replaces it."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        whole = path in _WHOLE_TABLES and (not value or "." in key)
        if isinstance(value, dict) and not whole:
            out.update(_quick_updates(value, f"{path}."))
        else:
            out[path] = value
    return out


def _zip_groups(sweep: dict[str, Any]) -> list[dict[str, Any]]:
    zips = sweep.get("zip", [])
    return [zips] if isinstance(zips, dict) else zips


def _flatten_sweep(raw: dict[str, Any]) -> None:
    """Sweep tables keyed by dotted paths, however the file spelled them."""
    sweep = raw.get("sweep")
    if not isinstance(sweep, dict):
        return
    if isinstance(sweep.get("product"), dict):
        sweep["product"] = _flatten(sweep["product"])
    zips = sweep.get("zip")
    if isinstance(zips, dict):
        sweep["zip"] = _flatten(zips)
    elif isinstance(zips, list):
        sweep["zip"] = [_flatten(g) if isinstance(g, dict) else g for g in zips]


def _pin(raw: dict[str, Any], key: str) -> None:
    """Remove ``key`` from the sweep: an override of a swept field fixes its value."""
    sweep = raw.get("sweep")
    if not isinstance(sweep, dict):
        return
    product = sweep.get("product")
    if isinstance(product, dict):
        product.pop(key, None)
    zips = sweep.get("zip")
    if isinstance(zips, dict):
        zips.pop(key, None)
    elif isinstance(zips, list):
        for group in zips:
            if isinstance(group, dict):
                group.pop(key, None)
        sweep["zip"] = [g for g in zips if g]


def _apply_update(raw: dict[str, Any], key: str, value: Any, fields: dict[str, FieldInfo]) -> None:
    axes = ["seed", *fields]
    if key == "sweep":  # `--set sweep={}`: a single point
        raw["sweep"] = value
        return
    if key in ("sweep.product", "sweep.zip"):  # replace a whole table (`sweep.zip=[]`)
        sweep = raw.setdefault("sweep", {})
        if not isinstance(sweep, dict):
            raise ConfigError(f"`sweep` must be a table, got {_got(sweep)}.")
        sweep[key.split(".")[1]] = value
        return
    if key.startswith("sweep."):
        section, _, axis = key[len("sweep.") :].partition(".")
        if section not in ("product", "zip") or not axis:
            raise _unknown(key, ["sweep.product[.<key>]", "sweep.zip[.<key>]"], "sweep override")
        if axis not in axes:
            raise _unknown(axis, axes, "sweep axis", f"`{key}`")
        sweep = raw.setdefault("sweep", {})
        if not isinstance(sweep, dict):
            raise ConfigError(f"`sweep` must be a table, got {_got(sweep)}.")
        if section == "product":
            sweep.setdefault("product", {})[axis] = value
            return
        zips = sweep.setdefault("zip", {})
        if isinstance(zips, dict):
            zips[axis] = value
            return
        for group in zips:
            if isinstance(group, dict) and axis in group:
                group[axis] = value
                return
        raise ConfigError(f"Cannot override `{key}`: no [[sweep.zip]] group holds `{axis}`.")
    if key in ("experiment", "seed") or key in fields:
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"Cannot set `{key}`: `{part}` is not a table.")
            node = child
        node[parts[-1]] = value
        _pin(raw, key)
        return
    inside = [f for f in fields if f.startswith(f"{key}.")]
    if inside:
        raise ConfigError(f"`{key}` is a section; set one of its keys: {', '.join(inside)}.")
    valid = ["experiment", "seed", *fields, "sweep", "sweep.product[.<key>]", "sweep.zip[.<key>]"]
    raise _unknown(key, valid, "override key")


def _check_axis(key: str, values: Any, fields: dict[str, FieldInfo], where: str) -> list[Any]:
    axes = ["seed", *fields]
    if key not in axes:
        raise _unknown(key, axes, "sweep axis", where)
    if not isinstance(values, list) or not values:
        raise ConfigError(
            f"Sweep axis `{key}` (in {where}) must be a non-empty list, got {_got(values)}."
        )
    if key == "seed":
        return [_check_seed(v, "seed") for v in values]
    return [coerce(v, fields[key].type, f"{key}[{i}]") for i, v in enumerate(values)]


def _check_seed(value: Any, key: str) -> int:
    seed = coerce(value, int, key)
    if not 0 <= seed < SEED_LIMIT:
        raise ConfigError(f"`{key}` must be in [0, 2**31), got {seed}.")
    return seed


def _check_unique(key: str, rows: list[tuple[Any, ...]], where: str) -> None:
    """Reject repeated values along an axis: two equal points would share one result file."""
    seen = [json.dumps(row if len(row) > 1 else row[0]) for row in rows]
    repeated = sorted({s for s in seen if seen.count(s) > 1})
    if repeated:
        raise ConfigError(f"Sweep axis `{key}` (in {where}) repeats values: {', '.join(repeated)}.")


def _normalize_sweep(sweep: Any, fields: dict[str, FieldInfo]) -> dict[str, Any]:
    """Validate a sweep table; return ``{"product": {...}, "zip": [{...}, ...]}``."""
    if not isinstance(sweep, dict):
        raise ConfigError(f"`sweep` must be a table with `product` and/or `zip`, got {sweep!r}.")
    for key in sweep:
        if key not in ("product", "zip"):
            raise _unknown(f"sweep.{key}", ["sweep.product", "sweep.zip"])
    product = sweep.get("product", {})
    if not isinstance(product, dict):
        raise ConfigError(f"`sweep.product` must be a table, got {_got(product)}.")
    out: dict[str, Any] = {
        "product": {
            k: _check_axis(k, v, fields, "sweep.product") for k, v in _flatten(product).items()
        },
        "zip": [],
    }
    zips = sweep.get("zip", [])
    if not isinstance(zips, dict | list) or not all(
        isinstance(g, dict) for g in _zip_groups(sweep)
    ):
        raise ConfigError("`sweep.zip` must be a table or an array of tables ([[sweep.zip]]).")
    for group in _zip_groups(sweep):
        columns = {k: _check_axis(k, v, fields, "sweep.zip") for k, v in _flatten(group).items()}
        if not columns:
            continue
        lengths = {k: len(v) for k, v in columns.items()}
        if len(set(lengths.values())) != 1:
            raise ConfigError(f"Zipped sweep axes must have equal lengths, got {lengths}.")
        out["zip"].append(columns)
    for key, values in out["product"].items():
        _check_unique(key, [(v,) for v in values], "sweep.product")
    for group in out["zip"]:
        _check_unique(", ".join(group), list(zip(*group.values())), "sweep.zip")
    seen: list[str] = [*out["product"], *(k for g in out["zip"] for k in g)]
    twice = sorted({k for k in seen if seen.count(k) > 1})
    if twice:
        raise ConfigError(f"Sweep axes appear more than once: {twice}.")
    return out


@dataclasses.dataclass(frozen=True)
class ResolvedConfig:
    """A validated config with overrides applied, and its expanded sweep.

    Attributes:
        name: the experiment's name.
        base: the config dataclass instance (values outside the sweep).
        seed: the base seed (used when ``seed`` is not swept).
        axes: sweep axes as ``((keys, values), ...)``: ``keys`` is a tuple of dotted keys (one
            for a product axis, several for a zip group) and ``values`` holds one tuple of
            values per position along the axis.
        fields: the leaf fields of the config class.
        raw: the resolved config as a nested dict (what ``config.json`` holds).
    """

    name: str
    base: Any
    seed: int
    axes: tuple[tuple[tuple[str, ...], tuple[tuple[Any, ...], ...]], ...]
    fields: dict[str, FieldInfo]
    raw: dict[str, Any]

    @property
    def swept_keys(self) -> tuple[str, ...]:
        """The dotted keys of every swept field (and ``"seed"`` when it is swept)."""
        return tuple(k for keys, _ in self.axes for k in keys)

    def points(self) -> list[dict[str, Any]]:
        """Every sweep point as ``{dotted key: value}``, always including ``"seed"``."""
        out = []
        for combo in itertools.product(*[values for _, values in self.axes]):
            point: dict[str, Any] = {"seed": self.seed}
            for (keys, _), values in zip(self.axes, combo):
                point.update(zip(keys, values))
            out.append(point)
        return out

    def config_for(self, point: dict[str, Any]) -> Any:
        """The config instance of one point (Python values; ``"seed"`` is ignored)."""
        config = self.base
        for key, value in point.items():
            if key != "seed":
                config = replace_path(config, key, value)
        return config

    def point_dict(self, point: dict[str, Any]) -> dict[str, Any]:
        """The resolved config of one point as a nested dict (with ``seed``, no sweep)."""
        config = {"experiment": self.name, "seed": point.get("seed", self.seed)}
        config.update(config_to_dict(self.config_for(point)))
        return config

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of :attr:`raw`."""
        return copy.deepcopy(self.raw)

    def to_json(self) -> str:
        """:attr:`raw` as canonical, indented JSON (stable across runs, used for the run id)."""
        return json.dumps(self.raw, indent=2, sort_keys=False)


def resolve(
    raw: dict[str, Any],
    name: str,
    config_cls: type,
    *,
    overrides: Sequence[str] = (),
    quick: bool = False,
) -> ResolvedConfig:
    """Validate TOML content for ``config_cls`` and apply ``[quick]`` and ``--set`` overrides.

    The ``[quick]`` table is validated even when ``quick`` is false, so a typo there fails on
    every run, not only in CI.

    Args:
        raw: the parsed TOML file.
        name: the experiment's name (must match ``raw["experiment"]`` when given).
        config_cls: the experiment's config dataclass.
        overrides: ``"key=value"`` strings (``--set``), applied after ``[quick]``.
        quick: apply the ``[quick]`` overrides.

    Returns:
        The :class:`ResolvedConfig`.

    Raises:
        ConfigError: unknown keys, wrong types, bad sweeps.
    """
    resolved = _resolve(raw, name, config_cls, overrides, quick)
    if not quick and raw.get("quick"):
        try:
            _resolve(raw, name, config_cls, (), True)
        except ConfigError as err:
            raise ConfigError(f"In the [quick] table: {err}") from None
    return resolved


def _resolve(
    raw: dict[str, Any], name: str, config_cls: type, overrides: Sequence[str], quick: bool
) -> ResolvedConfig:
    raw = copy.deepcopy(raw)
    fields = field_table(config_cls)
    quick_table = raw.pop("quick", {})
    if not isinstance(quick_table, dict):
        raise ConfigError(f"`quick` must be a table of dotted overrides, got {_got(quick_table)}.")
    updates = list(_quick_updates(quick_table).items()) if quick else []
    if isinstance(overrides, str):
        overrides = [overrides]
    updates += [parse_override(o) for o in overrides]
    _flatten_sweep(raw)
    for key, value in updates:
        _apply_update(raw, key, value, fields)
        _flatten_sweep(raw)  # `sweep.product={...}` may bring nested tables
    experiment = raw.pop("experiment", name)
    if experiment != name:
        raise ConfigError(f"This config is for experiment {experiment!r}, not {name!r}.")
    seed = _check_seed(raw.pop("seed", 0), "seed")
    sweep = _normalize_sweep(raw.pop("sweep", {}), fields)
    base = build_config(config_cls, raw)
    axes = tuple(((k,), tuple((v,) for v in vals)) for k, vals in sweep["product"].items())
    axes += tuple((tuple(g), tuple(zip(*g.values()))) for g in sweep["zip"])
    resolved_raw = {"experiment": name, "seed": seed, **config_to_dict(base)}
    resolved_raw["sweep"] = json.loads(json.dumps(sweep))  # tuples -> lists, like the rest
    return ResolvedConfig(name, base, seed, axes, fields, resolved_raw)


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, with a clear error for a syntax problem.

    Raises:
        ConfigError: the file is not valid TOML.
    """
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from None
