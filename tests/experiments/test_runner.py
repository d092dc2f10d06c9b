"""Running sweeps: static grouping, vmap == loop, files, resume, chunking, determinism."""

import json
import os
import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspec.experiments import ConfigError, atomic_write_text, point_id, run_experiment

from .helpers import FIXTURES, run_toy, toy, toy_module

ONE_GROUP = ("dim=3",)  # pins the static axis: one compile per run, for the cheaper tests


def _curves(result):
    return np.stack([r.metrics["curve"] for r in result.records])


def test_one_compile_per_static_value_and_vmap_equals_a_python_loop(tmp_path):
    experiment, resolved = toy()
    traces = toy_module().TRACES
    before = traces["count"]
    result = run_toy(tmp_path)
    assert traces["count"] - before == 2  # dims 3 and 5: one compile each
    assert issubclass(traces["types"]["optimizer.lr"], jax.core.Tracer)  # swept, dynamic
    assert traces["types"]["dim"] is int
    assert result.num_run == 12 and result.num_resumed == 0
    assert [r.point for r in result.records] == resolved.points()
    for record in result.records:
        assert record.metrics["curve"].dtype == np.float64  # x64 is on in the test suite
        assert record.metrics["curve"].shape == (20,)
        assert int(record.metrics["extra.dim"]) == record.point["dim"]
        assert float(record.metrics["final"]) == record.metrics["curve"][-1]
        assert record.config["optimizer"]["lr"] == record.point["optimizer.lr"]
        assert record.config["seed"] == record.point["seed"]
    # The reference: a Python loop over single points, config fields as Python values.
    for record in [result.records[i] for i in (0, 4, 8, 11)]:  # both dims, three lrs, two seeds
        point = record.point
        ref = experiment.run(resolved.config_for(point), jax.random.key(point["seed"]))
        np.testing.assert_allclose(record.metrics["curve"], ref["curve"], rtol=1e-12, atol=0)
    # Different seeds and learning rates really give different curves.
    assert len({float(r.metrics["final"]) for r in result.records}) == 12

    # The run folder.
    run_dir = result.run_dir
    assert run_dir.parent == tmp_path / "toy" and run_dir.name.startswith("full-")
    names = {p.name for p in run_dir.iterdir()}
    assert names == {
        "config.json",
        "metrics.jsonl",
        "report.md",
        "run.json",
        "curves.png",
        "points",
        ".lock",  # the run folder's lock file (empty; the lock itself dies with its holder)
    }
    assert len(list((run_dir / "points").iterdir())) == 12
    config = json.loads((run_dir / "config.json").read_text())
    assert config["experiment"] == "toy" and config["optimizer"]["steps"] == 20
    assert config["sweep"]["zip"][0]["optimizer.lr"] == [0.05, 0.1, 0.2]
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["point"] for line in lines] == [r.point for r in result.records]
    for line, record in zip(lines, result.records):
        assert line["metrics"]["curve"] == record.metrics["curve"].tolist()
        assert line["metrics"]["extra.dim"] == record.point["dim"]
    run_info = json.loads((run_dir / "run.json").read_text())
    assert run_info["jax_version"] == jax.__version__ and run_info["device_count"] == 1
    assert [g["static"] for g in run_info["groups"]] == [{"dim": 3}, {"dim": 5}]
    report = result.report_path.read_text()
    assert report.startswith("# toy\n\nToy quadratic for runner tests.")
    expected = (
        run_dir.name,
        "full size",
        "[config.json](config.json)",
        f"JAX {jax.__version__}",
        "1 cpu device(s)",
        "12 of 12 points computed",
        "![](curves.png)",
        "| seed | dim | optimizer.lr | optimizer.momentum | final |",
    )
    for text in expected:
        assert text in report, text
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_static_float_and_non_swept_dynamic_fields_stay_python_values(tmp_path):
    traces = toy_module().TRACES
    before = traces["count"]
    result = run_toy(tmp_path, overrides=[*ONE_GROUP, "sweep.product.shift=[0.0, 1.0]"])
    assert traces["count"] - before == 2  # `shift` is a static float: one compile per value
    assert traces["types"]["shift"] is float
    finals = {
        (r.point["shift"], r.point["optimizer.lr"]): r.metrics["final"] for r in result.records
    }
    assert finals[(1.0, 0.05)] < finals[(0.0, 0.05)]  # a larger shift converges faster
    one = run_toy(tmp_path, overrides=["sweep={}"])
    assert [r.point for r in one.records] == [{"seed": 0}]
    assert traces["types"]["optimizer.lr"] is float  # not swept: a constant


