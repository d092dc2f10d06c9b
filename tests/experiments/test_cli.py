"""The `jaxspec` command: list, run, reproduce and the results index."""

import json
import shutil
import subprocess
import sys

import pytest

from jaxspec.experiments.cli import main

from .helpers import FIXTURES


def _main(*args):
    return main(["--experiments-dir", str(FIXTURES), *args])


def test_list(capsys):
    assert _main("list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["broken  Always fails.", "toy     Toy quadratic for runner tests."]


def test_list_goes_on_past_an_experiment_that_does_not_import(tmp_path, capsys):
    shutil.copytree(FIXTURES / "toy", tmp_path / "toy")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.toml").write_text("")
    (tmp_path / "bad" / "experiment.py").write_text("raise ImportError('no such module')\n")
    assert main(["list", "--experiments-dir", str(tmp_path)]) == 1  # option after the command
    out = capsys.readouterr().out
    assert "bad  (cannot import: ImportError: no such module)" in out and "toy  Toy quad" in out


def test_run_with_overrides_quick_and_max_batch(tmp_path, capsys):
    args = ["run", "toy", "--quick", "--no-progress", "--results-dir", str(tmp_path)]
    assert _main(*args, "--set", "optimizer.lr=1", "--set", "dim=3", "--max-batch", "2") == 0
    out = capsys.readouterr().out
    (run_dir,) = (tmp_path / "toy").iterdir()
    assert f"{run_dir / 'report.md'}  (3 point(s) computed, 0 resumed" in out
    config = json.loads((run_dir / "config.json").read_text())
    assert config["optimizer"]["steps"] == 10 and config["optimizer"]["lr"] == 1.0
    assert config["dim"] == 3 and config["sweep"]["product"] == {"seed": [7]}
    assert json.loads((run_dir / "run.json").read_text())["groups"][0]["calls"] == 2
    # The same command resumes.
    assert _main(*args, "--set", "optimizer.lr=1", "--set", "dim=3") == 0
    assert "(0 point(s) computed, 3 resumed" in capsys.readouterr().out


def test_run_reports_config_errors_with_exit_status_2(tmp_path, capsys):
    code = _main("run", "toy", "--set", "optimizer.lr=fast", "--results-dir", str(tmp_path))
    assert code == 2
    assert "error: `optimizer.lr` expects float, got 'fast' (str)." in capsys.readouterr().err
    assert _main("run", "nope", "--results-dir", str(tmp_path)) == 2
    assert "Unknown experiment 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "toy").exists()


@pytest.mark.parametrize("jobs", ["1", "2"])  # in this process; two child processes at once
def test_reproduce_runs_everything_and_writes_the_index(tmp_path, capsys, jobs):
    results = tmp_path / "all"
    code = _main(
        "reproduce", "--quick", "--no-progress", "--results-dir", str(results), "--jobs", jobs
    )
    assert code == 1  # `broken` failed, after `toy` still ran
    out = capsys.readouterr().out
    assert "failed: broken" in out
    assert ("2 at a time" in out) == (jobs == "2")
    index = (results / "index.md").read_text()
    assert "Quick size" in index and "1 of 2 experiments ok" in index
    rows = {line.split(" | ")[0].strip("| "): line for line in index.splitlines()[4:]}
    assert "FAILED: RuntimeError: deliberate failure" in rows["broken"]
    assert "| ok |" in rows["toy"] and "6 (0 resumed)" in rows["toy"]
    (run_dir,) = (results / "toy").iterdir()
    assert f"[{run_dir.name}](toy/{run_dir.name}/report.md)" in rows["toy"]
    assert (results / "toy" / run_dir.name / "report.md").is_file()
    # --quick on CPU compiles at XLA backend level 1 (here, and in the child processes).
    assert json.loads((run_dir / "run.json").read_text())["xla_backend_optimization_level"] == 1


@pytest.mark.parametrize(
    ("flags", "level"),
    [(["--quick"], 1), (["--quick", "--xla-opt-level", "default"], None), ([], None)]
    + [(["--xla-opt-level", "0"], 0)],
)
def test_quick_cpu_runs_compile_at_backend_level_1_unless_asked(tmp_path, capsys, flags, level):
    args = ["run", "toy", "--no-progress", "--results-dir", str(tmp_path), *flags]
    assert _main(*args) == 0
    (run_dir,) = (tmp_path / "toy").iterdir()
    assert json.loads((run_dir / "run.json").read_text())["xla_backend_optimization_level"] == level
    header = (run_dir / "report.md").read_text()
    assert ("XLA backend optimization level" in header) is (level is not None)


def test_bad_xla_opt_level():
    with pytest.raises(SystemExit):
        _main("run", "toy", "--xla-opt-level", "4")
    from jaxspec.experiments import run_experiment

    with pytest.raises(ValueError, match="`xla_opt_level` must be None or an int in"):
        run_experiment("toy", experiments_dir=FIXTURES, xla_opt_level=7)


@pytest.mark.parametrize("jobs", ["0", "-1", "two"])
def test_reproduce_rejects_a_bad_job_count(jobs, capsys):
    assert _main("reproduce", "--jobs", jobs) == 2
    assert "--jobs must be a positive integer or 'auto'" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["list"], ["run", "--help"]])
