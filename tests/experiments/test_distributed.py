"""Two CPU processes on localhost run one sweep under ``jax.distributed``: the same numbers as
a single-process run, each process writes its own points, process 0 writes the report."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from jaxspec.experiments import initialize_distributed

from .helpers import FIXTURES

# Subprocesses with their own JAX start-up (about 60 s of worker time): CI's slow step runs them.
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(results, devices, *extra, env_extra=None, name="toy", experiments_dir=FIXTURES):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_ENABLE_X64")}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env.update(env_extra or {})
    cmd = [sys.executable, "-m", "jaxspec.experiments.cli", "run", name, "--no-progress"]
    cmd += ["--experiments-dir", str(experiments_dir), "--results-dir", str(results), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finish(proc):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-4000:]
    return out


def _curves(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {
        json.dumps(json.loads(x)["point"], sort_keys=True): json.loads(x)["metrics"]["curve"]
        for x in lines
    }


# The flags variant runs the grid layout (4 seeds x 3 rates: one seed row per device) and
# passes the runner's messages through the coordination service's key-value store; the
# environment variant runs the flat layout (2 seeds x 3 rates, 6 points padded to 8) and the
# messages through public collectives (JAXSPEC_DISTRIBUTED_MESSAGES=collectives).
@pytest.mark.parametrize("via", ["flags", "environment"])
def test_two_processes_match_a_single_process_run(tmp_path, via):
    port = _free_port()
    address = f"localhost:{port}"
    procs = []
    if via == "flags":
        layout = ("--layout", "grid", "--set", "sweep.product.seed=[0, 1, 2, 3]")
    else:
        layout = ("--layout", "flat")
    for pid in (0, 1):
        if via == "flags":
            extra = ("--coordinator-address", address, "--num-processes", "2", "--process-id")
            procs.append(_start(tmp_path / "two", 2, *layout, *extra, str(pid)))
        else:
            env = {"JAX_COORDINATOR_ADDRESS": address, "JAX_NUM_PROCESSES": "2",
                   "JAX_PROCESS_ID": str(pid),
                   "JAXSPEC_DISTRIBUTED_MESSAGES": "collectives"}  # fmt: skip
            procs.append(_start(tmp_path / "two", 2, *layout, env_extra=env))
    single = _start(tmp_path / "one", 1, *layout)
    for proc in procs + [single]:
        _finish(proc)
    (two_dir,) = (tmp_path / "two" / "toy").iterdir()
    (one_dir,) = (tmp_path / "one" / "toy").iterdir()
    assert two_dir.name == one_dir.name  # same config, same run id
    run = json.loads((two_dir / "run.json").read_text())
    assert run["process_count"] == 2 and run["device_count"] == 4
    n = 24 if via == "flags" else 12
    assert run["local_device_count"] == 2 and run["computed"] == n
    for group in run["groups"]:
        if via == "flags":  # 4 seed rows of 3 points, one row per device
            assert group["layout"] == "grid" and group["batch"] == 4 * 3
        else:  # 6 points padded to 8 over 4 devices
            assert group["layout"] == "flat" and group["batch"] == 8
        assert group["output_shards"] == 2  # this process's 2 devices
        assert "'sweep': 4" in group["output_sharding"]
    writers = [json.loads(p.read_text())["process"] for p in (two_dir / "points").glob("*.json")]
    assert sorted(set(writers)) == [0, 1] and len(writers) == n  # each wrote its own points
    assert "in 2 processes" in (two_dir / "report.md").read_text()
    two, one = _curves(two_dir), _curves(one_dir)
    assert two.keys() == one.keys() and len(two) == n
    for key in one:
        np.testing.assert_array_equal(np.array(two[key]), np.array(one[key]))


def test_resuming_a_two_process_run_computes_nothing(tmp_path):
    results = tmp_path / "res"
    for _ in range(2):
        address = f"localhost:{_free_port()}"
        extra = ("--coordinator-address", address, "--num-processes", "2", "--process-id")
        procs = [_start(results, 1, *extra, str(pid)) for pid in (0, 1)]
        outs = [_finish(p) for p in procs]
    assert all("(0 point(s) computed, 12 resumed" in out for out in outs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_processes": 2, "process_id": 0},
        {"coordinator_address": "localhost:1"},
        {"coordinator_address": "localhost:1", "num_processes": 2, "process_id": 2},
        {"coordinator_address": "localhost:1", "num_processes": 0, "process_id": 0},
        {"coordinator_address": "nohostport", "num_processes": 2, "process_id": 0},
    ],
)
def test_initialize_rejects_partial_or_inconsistent_specs(kwargs, monkeypatch):
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="process|address"):
        initialize_distributed(**kwargs)


def test_bad_message_mode_is_rejected(monkeypatch):
    from jaxspec.experiments._distributed import _client

    monkeypatch.setenv("JAXSPEC_DISTRIBUTED_MESSAGES", "pigeons")
    with pytest.raises(ValueError, match="JAXSPEC_DISTRIBUTED_MESSAGES"):
        _client()
    monkeypatch.setenv("JAXSPEC_DISTRIBUTED_MESSAGES", "collectives")
    assert _client() is None


def test_single_process_needs_no_initialization(monkeypatch):
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    assert initialize_distributed() is False
    monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
    with pytest.raises(ValueError, match="JAX_NUM_PROCESSES"):
        initialize_distributed()


@pytest.mark.parametrize(
    ("setting", "hazard"),
    [("delay=0.001", "host callbacks"), ("lapack=true", "batched LAPACK kernels (cholesky)")],
)
def test_several_cpu_devices_hazards_run_on_one_device_per_process(tmp_path, setting, hazard):
    """Two sweeps that hang on 2 CPU devices: a ``debug.callback`` (it waits for a copy to a
    device busy with the sweep) and, with jaxlib 0.10.x, batched LAPACK calls (each device's
    call blocks a pool thread waiting for chunks no free thread runs; ``jaxspec run
    sbl_phase_transition --quick`` hung this way). The runner falls back to one device per
    process and says so, with the numbers of a one-device run."""
    from jaxspec._cpu_pool import parallel_lapack_kernels

    if "LAPACK" in hazard and not parallel_lapack_kernels():
        pytest.skip("this jaxlib runs batched LAPACK calls inline")
    faults = FIXTURES.parent / "experiments_faults"
    extra = ("--set", setting, "--set", "sweep.product.lr=[0.1,0.3]")
    runs = {}
    for devices in (2, 1):
        proc = _start(tmp_path / str(devices), devices, *extra, name="faulty",
                      experiments_dir=faults)  # fmt: skip
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-4000:]
        runs[devices] = err
    assert hazard in runs[2] and "one device per process" in runs[2]
    assert "one device per process" not in runs[1]
    (two_dir,) = (tmp_path / "2" / "faulty").iterdir()
    (one_dir,) = (tmp_path / "1" / "faulty").iterdir()
    run = json.loads((two_dir / "run.json").read_text())
    assert run["device_count"] == 2 and run["computed"] == 4
    for group in run["groups"]:
        assert group["output_shards"] == 1 and "one device per process" in group["devices_note"]
    two, one = _curves(two_dir), _curves(one_dir)
    assert two.keys() == one.keys() and len(two) == 4
    for key in one:
        np.testing.assert_array_equal(np.array(two[key]), np.array(one[key]))
