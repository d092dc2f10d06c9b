"""Crash safety and fault isolation of the runner: SIGKILL and resume, two processes on one
results folder, non-finite and raising points, memory budgets."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jaxspec.experiments import run_experiment
from jaxspec.experiments._memory import host_available_bytes, parse_memory_budget
from jaxspec.experiments._store import remove_stale_temporaries

from .helpers import FIXTURES as TOY_FIXTURES

FAULTS = Path(__file__).resolve().parents[1] / "fixtures" / "experiments_faults"


def _run(results, **kwargs):
    return run_experiment(
        "faulty", results_dir=results, experiments_dir=FAULTS, progress=False, **kwargs
    )


def _finals(result):
    return {json.dumps(r.point, sort_keys=True): r.metrics["final"] for r in result.records}


def _jsonl_finals(path):
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return {json.dumps(x["point"], sort_keys=True): x["metrics"]["final"] for x in lines}


def _cli(results, *extra):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_ENABLE_X64")}
    env["JAX_PLATFORMS"] = "cpu"
    cmd = [sys.executable, "-m", "jaxspec.experiments.cli", "run", "faulty"]
    cmd += ["--experiments-dir", str(FAULTS), "--results-dir", str(results), "--no-progress"]
    return subprocess.Popen(
        [*cmd, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


@pytest.mark.slow  # subprocesses; CI runs the slow step
def test_sigkill_mid_sweep_then_rerun_finishes_only_the_missing_points(tmp_path):
    results = tmp_path / "killed"
    args = ("--max-batch", "1", "--set", "delay=0.4")
    proc = _cli(results, *args)
    deadline = time.monotonic() + 120
    points_dir = None
    while time.monotonic() < deadline:
        found = list(results.glob("faulty/*/points/*.json"))
        if len(found) >= 3:
            points_dir = found[0].parent
            break
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.05)
    assert points_dir is not None, "the run never wrote 3 points"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    done = {p.name: p.stat().st_mtime_ns for p in points_dir.glob("*.json")}
    assert 3 <= len(done) < 8  # killed mid-sweep
    for name in done:  # nothing truncated: every finished file parses
        json.loads((points_dir / name).read_text())
    # A write cut short by the kill leaves only a hidden temporary; fake one (and a garbage
    # point file) to check the next run removes the former and recomputes the latter.
    (points_dir / ".deadbeef.json.abc.tmp").write_text('{"point": ')
    victim = sorted(done)[0]
    (points_dir / victim).write_text('{"point": {"seed"')
    del done[victim]

    rerun = _cli(results, *args)
    out, err = rerun.communicate(timeout=180)
    assert rerun.returncode == 0, err[-3000:]
    assert f"({8 - len(done)} point(s) computed, {len(done)} resumed" in out
    after = {p.name: p.stat().st_mtime_ns for p in points_dir.glob("*.json")}
    assert len(after) == 8
    assert all(after[name] == mtime for name, mtime in done.items())  # never re-run
    assert not list(points_dir.parent.rglob("*.tmp"))
    run_dir = points_dir.parent
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 8 and all(json.loads(line)["status"] == "ok" for line in lines)
    # The same numbers as a run that was never interrupted (same float32 CLI; no delay).
    clean = _cli(tmp_path / "clean", "--max-batch", "1")
    assert clean.wait(timeout=180) == 0
    (clean_jsonl,) = (tmp_path / "clean").glob("faulty/*/metrics.jsonl")
    assert _jsonl_finals(run_dir / "metrics.jsonl") == _jsonl_finals(clean_jsonl)


@pytest.mark.slow  # subprocesses; CI runs the slow step
def test_two_processes_on_one_results_folder(tmp_path):
    """The same command twice at once: one computes, the other waits and resumes every point;
    a different config beside them runs concurrently in its own run folder."""
    results = tmp_path / "shared"
    first = _cli(results, "--set", "delay=0.3")
    time.sleep(0.5)
    second = _cli(results, "--set", "delay=0.3")
    other = _cli(results, "--set", "delay=0.3", "--set", "steps=30")
    outs = [p.communicate(timeout=300) for p in (first, second, other)]
    for proc, (_, err) in zip((first, second, other), outs):
        assert proc.returncode == 0, err[-3000:]
    counts = sorted(o.split("(")[1].split(" point")[0] for o, _ in outs[:2])
    assert counts == ["0", "8"]  # computed once in total
    assert "in use by another process" in outs[0][1] + outs[1][1]
    assert "(8 point(s) computed" in outs[2][0]
    runs = sorted(results.glob("faulty/*/metrics.jsonl"))
    assert len(runs) == 2
    for path in runs:
        lines = path.read_text().splitlines()
        assert len(lines) == 8 and {json.loads(x)["status"] for x in lines} == {"ok"}
    assert not list(results.rglob("*.tmp"))


def test_nonfinite_points_are_reported_and_do_not_affect_the_others(tmp_path):
    sweep = ["--set", "sweep.product.lr=[0.1, 0.5, 1.5]", "--set", "steps=1100"]
    result = _run(tmp_path, overrides=sweep[1::2])
    status = {(r.point["seed"], r.point["lr"]): r.status for r in result.records}
    assert status == {
        (s, lr): ("nonfinite" if lr == 1.5 else "ok") for s in (0, 1) for lr in (0.1, 0.5, 1.5)
    }
    for r in result.records:
        assert np.isfinite(r.metrics["final"]) == (r.point["lr"] != 1.5)
    # The finite points equal a sweep without the diverging learning rate (|1 - 1.5 c| = 2 at
    # c = 2: x overflows float64 after about 1024 steps).
    alone = _run(tmp_path / "alone", overrides=["sweep.product.lr=[0.1, 0.5]", "steps=1100"])
    mixed = _finals(result)
    for key, final in _finals(alone).items():
        np.testing.assert_array_equal(mixed[key], final)
    report = result.report_path.read_text()
    assert "**2 point(s) non-finite metrics**" in report
    run = json.loads((result.run_dir / "run.json").read_text())
    assert run["statuses"] == {"ok": 4, "nonfinite": 2, "error": 0}
    # Non-finite points are results: a second run resumes them.
    again = _run(tmp_path, overrides=sweep[1::2])
    assert again.num_run == 0 and again.num_resumed == 6


def test_a_point_that_raises_is_isolated_and_retried_by_the_next_run(tmp_path):
    overrides = ["fail_above=0.6"]
    result = _run(tmp_path, overrides=overrides)
    bad = [r for r in result.records if r.status == "error"]
    assert {r.point["lr"] for r in bad} == {0.7} and len(bad) == 2
    assert all(r.message.endswith("EquinoxRuntimeError: lr above fail_above") for r in bad)
    assert all(np.isnan(r.metrics["final"]) and r.metrics["curve"].shape == (40,) for r in bad)
    good = {k: v for k, v in _finals(result).items() if '"lr": 0.7' not in k}
    reference = _finals(_run(tmp_path / "ref"))
    for key, final in good.items():
        np.testing.assert_array_equal(final, reference[key])
    assert "**2 point(s) raised**" in result.report_path.read_text()
    again = _run(tmp_path, overrides=overrides)  # only the failed points run again
    assert again.num_run == 2 and again.num_resumed == 6


def test_memory_budget_chunks_the_sweep_with_identical_results(tmp_path):
    overrides = ["width=256"]
    whole = _run(tmp_path / "whole", overrides=overrides)
    budgeted = _run(tmp_path / "budget", overrides=overrides, memory_budget="1MiB")
    (group,) = json.loads((budgeted.run_dir / "run.json").read_text())["groups"]
    memory = group["memory"]
    assert memory["budget_bytes"] == 2**20
    assert memory["bytes_per_row"] >= 2 * 256 * 256 * 4 * 0.9  # the (256, 256) intermediates
    rows = group["batch"]
    assert memory["fixed_bytes"] + rows * memory["bytes_per_row"] <= 2**20
    assert group["calls"] == -(-8 // rows) and group["calls"] >= 3
    (unchunked,) = json.loads((whole.run_dir / "run.json").read_text())["groups"]
    assert unchunked["calls"] == 1 and unchunked["batch"] == 8
    for r, s in zip(whole.records, budgeted.records):
        assert r.point == s.point
        for key in r.metrics:
            np.testing.assert_array_equal(r.metrics[key], s.metrics[key])
    # A budget that fits everything changes nothing; "auto" fits this sweep.
    auto = _run(tmp_path / "auto", overrides=overrides, memory_budget="auto")
    (group,) = json.loads((auto.run_dir / "run.json").read_text())["groups"]
    assert group["calls"] == 1 and group["batch"] == 8


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("4GiB", 4 * 2**30),
        ("512MiB", 512 * 2**20),
        ("2e9", 2 * 10**9),
        ("1.5 GB", 1.5e9),
        (4096, 4096),
        ("auto", "auto"),
        ("AUTO", "auto"),
        (None, None),
    ],
)
def test_parse_memory_budget(value, expected):
    assert parse_memory_budget(value) == expected


def _fake_host(tmp_path, cgroup_lines, files, available_kib=8 * 2**20):
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text(f"MemTotal: 99999999 kB\nMemAvailable: {available_kib} kB\n")
    (proc / "self" / "cgroup").write_text("\n".join(cgroup_lines) + "\n")
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return str(proc), str(root)


@pytest.mark.parametrize(
    ("cgroup_lines", "files", "expected"),
    [
        # no memory cgroup limit anywhere: MemAvailable (8 GiB)
        (["0::/user.slice"], {"user.slice/memory.max": "max\n"}, 8 * 2**30),
        # v2, limit on the job (a parent of the step): limit - current
        (
            ["0::/job_1/step_0"],
            {
                "job_1/step_0/memory.max": "max\n",
                "job_1/memory.max": f"{2**30}\n",
                "job_1/memory.current": f"{2**28}\n",
            },
            2**30 - 2**28,
        ),
        # v2 in a container's own namespace: the path is "/", the limit at the mount
        (["0::/"], {"memory.max": f"{2**31}\n", "memory.current": "0\n"}, 2**31),
        # v1: "no limit" (about 2^63) on the leaf, a limit on its parent; the tightest wins
        (
            ["12:pids:/a/b", "4:memory:/a/b", "3:cpu,cpuacct:/a/b"],
            {
                "memory/a/b/memory.limit_in_bytes": "9223372036854771712\n",
                "memory/a/b/memory.usage_in_bytes": "100\n",
                "memory/a/memory.limit_in_bytes": f"{3 * 2**30}\n",
                "memory/a/memory.usage_in_bytes": f"{2**30}\n",
            },
            2 * 2**30,
        ),
        # a cgroup over its limit leaves no room
        (["0::/"], {"memory.max": "100\n", "memory.current": "200\n"}, 0),
    ],
)
def test_host_available_bytes_takes_the_tightest_limit(tmp_path, cgroup_lines, files, expected):
    proc, root = _fake_host(tmp_path, cgroup_lines, files)
    assert host_available_bytes(proc=proc, cgroup_root=root) == expected


def test_host_available_bytes_without_procfs_uses_the_physical_memory(tmp_path):
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert host_available_bytes(proc=str(tmp_path / "none"), cgroup_root=str(tmp_path)) == physical


@pytest.mark.parametrize("value", ["", "lots", "4 parsecs", "-1GiB", 0, -5, True, 1.5j, "0"])
def test_parse_memory_budget_rejects_bad_values(value):
    with pytest.raises(ValueError, match="memory_budget"):
        parse_memory_budget(value)


def test_cli_rejects_a_bad_memory_budget_and_a_partial_distributed_spec(tmp_path):
    from jaxspec.experiments.cli import main

    common = ["--experiments-dir", str(TOY_FIXTURES), "run", "toy", "--results-dir", str(tmp_path)]
    assert main([*common, "--memory-budget", "lots"]) == 2
    assert main([*common, "--num-processes", "2"]) == 2
    assert main([*common, "--coordinator-address", "x:1", "--num-processes", "2",
                 "--process-id", "2"]) == 2  # fmt: skip
    assert not list(tmp_path.iterdir())


def test_stale_temporaries_are_removed_recursively(tmp_path):
    (tmp_path / "points").mkdir()
    for name in ("points/.a.json.x.tmp", ".report.md.y.tmp", "points/keep.json", "keep.tmp"):
        (tmp_path / name).write_text("x")
    assert remove_stale_temporaries(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["keep.json", "keep.tmp"]


# A real out-of-memory error on CPU: after a warm-up, the process's address space is capped
# (RLIMIT_AS) a few points' worth above what it maps, so XLA:CPU's allocation for the whole
# sweep fails with RESOURCE_EXHAUSTED, as a GPU's would, and the runner must halve the batch.
_OOM_SCRIPT = """
import json, resource, sys
import numpy as np
from jaxspec.experiments import run_experiment