def test_resume_skips_finished_points(tmp_path):
    traces = toy_module().TRACES
    first = run_toy(tmp_path)
    point_files = sorted((first.run_dir / "points").glob("*.json"))
    stamped = [*point_files, first.run_dir / "config.json"]
    mtimes = {p: p.stat().st_mtime_ns for p in stamped}
    before = traces["count"]
    again = run_toy(tmp_path)
    assert again.run_dir == first.run_dir
    assert again.num_run == 0 and again.num_resumed == 12
    assert traces["count"] == before  # nothing traced, nothing compiled
    assert {p: p.stat().st_mtime_ns for p in stamped} == mtimes
    assert "0 of 12 points computed" in again.report_path.read_text()

    victim = first.run_dir / "points" / f"{point_id(first.records[4].point)}.json"
    victim.unlink()
    third = run_toy(tmp_path)
    assert third.num_run == 1 and third.num_resumed == 11
    assert traces["count"] == before + 1  # only the group of the deleted point
    unchanged = {p: p.stat().st_mtime_ns for p in stamped if p != victim}
    assert unchanged == {p: t for p, t in mtimes.items() if p != victim}
    # The re-run point's seed row is incomplete, so it runs flat: equal up to reassociation.
    np.testing.assert_allclose(_curves(first), _curves(third), rtol=1e-13, atol=0)
    assert (first.run_dir / "metrics.jsonl").read_text().count("\n") == 12


def test_determinism_and_max_batch(tmp_path):
    a = run_toy(tmp_path / "a", overrides=ONE_GROUP)
    b = run_toy(tmp_path / "b", overrides=ONE_GROUP)
    assert a.run_dir.name == b.run_dir.name  # run id from the resolved config
    assert (a.run_dir / "metrics.jsonl").read_bytes() == (b.run_dir / "metrics.jsonl").read_bytes()
    # 2 seeds x 3 rates: max_batch 1 is below a seed row (3 points), so the points run flat;
    # max_batch 4 holds one row per call.
    for max_batch, calls, batch, layout in [(1, 6, 1, "flat"), (4, 2, 3, "grid")]:
        chunked = run_toy(tmp_path / f"chunk{max_batch}", overrides=ONE_GROUP, max_batch=max_batch)
        assert chunked.run_dir.name == a.run_dir.name
        (group,) = json.loads((chunked.run_dir / "run.json").read_text())["groups"]
        assert group["calls"] == calls and group["batch"] == batch
        assert group["layout"] == layout
        np.testing.assert_allclose(_curves(chunked), _curves(a), rtol=1e-13, atol=0)
    with pytest.raises(ValueError, match="max_batch"):
        run_toy(tmp_path, max_batch=0)


def test_a_different_config_gets_a_different_run_dir(tmp_path):
    a = run_toy(tmp_path, quick=True, overrides=ONE_GROUP)
    b = run_toy(tmp_path, quick=True, overrides=[*ONE_GROUP, "optimizer.steps=5"])
    assert a.run_dir != b.run_dir and a.run_dir.name.startswith("quick-")
    assert b.records[0].metrics["curve"].shape == (5,)
    np.testing.assert_allclose(b.records[0].metrics["curve"], a.records[0].metrics["curve"][:5])


