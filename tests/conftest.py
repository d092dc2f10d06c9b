"""Test configuration.

* float64 is available everywhere (tests pick dtypes explicitly).
* Every test process (each pytest-xdist worker, or the single pytest process) runs on one
  CPU of its own, set in ``pytest_configure``, before any test module is imported and so
  before JAX creates its backends. XLA:CPU then gets a one-thread pool, which jaxlib 0.10's
  batched LAPACK kernels cannot deadlock (see ``jaxspec/_cpu_pool.py``), and the workers do
  not oversubscribe the machine. Subprocesses inherit the one CPU, so
  ``JAXSPEC_CPU_POOL_GUARD=off`` keeps the CLI's own guard (a no-op here) quiet.
"""

import os

import jax

from jaxspec._cpu_pool import GUARD_ENV

jax.config.update("jax_enable_x64", True)


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