def test_console_script(command):
    script = shutil.which("jaxspec")
    argv = [script] if script else [sys.executable, "-m", "jaxspec.experiments.cli"]
    proc = subprocess.run(
        [*argv, "--experiments-dir", str(FIXTURES), *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "toy" in proc.stdout or "--set KEY=VALUE" in proc.stdout


@pytest.mark.parametrize("layout", ["grid", "flat", "map"])
def test_run_layout_flag_is_used_and_recorded(tmp_path, capsys, layout):
    args = ["run", "toy", "--no-progress", "--results-dir", str(tmp_path), "--layout", layout]
    assert _main(*args, "--set", "dim=3") == 0
    (run_dir,) = (tmp_path / "toy").iterdir()
    run = json.loads((run_dir / "run.json").read_text())
    assert run["layout"] == layout
    assert [g["layout"] for g in run["groups"]] == [layout]  # 2 seeds x 3 rates
    with pytest.raises(SystemExit):
        _main("run", "toy", "--layout", "nested")
    assert "invalid choice: 'nested'" in capsys.readouterr().err


def test_reproduce_children_share_the_cpus_among_their_thread_pools(monkeypatch):
    from jaxspec.experiments.cli import _THREAD_VARS, _child_env, _usable_cpus

    for var in _THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    cpus = _usable_cpus()
    env = _child_env(2)
    assert all(env[var] == str(max(1, cpus // 2)) for var in _THREAD_VARS)
    assert _child_env(10**6)["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "7")  # the user's choice is kept
    assert _child_env(2)["OPENBLAS_NUM_THREADS"] == "7"


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_reproduce_does_not_call_an_experiment_with_raised_points_ok(tmp_path, capsys, jobs):
    """Points that raised are stored with status ``error`` and the run completes; the index
    used to say "ok" anyway. Now it names them and reproduce exits 1."""
    import shutil

    from .test_faults import FAULTS

    experiments = tmp_path / "experiments"
    shutil.copytree(FAULTS / "faulty", experiments / "faulty")
    config = experiments / "faulty" / "config.toml"
    config.write_text("fail_above = 0.6\n" + config.read_text())  # lr 0.7 raises: 2 points
    results = tmp_path / "results"
    code = _main(
        "reproduce", "--quick", "--no-progress", "--results-dir", str(results), "--jobs", jobs,
        "--experiments-dir", str(experiments),
    )  # fmt: skip
    assert code == 1
    assert "failed: faulty" in capsys.readouterr().out
    index = (results / "index.md").read_text()
    assert "0 of 1 experiments ok" in index and "| 2 point(s) raised |" in index
