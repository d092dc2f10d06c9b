"""Typed configs: loading, unknown keys, type errors, --set overrides, sweep expansion."""

import dataclasses

import pytest

from jaxspec.experiments import (
    ConfigError,
    dynamic,
    field_table,
    parse_override,
    resolve,
    static,
)

from .helpers import toy, toy_raw


def _resolve(raw=None, **kwargs):
    experiment, _ = toy()
    return resolve(toy_raw() if raw is None else raw, "toy", experiment.config_cls, **kwargs)


def test_config_file_loads_into_nested_frozen_dataclasses():
    experiment, resolved = toy()
    base = resolved.base
    assert experiment.name == "toy" and resolved.name == "toy" and resolved.seed == 0
    assert isinstance(base, experiment.config_cls)
    assert base.dim == 4 and base.optimizer.lr == 0.1 and base.optimizer.steps == 20
    assert base.name == "gd" and base.scale == (1.0, 2.0)  # defaults kept
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.dim = 5
    assert resolved.raw["optimizer"] == {"lr": 0.1, "momentum": 0.0, "steps": 20}
    assert resolved.raw["sweep"]["product"] == {"seed": [0, 1], "dim": [3, 5]}


def test_unknown_section_key_names_the_key_and_the_valid_keys():
    raw = toy_raw()
    raw["optimizer"]["lrr"] = 0.1
    with pytest.raises(ConfigError) as err:
        _resolve(raw)
    message = str(err.value)
    assert "`optimizer.lrr`" in message and "Did you mean `optimizer.lr`?" in message
    assert "Valid keys: optimizer.lr, optimizer.momentum, optimizer.steps." in message


def test_unknown_top_level_key_lists_fields_and_runner_keys():
    with pytest.raises(ConfigError, match="`optimiser`") as err:
        _resolve({**toy_raw(), "optimiser": {"lr": 1.0}})
    for key in ("dim", "optimizer", "scale", "experiment", "seed", "sweep", "quick"):
        assert key in str(err.value)


@pytest.mark.parametrize(
    ("sweep", "match"),
    [
        ({"product": {"optimizer.lrr": [1.0]}}, "sweep axis `optimizer.lrr` in sweep.product"),
        ({"zip": {"optimizer": [1.0]}}, "sweep axis `optimizer` in sweep.zip"),
        ({"prodcut": {"seed": [1]}}, r"`sweep.prodcut`.*Valid keys: sweep.product, sweep.zip"),
        ({"zip": {"optimizer.lr": [1.0, 2.0], "optimizer.momentum": [0.0]}}, "equal lengths"),
        ({"product": {"dim": []}}, "non-empty list"),
        ({"product": {"dim": 3}}, "non-empty list"),
        ({"product": {"dim": [3]}, "zip": {"dim": [4]}}, "more than once"),
        ({"product": {"seed": [0, 1, 0]}}, r"`seed` \(in sweep.product\) repeats values: 0"),
        ({"zip": {"dim": [1, 1], "name": ["a", "a"]}}, r"`dim, name` .* repeats .*\[1, \"a\"\]"),
    ],
)
def test_bad_sweeps(sweep, match):
    with pytest.raises(ConfigError, match=match):
        _resolve({**toy_raw(), "sweep": sweep})


def test_unknown_sweep_axis_lists_valid_axes():
    with pytest.raises(ConfigError) as err:
        _resolve({"sweep": {"product": {"optimizer.lrr": [1.0]}}})
    assert "Valid keys: seed, dim, name, shift, scale, optimizer.lr" in str(err.value)