results, faults, held = sys.argv[1], sys.argv[2], int(sys.argv[3])
point_bytes = 4 * held**2  # float32: one (held, held) matrix per point, 8 points in the sweep

def run(name, side=held, **kwargs):
    result = run_experiment("faulty", overrides=[f"held={side}"], progress=False,
                            results_dir=f"{results}/{name}", experiments_dir=faults, **kwargs)
    (group,) = json.loads((result.run_dir / "run.json").read_text())["groups"]
    return {json.dumps(r.point, sort_keys=True): (r.status, r.message, {k: np.asarray(v).tolist()
            for k, v in r.metrics.items()}) for r in result.records}, group

# References chunked by max_batch (one seed row of 4 points per call), before the cap; they
# also compile and warm up everything the capped runs need besides their own programs.
chunked = {layout: run(f"chunked-{layout}", layout=layout, max_batch=4)
           for layout in ("grid", "flat")}
whole = {layout: run(f"whole-{layout}", layout=layout) for layout in ("grid", "flat")}
with open("/proc/self/status") as f:
    mapped = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize"))
cap = mapped + 6 * point_bytes  # room for 4 points (one seed row), not for 8
resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
# First the "auto" budget, which must see the cap and chunk before anything runs out.
auto = {layout: run(f"auto-{layout}", layout=layout, memory_budget="auto")
        for layout in ("grid", "flat")}
