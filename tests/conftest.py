"""Test configuration.

* float64 is available everywhere (tests pick dtypes explicitly).
* Every test process (each pytest-xdist worker, or the single pytest process) runs on one
  CPU of its own, set before JAX creates its backends. XLA:CPU then gets a one-thread pool,
  which jaxlib 0.10's batched LAPACK kernels cannot deadlock (see ``jaxspec/_cpu_pool.py``),
  and the workers do not oversubscribe the machine. Subprocesses inherit the one CPU, so
  ``JAXSPEC_CPU_POOL_GUARD=off`` makes the CLI's own guard (a no-op here) stay quiet.
"""

import os

import jax

from jaxspec._cpu_pool import GUARD_ENV


def _pin_to_one_cpu() -> None:
    if not hasattr(os, "sched_setaffinity"):
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[index % len(cpus)]})
    os.environ[GUARD_ENV] = "off"


_pin_to_one_cpu()
jax.config.update("jax_enable_x64", True)