def test_config_file_outside_the_experiments_folder(tmp_path):
    anonymous = tmp_path / "mine.toml"
    anonymous.write_text("seed = 3\ndim = 2\n")
    with pytest.raises(ConfigError, match="must say which experiment"):
        run_experiment(anonymous, results_dir=tmp_path / "r", experiments_dir=FIXTURES)
    named = tmp_path / "named.toml"
    named.write_text('experiment = "toy"\nseed = 3\ndim = 2\n[optimizer]\nsteps = 4\n')
    result = run_experiment(
        named,
        results_dir=tmp_path / "r",
        experiments_dir=FIXTURES,
        progress=False,
        overrides=["optimizer.lr=0.2"],
    )
    assert [r.point for r in result.records] == [{"seed": 3}]
    assert int(result.records[0].metrics["extra.dim"]) == 2
    assert result.records[0].config["optimizer"] == {"lr": 0.2, "momentum": 0.0, "steps": 4}
    with pytest.raises(ConfigError, match="does not exist"):
        run_experiment(tmp_path / "missing.toml", experiments_dir=FIXTURES)
    # An experiment folder outside the experiments root: its config.toml needs no `experiment`.
    shutil.copytree(FIXTURES / "toy", tmp_path / "toy")
    local = run_experiment(
        tmp_path / "toy",
        quick=True,
        overrides=ONE_GROUP,
        results_dir=tmp_path / "r",
        experiments_dir=tmp_path / "empty",
        progress=False,
    )
    assert len(local.records) == 3 and local.records[0].config["optimizer"]["steps"] == 10


def test_an_experiment_object_uses_the_config_beside_its_module(tmp_path):
    experiment, _ = toy()
    result = run_experiment(
        experiment, quick=True, overrides=ONE_GROUP, results_dir=tmp_path, progress=False
    )
    assert len(result.records) == 3 and result.run_dir.parent == tmp_path / "toy"
    assert {r.point["seed"] for r in result.records} == {7}  # the [quick] table was applied


def test_progress_falls_back_to_prints_without_tqdm(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # `import tqdm` raises ImportError
    run_experiment(
        "toy", quick=True, overrides=ONE_GROUP, results_dir=tmp_path, experiments_dir=FIXTURES
    )
    err = capsys.readouterr().err
    assert "[toy] 3 point(s) to run" in err and "[toy] 3/3 points (all)" in err


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "file.txt"
    atomic_write_text(target, "old")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["file.txt"]


def test_x64_experiments_run_in_float64_and_restore_the_setting(tmp_path):
    """``Experiment(x64=True)`` computes in float64 (host callbacks included) in a process
    that runs in float32, and leaves the process in float32 afterwards."""
    import subprocess
    import textwrap

    where = str(FIXTURES.parent / "experiments_x64")
    code = textwrap.dedent(
        f"""
        import jax, numpy as np
        from jaxspec.experiments import run_experiment
        assert not jax.config.read("jax_enable_x64")
        res = run_experiment("toy_x64", results_dir={str(tmp_path)!r},
                             experiments_dir={where!r}, progress=False)
        for r in res.records:
            assert r.metrics["x"].dtype == np.float64, r.metrics["x"].dtype
            assert bool(r.metrics["is64"])
            np.testing.assert_array_equal(r.metrics["doubled"], 2 * r.metrics["x"])
        assert not jax.config.read("jax_enable_x64")
        print("ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def test_hazard_detection_reads_the_sweeps_primitives(monkeypatch):
    """Which sweeps go to one device per process on a multi-device CPU platform."""
    from jaxspec.experiments import _runner

    def with_svd(values, seed):
        return jnp.sum(jnp.linalg.svd(values["a"] * jnp.eye(3), compute_uv=False))

    def with_callback(values, seed):
        jax.debug.callback(lambda v: None, values["a"])
        return values["a"]

    def plain(values, seed):
        return values["a"] * jnp.linalg.norm(jnp.ones(3))  # a vector norm: no LAPACK

    dtypes = {"a": jnp.float32}
    hazard = _runner._several_cpu_devices_hazard
    assert hazard(with_svd, dtypes) is None  # one device: nothing to fear
    monkeypatch.setattr(jax, "local_device_count", lambda: 2)
    monkeypatch.setattr(_runner, "parallel_lapack_kernels", lambda: True)
    assert hazard(with_svd, dtypes).startswith("batched LAPACK kernels (svd)")
    assert hazard(with_callback, dtypes).startswith("host callbacks")
    assert hazard(plain, dtypes) is None
    monkeypatch.setattr(_runner, "parallel_lapack_kernels", lambda: False)  # a fixed jaxlib
    assert hazard(with_svd, dtypes) is None
    assert hazard(with_callback, dtypes).startswith("host callbacks")
