"""The grid layout: a ``seed x values`` product runs as a vmap over seeds of a vmap over the
values. Checked against the flat layout (one vmap over the points) on the same sweeps, as is
the map layout (each device's points one after another)."""

import json

import jax
import numpy as np
import pytest

from jaxspec.experiments import run_experiment
from jaxspec.experiments._runner import _grid_split

from .helpers import run_toy
from .test_faults import FAULTS

KEYS = ("lr",)


def _points(seeds, rates):
    return [{"seed": s, "lr": r} for s in seeds for r in rates]


def test_grid_split_finds_full_seed_rows():
    points = _points([0, 1, 2], [0.1, 0.2, 0.3])
    values, rows, rest = _grid_split(points, KEYS)
    assert values == [(0.1,), (0.2,), (0.3,)] and rest == []
    assert [[p["seed"] for p in row] for row in rows] == [[0] * 3, [1] * 3, [2] * 3]
    assert [[p["lr"] for p in row] for row in rows] == [[0.1, 0.2, 0.3]] * 3
    # after a resume: seed 1 lost a point, so its other points run flat
    partial = [p for p in points if p != {"seed": 1, "lr": 0.2}]
    values, rows, rest = _grid_split(partial, KEYS)
    assert [row[0]["seed"] for row in rows] == [0, 2]
    assert rest == [{"seed": 1, "lr": 0.1}, {"seed": 1, "lr": 0.3}]
    # a repeated point stays out of the rows; rows keep the first-seen value order
    values, rows, rest = _grid_split([*points, points[4]], KEYS)
    assert len(rows) == 3 and rest == [points[4]]


@pytest.mark.parametrize(
    "points",
    [
        _points([0, 1, 2], [0.1]),  # one value: nothing to share
        _points([0], [0.1, 0.2]),  # one seed row
        _points([0, 1], [0.1, 0.2])[:3],  # one full row only
    ],
)
def test_grid_split_declines_when_a_grid_would_not_pay(points):
    assert _grid_split(points, KEYS) == ([], [], points)
    assert _grid_split(points, ()) == ([], [], points)


def _faulty(results, **kwargs):
    return run_experiment(
        "faulty", results_dir=results, experiments_dir=FAULTS, progress=False, **kwargs
    )


def _groups(result):
    return json.loads((result.run_dir / "run.json").read_text())["groups"]


def _by_point(result, metric):
    return {json.dumps(r.point, sort_keys=True): r.metrics[metric] for r in result.records}


def test_grid_matches_flat_and_is_recorded(tmp_path):
    grid = run_toy(tmp_path / "grid", layout="grid")
    flat = run_toy(tmp_path / "flat", layout="flat")
    assert grid.run_dir.name == flat.run_dir.name  # the layout is not part of the config
    # toy: 2 seeds x 3 (lr, momentum) pairs per dim group; the pairs are one dynamic tuple
    for group in _groups(grid):
        assert group["layout"] == "grid" and group["flat_points"] == 0
        assert group["grid"] == group["grid"] | {"seeds": 2, "values": 3, "calls": 1}
        assert group["batch"] == 6 and group["calls"] == 1
    assert [g["layout"] for g in _groups(flat)] == ["flat", "flat"]
    run = json.loads((grid.run_dir / "run.json").read_text())
    assert run["layout"] == "grid"
    a, b = _by_point(grid, "curve"), _by_point(flat, "curve")
    assert a.keys() == b.keys() and len(a) == 12
    for key in a:  # the toy runs in float64: reassociated sums differ at round-off only
        np.testing.assert_allclose(a[key], b[key], rtol=1e-12, atol=0)