capped = {layout: run(f"capped-{layout}", layout=layout) for layout in ("grid", "flat")}
too_big = run("too-big", side=3 * held)  # 9 points' worth for one point: nothing fits
print(json.dumps({"chunked": chunked, "whole": whole, "auto": auto, "capped": capped,
                  "too_big": too_big, "room": cap - mapped, "point_bytes": point_bytes}))
"""


@pytest.mark.slow  # a subprocess with capped memory; CI runs the slow step
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
def test_a_sweep_larger_than_memory_really_runs_out_and_is_halved(tmp_path):
    """No memory budget: the unchunked call fails for real, is retried at half the batch, and
    gives the numbers of an unchunked run (made before the cap) and of a run chunked by
    ``max_batch``, in both layouts. The ``"auto"`` budget sees the cap and chunks ahead."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_ENABLE_X64")}
    env["JAX_PLATFORMS"] = "cpu"
    held = 5792  # a 128 MiB float32 matrix per point: 1 GiB for the 8-point sweep
    proc = subprocess.run(
        [sys.executable, "-c", _OOM_SCRIPT, str(tmp_path), str(FAULTS), str(held)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for layout in ("grid", "flat"):
        reference, ref_group = out["chunked"][layout]
        got, group = out["capped"][layout]
        assert ref_group["layout"] == layout and ref_group["calls"] == 2
        assert group["layout"] == layout, group
        # 8 points did not fit; 4 did (one seed row in the grid)
        assert group["oom_retries"] == 1 and group["calls"] == 2 and group["batch"] == 4, group
        assert got.keys() == reference.keys() and len(got) == 8
        unchunked, whole_group = out["whole"][layout]  # before the cap: one call
        assert whole_group["calls"] == 1 and whole_group["oom_retries"] == 0
        for key, (status, _, metrics) in got.items():
            assert status == "ok"
            assert metrics == reference[key][2] == unchunked[key][2]  # bitwise
    # The "auto" budget reads the cap (RLIMIT_AS less the mapped size): 75 % of the room
    # left, so it chunks ahead and nothing runs out.
    for layout in ("grid", "flat"):
        reference, _ = out["chunked"][layout]
        got, group = out["auto"][layout]
        budget = group["memory"]["budget_bytes"]
        assert out["point_bytes"] < budget <= 0.75 * out["room"], group
        assert group["oom_retries"] == 0 and group["calls"] >= 2, group
        for key, (status, _, metrics) in got.items():
            assert status == "ok"
            for name, value in metrics.items():
                np.testing.assert_allclose(value, reference[key][2][name], rtol=1e-6)
    # Out of memory at one point per device: every point ends with error status (a later
    # run retries them), and the run itself completes.
    records, group = out["too_big"]
    assert group["statuses"] == {"ok": 0, "nonfinite": 0, "error": 8}, group
    for status, message, _ in records.values():
        assert status == "error" and "RESOURCE_EXHAUSTED" in message