def test_quick_table_is_validated_even_without_quick():
    raw = toy_raw()
    raw["quick"]["optimizer.step"] = 3
    with pytest.raises(ConfigError, match=r"\[quick\].*`optimizer.step`.*optimizer.steps"):
        _resolve(raw)
    raw = toy_raw()
    raw["quick"]["optimizer.steps"] = "ten"
    with pytest.raises(ConfigError, match=r"\[quick\].*`optimizer.steps` expects int"):
        _resolve(raw)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("optimizer.lr=fast", r"`optimizer.lr` expects float, got 'fast' \(str\)"),
        ('optimizer.lr="0.1"', r"`optimizer.lr` expects float, got '0.1' \(str\)"),
        ("optimizer.steps=2.5", r"`optimizer.steps` expects int, got 2.5 \(float\)"),
        ("dim=true", r"`dim` expects int, got True \(bool\)"),
        ("name=3", r"`name` expects str, got 3 \(int\)"),
        ("scale=1.0", r"`scale` expects tuple\[float, ...\] \(a list\), got 1.0"),
        ("scale=[1, 'a']", r"`scale\[1\]` expects float"),
        ("optimizer=3", "`optimizer` is a section"),
        ("seed=-1", r"`seed` must be in \[0, 2\*\*31\)"),
        ("seed=1.5", "`seed` expects int"),
        ("sweep.product.dim=[3, 'x']", r"`dim\[1\]` expects int"),
        ("sweep.zip.optimizer.lr=[1.0]", "equal lengths"),
        ("optimizer.nope=1", "Unknown override key `optimizer.nope`"),
        ("sweep.product.bogus=[1]", "Unknown sweep axis `bogus` in `sweep.product.bogus`"),
        ("sweep.grid.dim=[1]", "Unknown sweep override `sweep.grid.dim`"),
        ("experiment=other", "for experiment 'other', not 'toy'"),
        ("novalue", "must look like key=value"),
    ],
)
def test_type_errors_and_bad_overrides(override, match):
    with pytest.raises(ConfigError, match=match):
        _resolve(overrides=[override])


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        _resolve(overrides=["dim=x"])


def test_parse_override_reads_toml_literals():
    assert parse_override("optimizer.lr=3e-4") == ("optimizer.lr", 3e-4)
    assert parse_override(" dim = 7 ") == ("dim", 7)
    assert parse_override("name=adam") == ("name", "adam")  # bare word: a string
    assert parse_override('name="a b"') == ("name", "a b")
    assert parse_override("flag=true") == ("flag", True)
    assert parse_override("scale=[3, 4.5]") == ("scale", [3, 4.5])
    assert parse_override("expr=a=b") == ("expr", "a=b")


def test_overrides_are_coerced_to_the_field_types():
    resolved = _resolve(overrides=["optimizer.lr=1", "scale=[3, 4]", "name=adam", "seed=5"])
    base = resolved.base
    assert base.optimizer.lr == 1.0 and type(base.optimizer.lr) is float  # int -> float
    assert base.scale == (3.0, 4.0) and all(type(s) is float for s in base.scale)
    assert base.name == "adam" and resolved.seed == 5
    assert "seed" not in resolved.swept_keys  # --set of a swept key pins it
    assert {p["seed"] for p in resolved.points()} == {5}


def test_override_of_a_swept_field_pins_it():
    resolved = _resolve(overrides=["dim=7", "optimizer.lr=0.3"])
    points = resolved.points()
    # dim leaves the product; lr leaves its zip group, momentum keeps varying.
    assert len(points) == 2 * 3
    assert {p["seed"] for p in points} == {0, 1} and "dim" not in points[0]
    assert [p["optimizer.momentum"] for p in points[:3]] == [0.0, 0.5, 0.9]
    assert resolved.base.dim == 7 and resolved.base.optimizer.lr == 0.3
    assert resolved.raw["sweep"]["zip"] == [{"optimizer.momentum": [0.0, 0.5, 0.9]}]


def test_sweep_expansion_product_times_zip_in_order():
    _, resolved = toy()
    points = resolved.points()
    assert len(points) == 2 * 2 * 3
    assert points[0] == {"seed": 0, "dim": 3, "optimizer.lr": 0.05, "optimizer.momentum": 0.0}
    assert points[1] == {"seed": 0, "dim": 3, "optimizer.lr": 0.1, "optimizer.momentum": 0.5}
    assert points[3] == {"seed": 0, "dim": 5, "optimizer.lr": 0.05, "optimizer.momentum": 0.0}
    assert points[-1] == {"seed": 1, "dim": 5, "optimizer.lr": 0.2, "optimizer.momentum": 0.9}
    assert len({tuple(p.items()) for p in points}) == 12
    assert resolved.swept_keys == ("seed", "dim", "optimizer.lr", "optimizer.momentum")