def test_grid_chunks_whole_rows_under_a_memory_budget(tmp_path):
    def run(results, **kwargs):
        return _faulty(results, overrides=["width=128"], layout="grid", **kwargs)

    whole = run(tmp_path / "whole")
    ((g_whole),) = _groups(whole)
    assert g_whole["layout"] == "grid" and g_whole["calls"] == 1 and g_whole["batch"] == 8
    memory = g_whole["grid"]  # no budget: no memory probe
    assert "memory" not in memory
    # a (128, 128) float32 intermediate per point, 4 points per seed row: about 256 KiB a row
    budgeted = run(tmp_path / "budget", memory_budget=400 * 1024)
    (group,) = _groups(budgeted)
    mem = group["memory"]
    assert mem["bytes_per_row"] >= 4 * 128 * 128 * 4 * 0.9
    assert mem["fixed_bytes"] + mem["bytes_per_row"] <= 400 * 1024
    assert group["layout"] == "grid" and group["calls"] == 2 and group["batch"] == 4
    a, b = _by_point(whole, "final"), _by_point(budgeted, "final")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    # a budget below one seed row: the flat layout runs the group, chunked by points
    tight = run(tmp_path / "tight", memory_budget=200 * 1024)
    (group,) = _groups(tight)
    assert group["layout"] == "flat" and group["grid"]["calls"] == 0 and group["calls"] >= 2
    c = _by_point(tight, "final")
    for key in a:
        np.testing.assert_allclose(a[key], c[key], rtol=1e-6)


def test_a_raising_point_in_a_grid_is_isolated(tmp_path):
    result = _faulty(tmp_path, overrides=["fail_above=0.6"], layout="grid")
    statuses = {json.dumps(r.point, sort_keys=True): r.status for r in result.records}
    bad = [k for k, s in statuses.items() if s == "error"]
    assert sorted(json.loads(k)["lr"] for k in bad) == [0.7, 0.7]  # lr 0.7 in both seed rows
    assert sum(s == "ok" for s in statuses.values()) == 6
    (group,) = _groups(result)
    assert group["grid"]["calls"] == 0 and group["flat_points"] == 8  # the rows ran flat


def test_bad_layout_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="layout"):
        run_toy(tmp_path, layout="nested")


def test_grid_split_keeps_signed_zeros_apart_and_repeats_once():
    points = _points([0, 1], [0.0, -0.0])
    values, rows, rest = _grid_split(points, KEYS)
    assert values == [(0.0,), (-0.0,)] and len(rows) == 2 and rest == []
    # seed 2 has no full row: its repeated point appears in rest as often as in the input
    partial = [*points, {"seed": 2, "lr": 0.0}, {"seed": 2, "lr": 0.0}]
    _, rows, rest = _grid_split(partial, KEYS)
    assert len(rows) == 2 and rest == [{"seed": 2, "lr": 0.0}] * 2


def test_a_budget_below_one_row_per_device_runs_flat(tmp_path):
    # max_batch = one seed row (4 points), so the budget probe measures one row per device
    # only (XLA's analysis gives 2.7 kB for that program: a 1 kB budget cannot hold it)
    result = _faulty(tmp_path, layout="grid", max_batch=4, memory_budget=1000)
    (group,) = _groups(result)
    assert group["layout"] == "flat" and group["grid"]["calls"] == 0
    assert "exceeds the budget" in group["grid"]["note"]
    assert group["statuses"]["ok"] == 8 and group["calls"] >= 4


@pytest.fixture
def fake_oom(monkeypatch):
    """Calls computing more than ``limit[0]`` points raise an out-of-memory error."""
    from jaxspec.experiments import _runner

    limit = [float("inf")]
    real = _runner._local_rows

    def local_rows(out):
        points = min(leaf.size for leaf in jax.tree.leaves(out))  # a scalar metric
        if points > limit[0]:
            raise RuntimeError(f"RESOURCE_EXHAUSTED: Out of memory ({points} points)")
        return real(out)

    monkeypatch.setattr(_runner, "_local_rows", local_rows)
    return limit


