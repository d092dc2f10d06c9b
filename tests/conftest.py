"""Test configuration.

* float64 is available everywhere (tests pick dtypes explicitly).
* Each pytest-xdist worker runs on one CPU of its own, and a single process gets a one-thread
  XLA:CPU pool (`jaxspec.cpu_pool_guard`): jaxlib 0.10's batched LAPACK kernels can deadlock
  a small intra-op pool (see ``jaxspec/_cpu_pool.py``), and one core per worker also stops
  the workers from oversubscribing the machine.
"""

import os

import jax

from jaxspec import cpu_pool_guard


def _pin_xdist_worker() -> bool:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not hasattr(os, "sched_setaffinity"):
        return False
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[int(worker[2:]) % len(cpus)]})
    return True


if not _pin_xdist_worker():
    cpu_pool_guard()
jax.config.update("jax_enable_x64", True)