def test_array_of_zip_tables_and_unquoted_dotted_keys():
    raw = {
        "seed": 3,
        "sweep": {
            "product": {"optimizer": {"steps": [5, 6]}},  # `optimizer.steps = [...]` unquoted
            "zip": [
                {"optimizer.lr": [0.1, 0.2, 0.3], "optimizer.momentum": [0, 0.5, 0.9]},
                {"dim": [2, 4], "name": ["a", "b"]},
            ],
        },
    }
    resolved = _resolve(raw)
    points = resolved.points()
    assert len(points) == 2 * 3 * 2
    assert points[0] == {
        "seed": 3,
        "optimizer.steps": 5,
        "optimizer.lr": 0.1,
        "optimizer.momentum": 0.0,
        "dim": 2,
        "name": "a",
    }
    assert points[1]["dim"] == 4 and points[1]["name"] == "b" and points[1]["optimizer.lr"] == 0.1
    assert type(points[0]["optimizer.momentum"]) is float
    overridden = _resolve(raw, overrides=["sweep.zip.dim=[8, 9]"])
    assert [p["dim"] for p in overridden.points()[:2]] == [8, 9]
    pinned = _resolve(raw, overrides=["optimizer.steps=7"])  # unquoted key pinned too
    assert len(pinned.points()) == 6 and pinned.base.optimizer.steps == 7


def test_quick_overrides_values_and_sweep_axes():
    _, resolved = toy(quick=True)
    assert resolved.base.optimizer.steps == 10
    assert [p["seed"] for p in resolved.points()] == [7] * 6
    _, both = toy(quick=True, overrides=["sweep.product.seed=[1, 2]"])  # --set after [quick]
    assert sorted({p["seed"] for p in both.points()}) == [1, 2]


def test_quick_replaces_whole_sweep_tables_as_set_does():
    """A quoted ``"sweep.product" = {...}`` or an empty table in ``[quick]`` replaces that
    sweep table, as ``--set`` does; they were flattened (merged into the product, or
    dropped). The toy sweeps seed x dim (2 x 2) x a zip of 3: 12 points."""
    cases = (
        ({"sweep.product": {"seed": [0]}}, "sweep.product={seed=[0]}", 3),  # not 2 x 3
        ({"sweep": {}}, "sweep={}", 1),
        ({"sweep": {"product": {}}}, "sweep.product={}", 3),
        ({"sweep.zip": {}}, "sweep.zip={}", 4),
        ({"sweep": {"product": {"seed": [0]}}}, "sweep.product.seed=[0]", 6),  # merges
    )
    for quick, override, count in cases:
        raw = toy_raw()
        raw["quick"] = quick
        points = _resolve(raw, quick=True).points()
        assert points == _resolve(overrides=[override]).points(), quick
        assert len(points) == count, (quick, len(points))


def test_static_and_dynamic_fields():
    experiment, _ = toy()
    table = field_table(experiment.config_cls)
    assert {k: v.dynamic for k, v in table.items()} == {
        "dim": False,
        "name": False,
        "shift": False,  # float, but declared static()
        "scale": False,
        "optimizer.lr": True,
        "optimizer.momentum": True,
        "optimizer.steps": False,
    }

    @dataclasses.dataclass(frozen=True)
    class Good:
        n: int = dynamic(3)
        x: float = static(1.0)

    assert [f.dynamic for f in field_table(Good).values()] == [True, False]

    @dataclasses.dataclass(frozen=True)
    class Bad:
        name: str = dynamic("a")

    with pytest.raises(ConfigError, match="only float, int or bool fields can be dynamic"):
        field_table(Bad)

    @dataclasses.dataclass(frozen=True)
    class Reserved:
        seed: int = 0

    with pytest.raises(ConfigError, match="reserved"):
        field_table(Reserved)


def test_config_for_a_point_and_its_dict():
    _, resolved = toy()
    point = resolved.points()[4]
    config = resolved.config_for(point)
    assert config.dim == 5 and config.optimizer.lr == 0.1 and config.optimizer.momentum == 0.5
    as_dict = resolved.point_dict(point)
    assert as_dict["seed"] == 0 and as_dict["dim"] == 5 and as_dict["optimizer"]["lr"] == 0.1
    assert "sweep" not in as_dict
