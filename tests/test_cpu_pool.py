"""`jaxspec.cpu_pool_guard`: the one-thread XLA:CPU pool that batched LAPACK cannot deadlock."""

import os
import subprocess
import sys
import textwrap

import pytest

import jaxspec
from jaxspec import _cpu_pool

# Four independent batched Cholesky factorizations in one program, run 200 times: with
# jaxlib 0.10 and a two-thread pool this hangs within a few calls (measured: every try).
PROGRAM = textwrap.dedent(
    """
    import os, sys
    import jax, jax.numpy as jnp
    import jaxspec
    applied = jaxspec.cpu_pool_guard(sys.argv[1])
    jax.devices()
    tasks = "/proc/self/task"
    threads = sum("XLAEigen" in open(f"{tasks}/{t}/comm").read() for t in os.listdir(tasks))
    @jax.jit
    def f(a):
        return sum(jnp.linalg.cholesky(a + k * jnp.eye(a.shape[-1])).sum() for k in range(4))
    x = jax.random.normal(jax.random.key(0), (32, 96, 96))
    a = x @ x.mT + 96 * jnp.eye(96)
    ref = float(f(a))
    for _ in range(200):
        assert float(f(a)) == ref
    print(applied, threads, flush=True)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and affinity")
def test_guard_gives_one_pool_thread_and_the_batched_lapack_program_finishes():
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_XDIST_WORKER"}
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, "on"], capture_output=True, text=True, timeout=240,
        env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    applied, threads = out.stdout.split()
    assert applied == "True"
    assert threads == "1"  # one intra-op thread: jaxlib runs each batch inline


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
