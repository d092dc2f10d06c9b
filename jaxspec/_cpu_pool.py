"""Guard against a deadlock of jaxlib's batched CPU LAPACK kernels on small machines.

jaxlib 0.10 splits a batched LAPACK call (``cholesky``, ``triangular_solve``, ``eigh``,
``lu`` ... under ``vmap``) into chunks, schedules them on XLA:CPU's intra-op thread pool and
blocks the calling pool thread until they finish. XLA's CPU runtime runs independent
operations of one program concurrently on the same pool, so when as many batched LAPACK
calls start at once as the pool has threads, every thread waits for chunks that no thread
is free to run: the process hangs at 0 % CPU. The pool is sized by the CPUs the process may
use when the backend is created, so two-core machines (CI runners, small VMs) hit it first;
an ``irs_mimo`` quick run hung this way on every try on a two-core machine. Later jaxlib
releases no longer parallelize these kernels in open-source builds.

A pool of one thread cannot deadlock: jaxlib then runs every batch inline. `cpu_pool_guard`
creates the backends while the process is restricted to one CPU, which gives XLA:CPU a
one-thread pool, and then gives the process back all its CPUs (NumPy, SciPy and the host
side still use them). XLA:CPU computations then run on one core; on two cores that costs up
to 2x in wall time, which is why ``"auto"`` guards only small machines.
"""

from __future__ import annotations

import os
import warnings
from typing import Literal

GUARD_ENV = "JAXSPEC_CPU_POOL_GUARD"
AUTO_MAX_CPUS = 4
_AFFECTED = ((0, 10, 0), (0, 11, 2))  # jaxlib versions whose open-source build parallelizes


def _jaxlib_version() -> tuple[int, ...]:
    import jaxlib

    parts = []
    for piece in jaxlib.__version__.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def jaxlib_version() -> str:
    """The installed jaxlib's version string."""
    import jaxlib

    return jaxlib.__version__


def parallel_lapack_kernels() -> bool:
    """Whether the installed jaxlib splits batched CPU LAPACK calls over XLA:CPU's thread
    pool (0.10.0 up to 0.11.2), the cause of the deadlocks this module guards against."""
    low, high = _AFFECTED
    return low <= _jaxlib_version() < high


def _backends_initialized() -> bool:
    from jax._src import xla_bridge

    return bool(getattr(xla_bridge, "_backends", {}))


def cpu_pool_guard(mode: Literal["auto", "on", "off"] | None = None) -> bool:
    """Give XLA:CPU a one-thread intra-op pool where batched LAPACK calls can deadlock.

    Call it once, before the first JAX computation (it creates the backends). The
    ``jaxspec`` command and the test suite call it on start-up.

    Args:
        mode: ``"on"`` always guards; ``"off"`` never does; ``"auto"`` guards when the
            installed jaxlib is one that parallelizes batched LAPACK kernels (0.10.0 up to
            0.11.2) and the process may use at most 4 CPUs. ``None`` reads the environment
            variable ``JAXSPEC_CPU_POOL_GUARD`` and falls back to ``"auto"``.

    Returns:
        Whether the guard was applied.

    Raises:
        ValueError: if ``mode`` (or the environment variable) is not one of the three.

    Example:
        >>> import jaxspec
        >>> applied = jaxspec.cpu_pool_guard("off")
        >>> applied
        False

    References:
        jaxlib ``jaxlib/cpu/lapack_kernels.cc``, ``ParallelBatchMap`` (0.10.x), and the
        change "Don't try to parallelize LAPACK kernels in opensource builds" (jax-ml/jax
        859992407d, July 2026).
    """
    if mode is None:
        mode = os.environ.get(GUARD_ENV, "auto").strip().lower() or "auto"  # type: ignore[assignment]
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"mode (or ${GUARD_ENV}) must be 'auto', 'on' or 'off'; got {mode!r}")
    if mode == "off" or not hasattr(os, "sched_setaffinity"):
        return False
    cpus = os.sched_getaffinity(0)
    if mode == "auto" and (not parallel_lapack_kernels() or len(cpus) > AUTO_MAX_CPUS):
        return False
    if _backends_initialized():
        warnings.warn(
            "cpu_pool_guard: the JAX backends already exist, so the CPU thread pool keeps its "
            "size; call it before the first JAX computation",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    import jax

    os.sched_setaffinity(0, {min(cpus)})
    try:
        jax.devices()
    finally:
        os.sched_setaffinity(0, cpus)
    return True
