"""Test configuration.

* float64 is available everywhere (tests pick dtypes explicitly).
* Every test process (each pytest-xdist worker, or the single pytest process) runs on one
  CPU of its own, set in ``pytest_configure``, before any test module is imported and so
  before JAX creates its backends. XLA:CPU then gets a one-thread pool, which jaxlib 0.10's
  batched LAPACK kernels cannot deadlock (see ``jaxspec/_cpu_pool.py``), and the workers do
  not oversubscribe the machine. Subprocesses inherit the one CPU, so
  ``JAXSPEC_CPU_POOL_GUARD=off`` keeps the CLI's own guard (a no-op here) quiet.
* XLA's backend (LLVM) optimizations are off (``jax_disable_most_optimizations``): the suite
  is dominated by compiling many small programs, and this cuts its wall time by about a
  quarter. HLO-level passes (fusion, simplification) still run, so the programs and their
  numerics are those of an optimized build up to instruction selection. Set
  ``JAXSPEC_TEST_OPTIMIZE=1`` to test the fully optimized build (benchmarks and experiment
  runs use it, except quick experiment runs on CPU: see ``jaxspec run --xla-opt-level``).
  Cases that check round-off-level accuracy are marked ``optimized`` and always compile
  with the full backend optimizations (their caches are cleared around them so no
  executable crosses over).
"""

import os

import jax
import pytest

from jaxspec._cpu_pool import GUARD_ENV

jax.config.update("jax_enable_x64", True)
if os.environ.get("JAXSPEC_TEST_OPTIMIZE", "0") != "1":
    os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"  # subprocesses (CLI tests) too
    jax.config.update("jax_disable_most_optimizations", True)


def pytest_configure(config) -> None:
    if not hasattr(os, "sched_setaffinity"):
        return
    if not hasattr(config, "workerinput") and config.getoption("numprocesses", None):
        return  # the xdist controller runs no tests; its workers inherit all the CPUs
    worker = getattr(config, "workerinput", {}).get("workerid", "gw0")  # set by pytest-xdist
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[index % len(cpus)]})
    os.environ[GUARD_ENV] = "off"


_LAST_OPTIMIZED = [False]  # whether the caches hold only optimized executables


@pytest.fixture(autouse=True)
def _optimized_build(request):
    """Full XLA backend optimizations for cases marked ``optimized``.

    The caches are cleared on entering a run of such cases, so they never reuse an executable
    compiled without optimizations; the reverse reuse (an optimized executable in a later
    unmarked case) is harmless and is allowed.
    """
    marked = request.node.get_closest_marker("optimized") is not None
    if not jax.config.read("jax_disable_most_optimizations") and not _LAST_OPTIMIZED[0]:
        yield  # JAXSPEC_TEST_OPTIMIZE=1: everything is optimized
        return
    if not marked:
        _LAST_OPTIMIZED[0] = False
        yield
        return
    jax.config.update("jax_disable_most_optimizations", False)
    if not _LAST_OPTIMIZED[0]:
        jax.clear_caches()
    _LAST_OPTIMIZED[0] = True
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", True)
