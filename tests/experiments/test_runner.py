"""The experiment runner: configs, overrides, sweeps, grouping, sharding, resume, CLI."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxspec.experiments import (
    ConfigError,
    load_config,
    parse_override,
    run_experiment,
)
from jaxspec.experiments._config import load_toml, replace_path, resolve
from jaxspec.experiments.cli import main

FIXTURES = Path(__file__).parent / "fixtures"


def toy():
    return load_config("toy", experiments_dir=FIXTURES)


def toy_module():
    return sys.modules["jaxspec_experiment_toy"]


def raw_toy():
    return load_toml(FIXTURES / "toy" / "config.toml")


def test_unknown_key_names_the_key_and_the_valid_keys():
    exp, _ = toy()
    raw = raw_toy()
    raw["optimizer"]["lrr"] = 0.1
    with pytest.raises(ConfigError, match=r"optimizer\.lrr") as err:
        resolve(raw, "toy", exp.config_cls)
    assert "optimizer.lr" in str(err.value) and "optimizer.momentum" in str(err.value)
    with pytest.raises(ConfigError, match="unknown_section"):
        resolve({**raw_toy(), "unknown_section": {}}, "toy", exp.config_cls)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("optimizer.lr=fast", "expects a float"),
        ("optimizer.steps=2.5", "expects an int"),
        ("dim=true", "expects an int"),
        ("name=3", "expects a string"),
        ("scale=1.0", "expects a list"),
        ("optimizer.nope=1", "Unknown config key `optimizer.nope`"),
        ("sweep.product.bogus=[1]", "sweep axis bogus"),
    ],
)
def test_type_errors_and_bad_overrides(override, match):
    exp, _ = toy()
    with pytest.raises(ConfigError, match=match):
        resolve(raw_toy(), "toy", exp.config_cls, overrides=[override])


def test_zip_lengths_must_match():
    exp, _ = toy()
    with pytest.raises(ConfigError, match="equal lengths"):
        resolve(raw_toy(), "toy", exp.config_cls, overrides=["sweep.zip.optimizer.lr=[1.0]"])


def test_override_parsing_and_coercion():
    assert parse_override("optimizer.lr=3e-4") == ("optimizer.lr", 3e-4)
    assert parse_override("name=adam") == ("name", "adam")
    assert parse_override("scale=[3, 4]") == ("scale", [3, 4])
    exp, resolved = load_config(
        "toy",
        experiments_dir=FIXTURES,
        overrides=["optimizer.lr=1", "scale=[3, 4]", "name=adam", "seed=5"],
    )
    base = resolved.base
    assert base.optimizer.lr == 1.0 and isinstance(base.optimizer.lr, float)
    assert base.scale == (3.0, 4.0) and base.name == "adam"


def test_sweep_expansion_product_times_zip_in_order():
    _, resolved = toy()
    points = resolved.points()
    assert len(points) == 2 * 2 * 3
    assert points[0] == {"seed": 0, "dim": 3, "optimizer.lr": 0.05, "optimizer.momentum": 0.0}
    assert points[1]["optimizer.lr"] == 0.1 and points[1]["optimizer.momentum"] == 0.5
    assert [p["seed"] for p in points[:6]] == [0] * 6
    _, quick = load_config("toy", experiments_dir=FIXTURES, quick=True)
    assert quick.base.optimizer.steps == 10 and {p["seed"] for p in quick.points()} == {7}


def test_run_groups_static_values_and_matches_a_python_loop(tmp_path):
    exp, resolved = toy()
    module = toy_module()
    before = module.TRACES["count"]
    result = run_experiment("toy", results_dir=tmp_path, experiments_dir=FIXTURES, progress=False)
    assert module.TRACES["count"] - before == 2  # one compile per static `dim`
    assert len(result.records) == 12 and result.num_run == 12
    for record in result.records:
        config = resolved.base
        for key, value in record.point.items():
            if key != "seed":
                config = replace_path(config, key, value)
        ref = exp.run(config, jax.random.key(record.point["seed"]))
        np.testing.assert_allclose(record.metrics["curve"], ref["curve"], rtol=1e-12)
        assert int(record.metrics["extra.dim"]) == record.point["dim"]
        assert record.config["optimizer"]["lr"] == record.point["optimizer.lr"]
    run_dir = result.run_dir
    for name in ("config.json", "metrics.jsonl", "report.md", "run.json", "curves.png"):
        assert (run_dir / name).is_file(), name
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 12
    assert json.loads((run_dir / "config.json").read_text())["optimizer"]["steps"] == 20
    assert not list(run_dir.rglob("*.tmp"))
    assert "![](curves.png)" in result.report_path.read_text()


def test_resume_skips_finished_points(tmp_path):
    module = toy_module()
    first = run_experiment("toy", results_dir=tmp_path, experiments_dir=FIXTURES, progress=False)
    point_files = sorted((first.run_dir / "points").glob("*.json"))
    mtimes = {p: p.stat().st_mtime_ns for p in point_files}
    before = module.TRACES["count"]
    again = run_experiment("toy", results_dir=tmp_path, experiments_dir=FIXTURES, progress=False)
    assert again.run_dir == first.run_dir
    assert again.num_run == 0 and again.num_resumed == 12
    assert module.TRACES["count"] == before
    assert {p: p.stat().st_mtime_ns for p in point_files} == mtimes
    point_files[3].unlink()
    third = run_experiment("toy", results_dir=tmp_path, experiments_dir=FIXTURES, progress=False)
    assert third.num_run == 1 and third.num_resumed == 11
    for a, b in zip(first.records, third.records):
        np.testing.assert_array_equal(a.metrics["curve"], b.metrics["curve"])


@pytest.mark.parametrize("max_batch", [1, 5])
def test_max_batch_gives_the_same_results(tmp_path, max_batch):
    full = run_experiment(
        "toy", results_dir=tmp_path / "a", experiments_dir=FIXTURES, progress=False
    )
    chunked = run_experiment(
        "toy",
        results_dir=tmp_path / "b",
        experiments_dir=FIXTURES,
        progress=False,
        max_batch=max_batch,
    )
    for a, b in zip(full.records, chunked.records):
        np.testing.assert_allclose(a.metrics["curve"], b.metrics["curve"], rtol=1e-13)


def test_same_config_same_seed_identical_metrics(tmp_path):
    a = run_experiment("toy", results_dir=tmp_path / "a", experiments_dir=FIXTURES, progress=False)
    b = run_experiment("toy", results_dir=tmp_path / "b", experiments_dir=FIXTURES, progress=False)
    assert (a.run_dir / "metrics.jsonl").read_text() == (b.run_dir / "metrics.jsonl").read_text()
    assert a.run_dir.name == b.run_dir.name  # run id from the resolved config


def test_cli_list_run_reproduce(tmp_path, capsys):
    assert main(["--experiments-dir", str(FIXTURES), "list"]) == 0
    out = capsys.readouterr().out
    assert "toy" in out and "Toy quadratic for runner tests." in out and "broken" in out
    code = main(
        [
            "--experiments-dir",
            str(FIXTURES),
            "run",
            "toy",
            "--quick",
            "--no-progress",
            "--results-dir",
            str(tmp_path),
            "--set",
            "optimizer.lr=0.01",
        ]
    )
    assert code == 0
    (run_dir,) = (tmp_path / "toy").iterdir()
    assert json.loads((run_dir / "config.json").read_text())["optimizer"]["steps"] == 10
    assert (
        main(
            [
                "--experiments-dir",
                str(FIXTURES),
                "run",
                "toy",
                "--set",
                "optimizer.lr=x",
                "--results-dir",
                str(tmp_path),
            ]
        )
        == 2
    )
    code = main(
        [
            "--experiments-dir",
            str(FIXTURES),
            "reproduce",
            "--quick",
            "--no-progress",
            "--results-dir",
            str(tmp_path / "all"),
        ]
    )
    assert code == 1  # `broken` failed, `toy` still ran
    index = (tmp_path / "all" / "index.md").read_text()
    assert "| toy |" in index and "FAILED" in index and "[report](toy/quick-" in index


def test_run_a_config_file_outside_the_experiments_folder(tmp_path):
    cfg = tmp_path / "mine.toml"
    cfg.write_text('experiment = "toy"\nseed = 3\ndim = 2\n')
    result = run_experiment(
        cfg, results_dir=tmp_path / "r", experiments_dir=FIXTURES, progress=False
    )
    assert [r.point for r in result.records] == [{"seed": 3}]
    assert int(result.records[0].metrics["extra.dim"]) == 2


_SUBPROCESS = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    from jaxspec.experiments import _runner, run_experiment
    shardings = []
    original = jax.device_get
    def spy(tree):
        shardings.extend(str(leaf.sharding) for leaf in jax.tree.leaves(tree))
        return original(tree)
    _runner.jax.device_get = spy
    result = run_experiment("toy", results_dir=sys.argv[1], experiments_dir=sys.argv[2],
                            progress=False)
    print(json.dumps({
        "devices": jax.device_count(),
        "shardings": shardings[:1],
        "curves": [r.metrics["curve"].tolist() for r in result.records],
    }))
    """
)


def _run_subprocess(devices: int, results: Path) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS, str(results), str(FIXTURES)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_eight_host_devices_give_the_same_numbers(tmp_path):
    eight = _run_subprocess(8, tmp_path / "eight")
    one = _run_subprocess(1, tmp_path / "one")
    assert eight["devices"] == 8 and one["devices"] == 1
    # The metrics come back sharded over all 8 devices along the mesh axis "sweep".
    assert "'sweep': 8" in eight["shardings"][0] and "P('sweep'" in eight["shardings"][0]
    np.testing.assert_allclose(np.array(eight["curves"]), np.array(one["curves"]), rtol=1e-12)
