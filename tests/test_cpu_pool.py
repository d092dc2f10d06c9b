"""`jaxspec.cpu_pool_guard`: the one-thread XLA:CPU pool that batched LAPACK cannot deadlock."""

import os
import subprocess
import sys
import textwrap

import pytest

import jaxspec
from jaxspec import _cpu_pool

# Four independent batched Cholesky factorizations in one program, run 200 times: with
# jaxlib 0.10 and a two-thread pool this hangs within a few calls (measured: every try). The
# child first takes back every CPU of the machine (the test worker is pinned to one).
PROGRAM = textwrap.dedent(
    """
    import os, sys
    os.sched_setaffinity(0, range(os.cpu_count()))
    import jax, jax.numpy as jnp
    import jaxspec
    mode, run = sys.argv[1], sys.argv[2] == "run"
    applied = jaxspec.cpu_pool_guard(mode)
    jax.devices()
    tasks = "/proc/self/task"
    def name(t):  # a thread may exit between the listing and the read
        try:
            return open(f"{tasks}/{t}/comm").read()
        except FileNotFoundError:
            return ""
    threads = sum("XLAEigen" in name(t) for t in os.listdir(tasks))
    @jax.jit
    def f(a):
        return sum(jnp.linalg.cholesky(a + k * jnp.eye(a.shape[-1])).sum() for k in range(4))
    x = jax.random.normal(jax.random.key(0), (32, 96, 96))
    a = x @ x.mT + 96 * jnp.eye(96)
    for _ in range(200 if run else 0):
        f(a).block_until_ready()
    print(applied, threads, len(os.sched_getaffinity(0)), flush=True)
    """
)


def _child(mode: str, run: bool) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_XDIST_WORKER",)}
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, mode, "run" if run else "count"],
        capture_output=True, text=True, timeout=240, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and affinity")
def test_guard_gives_one_pool_thread_and_the_batched_lapack_program_finishes():
    applied, threads, cpus = _child("on", run=True)
    assert applied == "True"
    assert threads == "1"  # one intra-op thread: jaxlib runs each batch inline
    # Without the guard the pool has one thread per usable CPU (not run: it can hang), and
    # the guarded process got all of those CPUs back.
    applied, threads_off, cpus_off = _child("off", run=False)
    assert applied == "False" and int(threads_off) == int(cpus_off) == int(cpus)


def test_off_and_environment_variable(monkeypatch):
    assert jaxspec.cpu_pool_guard("off") is False
    monkeypatch.setenv(_cpu_pool.GUARD_ENV, "off")
    assert jaxspec.cpu_pool_guard() is False


@pytest.mark.parametrize("bad", ["yes", "1", "ON!"])
def test_bad_mode_is_a_value_error(bad, monkeypatch):
    with pytest.raises(ValueError, match="'auto', 'on' or 'off'"):
        jaxspec.cpu_pool_guard(bad)
    monkeypatch.setenv(_cpu_pool.GUARD_ENV, bad)
    with pytest.raises(ValueError, match="JAXSPEC_CPU_POOL_GUARD"):
        jaxspec.cpu_pool_guard()


def test_too_late_warns_and_changes_nothing():
    import jax

    jax.devices()  # the backends exist in the test process
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    with pytest.warns(RuntimeWarning, match="already exist"):
        assert jaxspec.cpu_pool_guard("on") is False
    if before is not None:
        assert os.sched_getaffinity(0) == before


def test_auto_skips_unaffected_versions_and_large_machines(monkeypatch):
    monkeypatch.setattr(_cpu_pool, "_backends_initialized", lambda: False)
    monkeypatch.setattr(_cpu_pool, "_jaxlib_version", lambda: (0, 11, 2))
    assert jaxspec.cpu_pool_guard("auto") is False
    if hasattr(os, "sched_getaffinity"):
        monkeypatch.setattr(_cpu_pool, "_jaxlib_version", lambda: (0, 10, 2))
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
        assert jaxspec.cpu_pool_guard("auto") is False