def test_out_of_memory_halves_the_grid_then_falls_back_to_flat(tmp_path, fake_oom):
    reference = _by_point(_faulty(tmp_path / "ref", layout="grid"), "final")
    fake_oom[0] = 4  # one seed row per call
    halved = _faulty(tmp_path / "halved", layout="grid")
    (group,) = _groups(halved)
    assert group["layout"] == "grid" and group["grid"]["oom_retries"] == 1
    assert group["calls"] == 2 and group["batch"] == 4
    got = _by_point(halved, "final")
    for key in reference:
        np.testing.assert_array_equal(got[key], reference[key])
    fake_oom[0] = 3  # below one row: the rows go to the flat path, which halves to 2 points
    flat = _faulty(tmp_path / "flat", layout="grid")
    (group,) = _groups(flat)
    assert group["layout"] == "flat" and "ran out of memory" in group["grid"]["note"]
    assert group["batch"] == 2 and group["statuses"]["ok"] == 8
    got = _by_point(flat, "final")
    for key in reference:
        np.testing.assert_allclose(got[key], reference[key], rtol=1e-6)


def test_out_of_memory_at_one_point_per_device_ends_with_errors(tmp_path, fake_oom):
    fake_oom[0] = 0  # nothing fits
    result = _faulty(tmp_path)
    (group,) = _groups(result)
    assert group["statuses"]["error"] == 8
    assert {r.status for r in result.records} == {"error"}
    assert all("RESOURCE_EXHAUSTED" in r.message for r in result.records)


@pytest.fixture
def fake_compile_oom(monkeypatch):
    """Compiling a sweep program whose seed axis is longer than ``limit[0]`` raises
    ``RESOURCE_EXHAUSTED``, as XLA:GPU's autotuner does when a matrix product's operands do
    not fit (seen on an H200 with a 14 GiB pool: a 32 GiB batched operand). ``message[0]``
    replaces the error's text, to stand for an ordinary compile error."""
    real = jax.stages.Lowered.compile
    limit, message = [float("inf")], [None]

    def compile(self, *args, **kwargs):
        seeds = jax.tree.leaves(self.args_info)[-1].shape[0]  # rows (grid) or points (flat)
        if seeds > limit[0]:
            raise RuntimeError(
                message[0] or f"RESOURCE_EXHAUSTED: Out of memory while compiling ({seeds})"
            )
        return real(self, *args, **kwargs)

    monkeypatch.setattr(jax.stages.Lowered, "compile", compile)
    return limit, message


def test_out_of_memory_while_compiling_halves_the_batch(tmp_path, fake_compile_oom):
    limit, message = fake_compile_oom
    reference = _by_point(_faulty(tmp_path / "ref", layout="grid"), "final")
    assert len(reference) == 8
    limit[0] = 1  # one seed row (4 points) per grid call; one point per flat call
    for layout, retries, calls, batch in (("grid", 1, 2, 4), ("flat", 3, 8, 1)):
        result = _faulty(tmp_path / layout, layout=layout)
        (group,) = _groups(result)
        assert group["layout"] == layout and group["oom_retries"] == retries, group
        assert group["calls"] == calls and group["batch"] == batch, group
        got = _by_point(result, "final")
        assert got.keys() == reference.keys()
        for key in reference:
            np.testing.assert_allclose(got[key], reference[key], rtol=1e-6)
    # a memory budget's probes: two rows do not compile, so one row per call
    budget = _faulty(tmp_path / "budget", layout="grid", memory_budget=10**9)
    (group,) = _groups(budget)
    assert group["memory"]["compile_out_of_memory"] == 2 and group["batch"] == 4, group
    assert group["oom_retries"] == 0 and group["statuses"]["ok"] == 8
    # nothing compiles: the grid hands its rows to the flat path, where every point ends
    # with an error status (a later run retries them) and the run completes
    limit[0] = 0
    for kwargs in ({}, {"memory_budget": 10**9}):
        result = _faulty(tmp_path / f"none-{len(kwargs)}", **kwargs)
        (group,) = _groups(result)
        assert group["statuses"] == {"ok": 0, "nonfinite": 0, "error": 8}, group
        assert all("RESOURCE_EXHAUSTED" in r.message for r in result.records)
    # any other compile error is the experiment's bug: it propagates
    message[0] = "INVALID_ARGUMENT: a compile error"
    with pytest.raises(RuntimeError, match="a compile error"):
        _faulty(tmp_path / "bug")


