"""Multi-process runs on JAX's own distributed runtime (``jax.distributed``).

A sweep runs SPMD over every process: each process holds the same sweep, feeds the rows of
each batch that its own devices hold (the sweep axis is sharded over the global device mesh),
and writes the finished points of those rows. The coordination service that
``jax.distributed.initialize`` starts also carries the few messages the runner needs: process
0's list of pending points (so every process compiles and runs the same batches) and barriers
between the phases of a run. Results must live on a file system every process sees (process 0
assembles the report from all point files).

JAX has no public handle on the coordination service's key-value store, so the messages use
its client from ``jax._src.distributed`` when that is there. When it is not (a JAX release
that moved it), or with ``JAXSPEC_DISTRIBUTED_MESSAGES=collectives``, they go through the
public ``jax.experimental.multihost_utils`` instead (``sync_global_devices`` and
``broadcast_one_to_all``: collectives over every device, Gloo on CPU). Those wait as long as
the collectives' own timeout allows, not ``$JAXSPEC_DISTRIBUTED_TIMEOUT_S``. Every process
must see the same ``JAXSPEC_DISTRIBUTED_MESSAGES`` (a process on the key-value store and one
in a collective would wait for each other forever).
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

import jax

__all__ = ["initialize_distributed", "is_distributed"]

_ENV_ADDRESS = "JAX_COORDINATOR_ADDRESS"
_ENV_COUNT = "JAX_NUM_PROCESSES"
_ENV_ID = "JAX_PROCESS_ID"
_TIMEOUT_ENV = "JAXSPEC_DISTRIBUTED_TIMEOUT_S"
_MESSAGES_ENV = "JAXSPEC_DISTRIBUTED_MESSAGES"  # auto | kv | collectives
_counter = itertools.count()


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"${name} must be an integer, got {value!r}.") from None


def _slurm_multi_task() -> bool:
    try:
        return int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in os.environ
    except ValueError:
        return False


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Join a multi-process run with ``jax.distributed.initialize`` when one is requested.

    Each argument falls back to an environment variable: ``JAX_COORDINATOR_ADDRESS``
    (``host:port`` of process 0), ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``. When none of
    them is set, a SLURM job step with several tasks (``SLURM_NTASKS > 1``) is detected by JAX
    itself; otherwise the run stays single-process and nothing is initialized. Call it before
    any JAX computation.

    Args:
        coordinator_address: ``host:port`` that process 0 listens on and the others reach.
        num_processes: number of processes in the run.
        process_id: this process's index, ``0 <= process_id < num_processes``.

    Returns:
        Whether this process is now part of a multi-process run.

    Raises:
        ValueError: a partial or inconsistent specification (for example a process count
            without an address, or a process id outside ``[0, num_processes)``).

    Example:
        Two processes on one machine (run each line in its own shell)::

            jaxspec run toy --coordinator-address localhost:12345 --num-processes 2 --process-id 0
            jaxspec run toy --coordinator-address localhost:12345 --num-processes 2 --process-id 1
    """
    address = coordinator_address or os.environ.get(_ENV_ADDRESS) or None
    count = num_processes if num_processes is not None else _env_int(_ENV_COUNT)
    index = process_id if process_id is not None else _env_int(_ENV_ID)
    if address is None and count is None and index is None:
        if not _slurm_multi_task():
            return False
        jax.distributed.initialize()  # SLURM: JAX derives address, count and id itself
        return jax.process_count() > 1
    if count is None or index is None or address is None:
        raise ValueError(
            "A multi-process run needs all of --coordinator-address (or $JAX_COORDINATOR_ADDRESS)"
            ", --num-processes (or $JAX_NUM_PROCESSES) and --process-id (or $JAX_PROCESS_ID); "
            f"got address={address!r}, num_processes={count!r}, process_id={index!r}."
        )
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"`num_processes` must be a positive int, got {count!r}.")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise ValueError(f"`process_id` must be an int in [0, {count}), got {index!r}.")
    if ":" not in address:
        raise ValueError(f"`coordinator_address` must be host:port, got {address!r}.")
    if count == 1:
        return False
    jax.distributed.initialize(address, num_processes=count, process_id=index)
    return True


def is_distributed() -> bool:
    """Whether this process is one of several in a ``jax.distributed`` run."""
    return jax.process_count() > 1


def _client() -> Any:
    """The coordination service's client, or ``None`` to use public collectives instead."""
    mode = os.environ.get(_MESSAGES_ENV, "auto")
    if mode not in ("auto", "kv", "collectives"):
        raise ValueError(f"${_MESSAGES_ENV} must be auto, kv or collectives, got {mode!r}.")
    if mode == "collectives":
        return None
    try:
        from jax._src import distributed  # no public handle on the key-value store

        client = distributed.global_state.client
    except (ImportError, AttributeError):
        client = None
    if client is None and mode == "kv":
        raise RuntimeError(
            f"${_MESSAGES_ENV}=kv, but this JAX has no coordination-service client to use."
        )
    return client


def _timeout_ms() -> int:
    return int(float(os.environ.get(_TIMEOUT_ENV, "86400")) * 1000)


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier ``name`` (no-op in a single process).

    Every process must call the same barriers in the same order; the timeout is
    ``$JAXSPEC_DISTRIBUTED_TIMEOUT_S`` (default one day, since process 0 may wait for another
    job's lock on the run folder).
    """
    if not is_distributed():
        return
    key = f"jaxspec/{name}/{next(_counter)}"
    client = _client()
    if client is None:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(key)
        return
    client.wait_at_barrier(key, _timeout_ms())


def broadcast_json(name: str, value: Any = None) -> Any:
    """Process 0's ``value`` on every process (JSON-serializable; identity in one process)."""
    if not is_distributed():
        return value
    key = f"jaxspec/{name}/{next(_counter)}"
    client = _client()
    if client is None:
        return _broadcast_json_collective(value)
    if jax.process_index() == 0:
        client.key_value_set(key, json.dumps(value))
        return value
    return json.loads(client.blocking_key_value_get(key, _timeout_ms()))


def _broadcast_json_collective(value: Any) -> Any:
    """:func:`broadcast_json` over public collectives: the length, then the UTF-8 bytes."""
    import numpy as np
    from jax.experimental import multihost_utils

    source = jax.process_index() == 0
    data = np.frombuffer(json.dumps(value).encode(), np.uint8) if source else None
    size = int(multihost_utils.broadcast_one_to_all(np.int32(len(data) if source else 0)))
    payload = data if source else np.zeros(size, np.uint8)
    received = np.asarray(multihost_utils.broadcast_one_to_all(payload), np.uint8)
    return value if source else json.loads(received.tobytes().decode())