def test_resume_runs_full_rows_as_a_grid_and_the_partial_row_flat(tmp_path):
    from jaxspec.experiments._runner import point_id

    overrides = ["sweep.product.seed=[0, 1, 2]"]
    first = _faulty(tmp_path, overrides=overrides, layout="grid")
    points_dir = first.run_dir / "points"
    lost = [r.point for r in first.records if r.point["seed"] in (0, 1)]
    lost.append(next(r.point for r in first.records if r.point["seed"] == 2))
    for point in lost:
        (points_dir / f"{point_id(point)}.json").unlink()
    again = _faulty(tmp_path, overrides=overrides, layout="grid")
    assert again.num_run == 9 and again.num_resumed == 3
    (group,) = _groups(again)
    assert group["layout"] == "grid" and group["grid"]["seeds"] == 2
    assert group["batch"] == 8 and group["flat_batch"] == 1 and group["flat_points"] == 1
    assert group["calls"] == 2 and group["statuses"]["ok"] == 9
    a, b = _by_point(first, "final"), _by_point(again, "final")
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-6)


def test_map_layout_matches_flat_chunks_and_isolates_failures(tmp_path):
    flat = run_toy(tmp_path / "flat", layout="flat")
    mapped = run_toy(tmp_path / "map", layout="map")
    assert [g["layout"] for g in _groups(mapped)] == ["map", "map"]
    assert all(g["calls"] == 1 and g["flat_points"] == 6 for g in _groups(mapped))
    a, b = _by_point(flat, "curve"), _by_point(mapped, "curve")
    assert a.keys() == b.keys() and len(a) == 12
    for key in a:  # float64: reassociation at most
        np.testing.assert_allclose(b[key], a[key], rtol=1e-12, atol=0)
    # chunks of 4 points: 6 per group -> a call of 4 and a call of 2 (padded to 2, not 4)
    chunked = run_toy(tmp_path / "chunked", layout="map", max_batch=4)
    assert all(g["calls"] == 2 and g["batch"] == 4 for g in _groups(chunked))
    c = _by_point(chunked, "curve")
    for key in a:
        np.testing.assert_array_equal(c[key], b[key])  # each point computed alone either way
    # a raising point is re-run alone and stored with error status; the others are kept
    faulty = _faulty(tmp_path / "faulty", overrides=["fail_above=0.6"], layout="map")
    statuses = {json.dumps(r.point, sort_keys=True): r.status for r in faulty.records}
    bad = sorted(json.loads(k)["lr"] for k, s in statuses.items() if s == "error")
    assert bad == [0.7, 0.7] and sum(s == "ok" for s in statuses.values()) == 6
    (group,) = _groups(faulty)
    assert group["layout"] == "map" and group["statuses"]["error"] == 2


def test_map_layout_compiles_its_last_short_call_before_running_it(tmp_path, monkeypatch):
    """8 points in calls of 3: the last call (2 points) runs a program of its own. It is
    compiled like the others, before the call: a compile error is the experiment's bug and
    propagates (it must not turn into per-point error statuses), and an out-of-memory error
    while compiling halves the batch."""
    real = jax.stages.Lowered.compile
    failing, message = {2}, ["INVALID_ARGUMENT: a compile error"]

    def compile(self, *args, **kwargs):
        points = jax.tree.leaves(self.args_info)[-1].shape[0]
        if points in failing:
            raise RuntimeError(f"{message[0]} ({points})")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(jax.stages.Lowered, "compile", compile)
    with pytest.raises(RuntimeError, match="a compile error"):
        _faulty(tmp_path / "bug", layout="map", max_batch=3)
    message[0] = "RESOURCE_EXHAUSTED: Out of memory while compiling"
    result = _faulty(tmp_path / "oom", layout="map", max_batch=3)
    (group,) = _groups(result)
    assert group["oom_retries"] == 1 and group["statuses"]["ok"] == 8, group
    assert group["calls"] == 4 and group["batch"] == 1, group  # 3, 3, then 1 and 1


def test_map_layout_skips_the_grid(tmp_path):
    result = _faulty(tmp_path, layout="map")  # 2 seeds x 4 rates: a full grid
    (group,) = _groups(result)
    assert group["layout"] == "map" and "grid" not in group and group["calls"] == 1
