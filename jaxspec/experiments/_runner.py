"""Running an experiment: static groups compile once, dynamic axes vmapped and sharded.

The sweep's points are grouped by their static values (shapes, step counts, method names).
Each group is one ``jax.jit(jax.vmap(point_fn))`` whose stacked dynamic values (seeds, learning
rates, thresholds) are placed on a ``NamedSharding`` over a 1-D mesh of every device (of every
process, in a ``jax.distributed`` run) with the axis name ``"sweep"``; the point count is padded
to a multiple of the device count and the padding outputs are dropped. When the group's seeds
and other dynamic values form a full product (the usual ``seed x lr`` grid), it runs as a
nested ``vmap``: over the seeds (sharded) of a ``vmap`` over the other values (replicated), so
everything an experiment derives from its PRNG key alone (data, dictionaries, starts) is
computed and held once per seed instead of once per point, and a per-seed operand meets the
swept values as one matrix product instead of many matrix-vector products (the ``"grid"``
layout; ``"flat"`` is the plain ``vmap``). Groups larger than a memory budget run in chunks.
Every finished point is stored as its own atomically-written file
under ``<run-dir>/points/``, so re-running the same config resumes where it stopped, even after
a ``SIGKILL``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import platform
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from jaxspec._cpu_pool import jaxlib_version, parallel_lapack_kernels
from jaxspec.experiments._api import Experiment, Record, ReportContext
from jaxspec.experiments._config import ConfigError, ResolvedConfig, load_toml, resolve
from jaxspec.experiments._discover import discover, experiments_root, load_experiment
from jaxspec.experiments._distributed import barrier, broadcast_json, is_distributed
from jaxspec.experiments._io import atomic_write_text, write_if_changed
from jaxspec.experiments._memory import (
    device_budget,
    is_out_of_memory,
    parse_memory_budget,
    rows_within_budget,
)
from jaxspec.experiments._store import (
    STATUS_ERROR,
    STATUS_NONFINITE,
    STATUS_OK,
    PointStore,
    json_point,
    remove_stale_temporaries,
    run_folder_lock,
    to_json,
)

SWEEP_AXIS = "sweep"


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What :func:`run_experiment` produced.

    Attributes:
        run_dir: ``<results_dir>/<experiment>/<run-id>``.
        records: one :class:`Record` per sweep point, in sweep order.
        report_path: ``run_dir / "report.md"``.
        num_run: points computed by this call.
        num_resumed: points found finished on disk and skipped.
        wall_s: wall time of this call in seconds.
    """

    run_dir: Path
    records: list[Record]
    report_path: Path
    num_run: int
    num_resumed: int
    wall_s: float


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _digest(obj: Any, n: int) -> str:
    return hashlib.sha256(_canonical(obj).encode()).hexdigest()[:n]


def point_id(point: dict[str, Any]) -> str:
    """Stable file stem of a sweep point (a hash of its values)."""
    return _digest(point, 16)


def run_id(resolved: ResolvedConfig, quick: bool) -> str:
    """Deterministic run id: ``quick-<hash>`` or ``full-<hash>`` of the resolved config."""
    return f"{'quick' if quick else 'full'}-{_digest(resolved.raw, 10)}"


def _flatten_metrics(tree: Any) -> dict[str, Any]:
    """Metric leaves by dotted key (nested dicts, lists and tuples flattened), unconverted."""
    flat: dict[str, Any] = {}

    def visit(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                visit(value, f"{prefix}{key}.")
        elif isinstance(node, list | tuple):
            for i, value in enumerate(node):
                visit(value, f"{prefix}{i}.")
        else:
            flat[prefix[:-1]] = node

    visit(tree if isinstance(tree, dict) else {"value": tree}, "")
    return flat


class _Progress:
    """tqdm over points (updated per chunk), or plain prints when tqdm is not installed."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self.total, self.desc, self.done = total, desc, 0
        self.bar = None
        self.enabled = enabled and total > 0
        if not self.enabled:
            return
        try:
            import tqdm as tqdm_module
        except ImportError:
            print(f"[{desc}] {total} point(s) to run", file=sys.stderr, flush=True)
            return
        # No monitor thread: nothing to gain from a helper thread beside XLA's thread pool.
        tqdm_module.tqdm.monitor_interval = 0
        self.bar = tqdm_module.tqdm(total=total, desc=desc, unit="pt", file=sys.stderr)

    def update(self, n: int, note: str) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.set_postfix_str(note, refresh=False)
            self.bar.update(n)
        elif self.enabled:
            print(
                f"[{self.desc}] {self.done}/{self.total} points ({note})",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def sweep_sharding(*, one_per_process: bool = False) -> NamedSharding:
    """``NamedSharding`` of the leading (sweep) axis over a 1-D mesh of every device.

    In a multi-process run (``jax.distributed``) the mesh spans the devices of all processes;
    each process holds the rows of the sweep that its own devices hold.

    Args:
        one_per_process: use only the first device of each process (the fallback for sweeps
            that would hang on a multi-device CPU platform: host callbacks, or batched LAPACK
            calls with jaxlib 0.10.x; see :func:`_several_cpu_devices_hazard`).
    """
    devices = jax.devices()
    if one_per_process:
        first: dict[int, Any] = {}
        for device in devices:
            first.setdefault(device.process_index, device)
        devices = list(first.values())
    mesh = jax.make_mesh(
        (len(devices),), (SWEEP_AXIS,), axis_types=(AxisType.Auto,), devices=devices
    )
    return NamedSharding(mesh, PartitionSpec(SWEEP_AXIS))


def _dtype(info_type: Any) -> Any:
    if info_type is bool:
        return jnp.bool_
    # int32/float32, or int64/float64 under jax_enable_x64: what a Python scalar would become.
    return jnp.result_type(info_type)


def _point_fn(experiment: Experiment, config: Any, dynamic_keys: tuple[str, ...]) -> Callable:
    """``(values, seed) -> metrics`` of one sweep point (``values`` keyed by dotted path)."""
    resolved_paths = [key.split(".") for key in dynamic_keys]

    def single(values: dict[str, jax.Array], seed: jax.Array) -> Any:
        point_config = config
        for key, parts in zip(dynamic_keys, resolved_paths):
            point_config = _replace(point_config, parts, values[key])
        return experiment.run(point_config, jax.random.key(seed))

    return single


def _batched_fn(single: Callable, sharding: NamedSharding, sequential: bool = False) -> Callable:
    """``(values, seeds) -> metrics`` over a batch of points sharded over the devices; each
    device runs its points as one ``vmap``, or one after another (``lax.map``) when
    ``sequential`` (the ``"map"`` layout)."""
    # Each device runs its own rows with no cross-device communication: the points of a sweep
    # are independent, and a program without collectives cannot hang on processes that reach
    # a collective at different times (seen with the SPMD partitioner: a ``pure_callback``
    # inside the sweep became an all-reduce across processes).
    spec = sharding.spec
    if sequential:

        def per_device(values: Any, seeds: jax.Array) -> Any:
            return jax.lax.map(lambda point: single(*point), (values, seeds))

    else:
        per_device = jax.vmap(single)
    # check_vma=False: experiments are written for plain jit; libraries such as equinox's
    # ``error_if`` build ``lax.cond`` branches whose varying-axis types would not match.
    local = jax.shard_map(
        per_device,
        mesh=sharding.mesh,
        in_specs=(spec, spec),
        out_specs=spec,
        check_vma=False,
    )
    return jax.jit(local, in_shardings=sharding, out_shardings=sharding)


def _grid_fn(single: Callable, sharding: NamedSharding) -> Callable:
    """``(values, seeds) -> metrics`` of shape ``(len(seeds), len(values), ...)``: the seeds
    sharded over the devices, the other dynamic values replicated (see :func:`_batched_fn`)."""
    spec = sharding.spec
    per_seed = jax.vmap(single, in_axes=(0, None))  # every value, one seed
    local = jax.shard_map(
        jax.vmap(per_seed, in_axes=(None, 0)),
        mesh=sharding.mesh,
        in_specs=(PartitionSpec(), spec),
        out_specs=spec,
        check_vma=False,
    )
    replicated = NamedSharding(sharding.mesh, PartitionSpec())
    return jax.jit(local, in_shardings=(replicated, sharding), out_shardings=sharding)


def _grid_split(
    points: list[dict[str, Any]], dynamic_keys: tuple[str, ...]
) -> tuple[list[tuple[Any, ...]], list[list[dict[str, Any]]], list[dict[str, Any]]]:
    """Split a group's points into full seed rows of a ``seed x values`` product and the rest.

    Returns:
        ``(values, rows, rest)``: the distinct tuples of the other dynamic values (in order of
        first appearance), the rows (one per seed that has a point for every one of them, in
        that order) and the remaining points (seeds with some points already finished, or
        repeated points). ``rows`` is empty when a grid would not pay: fewer than two values
        or fewer than two full rows. The split depends on the sweep alone, never on the
        device count, so a run on one device and on many computes every point the same way
        (unless a memory budget or an out-of-memory error sends rows to the flat path).
    """
    if not dynamic_keys:
        return [], [], points
    # keyed by their JSON text, as point files are: 0.0 and -0.0 are two values
    values: dict[str, tuple[Any, ...]] = {}
    by_seed: dict[int, dict[str, dict[str, Any]]] = {}
    repeated: list[dict[str, Any]] = []
    for point in points:
        value = tuple(point[k] for k in dynamic_keys)
        key = _canonical(value)
        values.setdefault(key, value)
        row = by_seed.setdefault(point["seed"], {})
        if key in row:
            repeated.append(point)
        else:
            row[key] = point
    full = [seed for seed, row in by_seed.items() if len(row) == len(values)]
    if len(values) < 2 or len(full) < 2:
        return [], [], points
    full_set = set(full)
    rows = [[by_seed[seed][key] for key in values] for seed in full]
    rest = [p for p in points if p["seed"] not in full_set]
    rest += [p for p in repeated if p["seed"] in full_set]  # the others are in rest already
    return list(values.values()), rows, rest


_WARNED_DEVICES: set[str] = set()
_CALLBACKS = frozenset({"pure_callback", "io_callback", "debug_callback"})
# Primitives that XLA:CPU runs through jaxlib's LAPACK kernels (batched under vmap).
_LAPACK = frozenset(
    {
        "cholesky",
        "eig",
        "eigh",
        "geqp3",
        "geqrf",
        "hessenberg",
        "householder_product",
        "lu",
        "ormqr",
        "qr",
        "schur",
        "svd",
        "triangular_solve",
        "tridiagonal",
        "tridiagonal_solve",
    }
)


def _primitive_names(jaxpr: Any, names: set[str]) -> set[str]:
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        stack = list(eqn.params.values())
        while stack:
            value = stack.pop()
            if isinstance(value, (tuple, list)):
                stack.extend(value)
            elif hasattr(value, "eqns"):
                _primitive_names(value, names)
            elif hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):
                _primitive_names(value.jaxpr, names)
    return names


def _several_cpu_devices_hazard(single: Callable, dtypes: dict[str, Any]) -> str | None:
    """Why ``single`` must not be sharded over this process's CPU devices, or ``None``.

    Two hazards, both on the CPU platform with several devices per process, both hangs:

    * a host callback (``pure_callback``, ``io_callback``, ``debug.callback``) copies its
      arguments to the first CPU device and waits for them there (jax 0.10); while a
      multi-device program occupies that device, the copy never completes;
    * with a jaxlib whose LAPACK kernels split a batch over XLA:CPU's thread pool (0.10.0 up
      to 0.11.2, see :func:`jaxspec.cpu_pool_guard`), every device's program runs its batched
      ``svd``/``cholesky``/... at once, each blocking a pool thread while it waits for its
      chunks; with as many devices as threads, none is left to run a chunk. Seen with the
      ``frank_wolfe``/``pursuit`` sweeps of ``benchmarks/sweeps.py`` and ``jaxspec run
      sbl_phase_transition --quick`` on 2 forced CPU devices, with and without the guard.

    Such sweeps run on one device per process (the numbers of a one-device run).
    """
    if jax.default_backend() != "cpu" or jax.local_device_count() < 2:
        return None
    values = {k: jax.ShapeDtypeStruct((), dtype) for k, dtype in dtypes.items()}
    closed = jax.make_jaxpr(single)(values, jax.ShapeDtypeStruct((), jnp.uint32))
    names = _primitive_names(closed.jaxpr, set())
    if names & _CALLBACKS:
        return "host callbacks (pure_callback/io_callback/debug.callback)"
    lapack = sorted(names & _LAPACK)
    if lapack and parallel_lapack_kernels():
        return f"batched LAPACK kernels ({', '.join(lapack)}) with jaxlib {jaxlib_version()}"
    return None


def _replace(config: Any, parts: list[str], value: Any) -> Any:
    if len(parts) == 1:
        return dataclasses.replace(config, **{parts[0]: value})
    child = _replace(getattr(config, parts[0]), parts[1:], value)
    return dataclasses.replace(config, **{parts[0]: child})


def _chunk_sizes(n_points: int, n_devices: int, max_batch: int | None) -> tuple[int, int]:
    """Real points per call and the padded batch size (the same for every call of a group)."""
    size = n_points if max_batch is None else min(max_batch, n_points)
    if max_batch is not None and size >= n_devices:
        size -= size % n_devices  # whole rows per device: only the last call is padded
    return size, -(-size // n_devices) * n_devices


def _global_array(host: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A sweep-sharded array from a host array every process holds in full."""
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _local_rows(out: Any) -> dict[int, dict[str, np.ndarray]]:
    """The batch rows of ``out`` held by this process, as ``{row: {metric: array}}``."""
    flat = _flatten_metrics(out)
    rows: dict[int, dict[str, np.ndarray]] = {}
    if all(leaf.is_fully_addressable for leaf in flat.values()):
        host = jax.device_get(flat)  # one transfer of everything
        n = len(next(iter(host.values()))) if host else 0
        return {i: {k: np.asarray(v[i]) for k, v in host.items()} for i in range(n)}
    for name, leaf in flat.items():
        for shard in leaf.addressable_shards:
            start = shard.index[0].start or 0
            data = np.asarray(shard.data)
            for i in range(data.shape[0]):
                rows.setdefault(start + i, {})[name] = data[i]
    return rows


def _error_message(err: BaseException) -> str:
    """One line for a point's error: the innermost ``SomeError: text`` line of the message
    (run-time errors arrive wrapped, e.g. an ``eqx.error_if`` inside a ``JaxRuntimeError``)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    inner = [line for line in lines if re.match(r"^[\w.]*(Error|Exception): ", line)]
    text = inner[-1] if inner else (lines[0] if lines else "")
    return f"{type(err).__name__}: {text}"[:500]


def _error_metrics(template: Any) -> dict[str, np.ndarray]:
    """Placeholder metrics of a point that raised: NaN (floats), -1 (ints), False (bools)."""
    out = {}
    for name, leaf in _flatten_metrics(template).items():
        dtype = np.dtype(leaf.dtype)
        fill = np.nan if dtype.kind in "fc" else (False if dtype.kind == "b" else -1)
        out[name] = np.full(leaf.shape[1:], fill, dtype)
    return out


def _rows_in_budget(
    program: Callable[[int], Any],
    sharding: NamedSharding,
    padded: int,
    memory_budget: int | str,
) -> tuple[int, bool, dict[str, Any]]:
    """Rows per device that fit the budget, whether one row fits at all, and the probe info.

    The ``"auto"`` budget is read from this process's own devices; process 0's decision is
    broadcast, so every process of a ``jax.distributed`` run chunks the same way.
    """
    n_devices = sharding.mesh.size
    if memory_budget == "auto":
        local = [d for d in sharding.mesh.devices.flat if d.process_index == jax.process_index()]
        budget = device_budget(local)
    else:
        budget = int(memory_budget)
    fit, mem = rows_within_budget(
        lambda r: program(r * n_devices), budget, max_rows=padded // n_devices
    )
    mem.pop("compiled", None)
    if "fixed_bytes" in mem:
        one_row = mem["fixed_bytes"] + mem["bytes_per_row"]
    else:  # one row per device was all there was to measure (or no memory analysis)
        one_row = mem.get("bytes_at_1_row") or 0
    fits = one_row <= budget and mem.get("compile_out_of_memory") != 1
    fit, fits = broadcast_json("memory_fit", [int(fit), bool(fits)])
    return fit, fits, mem


def _record_sharding(info: dict[str, Any], out: Any) -> None:
    """Note the first call's output sharding in a group's info (for ``run.json``)."""
    leaves = jax.tree.leaves(out)
    if leaves and "output_sharding" not in info:
        info["output_sharding"] = str(leaves[0].sharding)
        info["output_shards"] = len(leaves[0].addressable_shards)


def _compile_options(xla_opt_level: int | None) -> dict[str, Any] | None:
    return None if xla_opt_level is None else {"xla_backend_optimization_level": xla_opt_level}


def _compile_or_oom(
    program: Callable[[int], Any], padded: int, distributed: bool
) -> tuple[Any, BaseException | None]:
    """``(program(padded), None)``, or ``(None, error)`` when compiling ran out of memory.

    Trace and compile errors are the experiment's bugs: they propagate as they are. Running
    out of memory while compiling (XLA:GPU's autotuner allocates buffers the size of the
    operands to time its kernels) is the call's out-of-memory in advance: the caller handles
    it as one (a smaller batch, or an error status at one point per device).
    """
    try:
        return program(padded), None
    except Exception as err:
        if distributed or not is_out_of_memory(err):
            raise
        return None, err


def _run_grid(
    single: Callable,
    sharding: NamedSharding,
    dtypes: dict[str, Any],
    dynamic_keys: tuple[str, ...],
    values: list[tuple[Any, ...]],
    rows: list[list[dict[str, Any]]],
    store: PointStore,
    max_rows: int | None,
    memory_budget: int | str | None,
    progress: _Progress,
    xla_opt_level: int | None,
    statuses: dict[str, int],
    note: str,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run full seed rows of a group as a nested ``vmap`` (see :func:`_grid_fn`); at most
    ``max_rows`` rows per call (``max_batch`` over the row length), or all at once.

    Returns:
        ``(info, leftover)``: the grid's part of the group info, and the points it did not
        store (rows of a call that failed at run time, or that ran out of memory at one row
        per device); the flat path runs those point by point.
    """
    n_devices = sharding.mesh.size
    distributed = is_distributed()
    batched = _grid_fn(single, sharding)
    replicated = NamedSharding(sharding.mesh, PartitionSpec())
    n_values = len(values)
    stacked = {k: np.asarray([v[j] for v in values], dtypes[k]) for j, k in enumerate(dynamic_keys)}
    info: dict[str, Any] = {"seeds": len(rows), "values": n_values, "compile_s": 0.0}
    compiled: dict[int, Any] = {}

    def program(padded: int) -> Any:
        if padded not in compiled:
            tic = time.perf_counter()
            args = (
                {
                    k: jax.ShapeDtypeStruct((n_values,), dtypes[k], sharding=replicated)
                    for k in dynamic_keys
                },
                jax.ShapeDtypeStruct((padded,), jnp.uint32, sharding=sharding),
            )
            options = _compile_options(xla_opt_level)
            compiled[padded] = batched.lower(*args).compile(compiler_options=options)
            info["compile_s"] += time.perf_counter() - tic
        return compiled[padded]

    size, padded = _chunk_sizes(len(rows), n_devices, max_rows)
    if memory_budget is not None:
        fit, fits, mem = _rows_in_budget(program, sharding, padded, memory_budget)
        info["memory"] = mem
        if not fits:
            info["note"] = "one seed row per device exceeds the budget: the flat layout runs it"
            return info | {"rows_per_call": 0, "calls": 0, "oom_retries": 0}, [
                p for row in rows for p in row
            ]
        if fit * n_devices < padded:
            size, padded = _chunk_sizes(len(rows), n_devices, fit * n_devices)

    leftover: list[dict[str, Any]] = []
    calls = oom_retries = 0
    start = 0
    while start < len(rows):
        part = rows[start : start + size]
        executable, compile_oom = _compile_or_oom(program, padded, distributed)
        tic = time.perf_counter()
        seeds = [row[0]["seed"] for row in part]
        seeds = np.asarray(seeds + [seeds[-1]] * (padded - len(part)), np.uint32)
        try:
            if compile_oom is not None:
                raise compile_oom
            out = executable(
                {k: _global_array(v, replicated) for k, v in stacked.items()},
                _global_array(seeds, sharding),
            )
            local = _local_rows(out)
        except Exception as err:  # noqa: BLE001 - run-time failures of some points
            if distributed:
                raise  # processes must stay in step; no per-point retry across processes
            if is_out_of_memory(err):
                if padded > n_devices:  # a smaller call is possible
                    size, padded = _chunk_sizes(len(rows), n_devices, max(1, size // 2))
                    oom_retries += 1
                    continue
                # one row per device is too much: the flat path runs the rest point by point
                leftover.extend(p for row in rows[start:] for p in row)
                info["note"] = "one seed row per device ran out of memory: the rest ran flat"
                break
            # a run-time error: the flat path isolates the failing points
            leftover.extend(p for row in part for p in row)
            start += len(part)
            continue
        wall = (time.perf_counter() - tic) / (len(part) * n_values)
        _record_sharding(info, out)
        for i, row in enumerate(part):
            if i not in local:
                continue  # another process's row
            for j, point in enumerate(row):
                metrics = {name: value[j] for name, value in local[i].items()}
                statuses[store.save(point, metrics, wall)] += 1
        calls += 1
        start += len(part)
        progress.update(len(part) * n_values, note)
    info.update(rows_per_call=padded, calls=calls, oom_retries=oom_retries)
    return info, leftover


def _run_group(
    experiment: Experiment,
    resolved: ResolvedConfig,
    static_values: dict[str, Any],
    points: list[dict[str, Any]],
    dynamic_keys: tuple[str, ...],
    store: PointStore,
    max_batch: int | None,
    memory_budget: int | str | None,
    progress: _Progress,
    xla_opt_level: int | None,
    layout: str = "auto",
) -> dict[str, Any]:
    config = resolved.config_for(static_values)
    single = _point_fn(experiment, config, dynamic_keys)
    dtypes = {k: _dtype(resolved.fields[k].type) for k in dynamic_keys}
    info: dict[str, Any] = {"static": static_values, "points": len(points)}
    hazard = _several_cpu_devices_hazard(single, dtypes)
    one_per_process = hazard is not None
    if one_per_process and experiment.name not in _WARNED_DEVICES:
        _WARNED_DEVICES.add(experiment.name)
        print(
            f"[{experiment.name}] the sweep uses {hazard}; on several CPU devices per "
            "process that can deadlock, so it runs on one device per process",
            file=sys.stderr,
            flush=True,
        )
    if one_per_process:
        info["devices_note"] = f"{hazard} on a multi-device CPU platform: one device per process"
    sharding = sweep_sharding(one_per_process=one_per_process)
    n_devices = sharding.mesh.size
    distributed = is_distributed()
    note = ", ".join(f"{k}={v}" for k, v in static_values.items()) or "all"
    statuses = {STATUS_OK: 0, STATUS_NONFINITE: 0, STATUS_ERROR: 0}
    info["compile_s"] = 0.0
    values, grid_rows, points = (
        _grid_split(points, dynamic_keys) if layout in ("auto", "grid") else ([], [], points)
    )
    # max_batch counts points: whole seed rows of len(values) points each
    max_rows = None if max_batch is None or not grid_rows else max_batch // len(values)
    per_call = min(len(grid_rows), len(grid_rows) if max_rows is None else max_rows)
    # a row does not fit max_batch; or, under "auto", some devices would get no seed row
    if grid_rows and (per_call < 1 or (layout == "auto" and per_call < n_devices)):
        values, grid_rows, points = [], [], [p for row in grid_rows for p in row] + points
    if grid_rows:
        grid_info, leftover = _run_grid(
            single,
            sharding,
            dtypes,
            dynamic_keys,
            values,
            grid_rows,
            store,
            max_rows,
            memory_budget,
            progress,
            xla_opt_level,
            statuses,
            note,
        )
        info["grid"] = grid_info
        info["compile_s"] += grid_info["compile_s"]
        for key in ("output_sharding", "output_shards", "memory"):
            if key in grid_info and grid_info["calls"]:
                info[key] = grid_info[key]
        # points per call (whole rows), and totals that the flat part below adds to
        info.update(
            batch=grid_info["rows_per_call"] * len(values),
            calls=grid_info["calls"],
            oom_retries=grid_info["oom_retries"],
        )
        points = leftover + points
    ran_grid = bool(grid_rows) and info["grid"]["calls"] > 0
    sequential = layout == "map"
    info.update(
        layout="grid" if ran_grid else ("map" if sequential else "flat"), flat_points=len(points)
    )
    if not points:
        info["statuses"] = statuses
        return info

    batched = _batched_fn(single, sharding, sequential)
    compiled: dict[int, Any] = {}

    def abstract(padded: int) -> tuple[Any, Any]:
        values = {
            k: jax.ShapeDtypeStruct((padded,), dtypes[k], sharding=sharding) for k in dynamic_keys
        }
        return values, jax.ShapeDtypeStruct((padded,), jnp.uint32, sharding=sharding)

    def program(padded: int) -> Any:
        if padded not in compiled:
            tic = time.perf_counter()
            options = _compile_options(xla_opt_level)
            compiled[padded] = batched.lower(*abstract(padded)).compile(compiler_options=options)
            info["compile_s"] += time.perf_counter() - tic
        return compiled[padded]

    size, padded = _chunk_sizes(len(points), n_devices, max_batch)
    if memory_budget is not None:
        rows, _, mem = _rows_in_budget(program, sharding, padded, memory_budget)
        info["flat_memory" if "memory" in info else "memory"] = mem
        if rows * n_devices < padded:
            size, padded = _chunk_sizes(len(points), n_devices, rows * n_devices)

    def padded_for(n: int) -> int:
        """The batch a call of ``n`` points runs at: the group's, or for the map layout, where
        padding costs a whole run per copy, ``n`` rounded up to the devices only."""
        return min(padded, -(-n // n_devices) * n_devices) if sequential else padded

    def compute(part: list[dict[str, Any]], padded: int) -> dict[int, dict[str, np.ndarray]]:
        filled = part + [part[-1]] * (padded - len(part))
        values = {k: np.asarray([p[k] for p in filled], dtypes[k]) for k in dynamic_keys}
        seeds = np.asarray([p["seed"] for p in filled], np.uint32)
        executable = program(padded)
        out = executable(
            {k: _global_array(v, sharding) for k, v in values.items()},
            _global_array(seeds, sharding),
        )
        _record_sharding(info, out)
        return _local_rows(out)

    calls = oom_retries = 0
    start = 0
    while start < len(points):
        part = points[start : start + size]
        part_padded = padded_for(len(part))  # compiled here: outside the timing and the
        _, compile_oom = _compile_or_oom(program, part_padded, distributed)  # per-point errors
        tic = time.perf_counter()
        try:
            if compile_oom is not None:
                raise compile_oom
            rows = compute(part, part_padded)
        except Exception as err:  # noqa: BLE001 - run-time failures of some points
            if is_out_of_memory(err) and padded > n_devices and not distributed:
                size, padded = _chunk_sizes(len(points), n_devices, max(1, size // 2))
                oom_retries += 1
                continue
            if distributed:
                raise  # processes must stay in step; no per-point retry across processes
            rows = {}
            point_padded = padded_for(1)  # the same program, the batch filled with one point
            for i, point in enumerate(part):  # (map: the one-point-per-device program)
                try:
                    if compile_oom is not None and point_padded == part_padded:
                        raise compile_oom  # not even one point per device compiles
                    rows[i] = compute([point], point_padded)[0]
                except Exception as point_err:  # noqa: BLE001
                    message = _error_message(point_err)
                    template = jax.eval_shape(batched, *abstract(padded))
                    store.save(
                        point, _error_metrics(template), 0.0, status=STATUS_ERROR, message=message
                    )
                    statuses[STATUS_ERROR] += 1
        wall = (time.perf_counter() - tic) / len(part)
        for i, point in enumerate(part):
            if i in rows:
                statuses[store.save(point, rows[i], wall)] += 1
        calls += 1
        start += len(part)
        progress.update(len(part), note)
    info.update(
        **{"flat_batch" if ran_grid else "batch": padded},
        calls=info.get("calls", 0) + calls,
        oom_retries=info.get("oom_retries", 0) + oom_retries,
        statuses=statuses,
    )
    return info


def _device_summary() -> dict[str, Any]:
    devices = jax.devices()
    return {
        "backend": jax.default_backend(),
        "device_count": len(devices),
        "local_device_count": jax.local_device_count(),
        "process_count": jax.process_count(),
        "device_kinds": sorted({d.device_kind for d in devices}),
        "devices": [str(d) for d in devices],
    }


def _header(
    experiment: Experiment,
    rid: str,
    quick: bool,
    wall_s: float,
    compile_s: float,
    compute_s: float,
    num_run: int,
    records: list[Record],
    opt_level: int | None,
) -> str:
    dev = _device_summary()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    processes = f" in {dev['process_count']} processes" if dev["process_count"] > 1 else ""
    lines = [
        f"# {experiment.name}",
        "",
        experiment.description,
        "",
        f"- Run id: `{rid}`, {'quick' if quick else 'full'} size; resolved config: "
        "[config.json](config.json); metrics: [metrics.jsonl](metrics.jsonl)",
        f"- Written {now} on {dev['device_count']} {dev['backend']} device(s){processes} "
        f"({', '.join(dev['device_kinds'])}); JAX {jax.__version__}, "
        f"Python {platform.python_version()}",
        f"- Wall time {wall_s:.1f} s for this invocation ({num_run} of {len(records)} points "
        f"computed, {len(records) - num_run} resumed from disk; {compile_s:.1f} s compiling"
        + ("" if opt_level is None else f" at XLA backend optimization level {opt_level}")
        + f"); {compute_s:.1f} s of compute over all invocations",
    ]
    for status, what in ((STATUS_NONFINITE, "non-finite metrics"), (STATUS_ERROR, "raised")):
        bad = [r for r in records if r.status == status]
        if bad:
            shown = "; ".join(
                _canonical(r.point) + (f" ({r.message[:120]})" if r.message else "")
                for r in bad[:5]
            )
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            lines.append(
                f"- **{len(bad)} point(s) {what}** (status `{status}` in metrics.jsonl): "
                f"{shown}{more}"
            )
    return "\n".join([*lines, "", ""])


def _config_path_of(experiment: Experiment) -> Path | None:
    module = sys.modules.get(getattr(experiment.run, "__module__", ""), None)
    file = getattr(module, "__file__", None)
    if file and (Path(file).parent / "config.toml").is_file():
        return Path(file).parent / "config.toml"
    return None


def load_config(
    experiment_or_name: str | Path | Experiment,
    *,
    overrides: Sequence[str] = (),
    quick: bool = False,
    experiments_dir: str | Path | None = None,
) -> tuple[Experiment, ResolvedConfig]:
    """Resolve an experiment and its config.

    Args:
        experiment_or_name: an experiment name (looked up with :func:`discover`), a path to a
            config ``.toml`` (its ``experiment`` key names the experiment; it may be omitted
            when the file sits in ``<experiments>/<name>/``), or an :class:`Experiment` (its
            ``config.toml`` beside the module defining ``run``, else the dataclass defaults).
        overrides: ``"key=value"`` strings (``--set``).
        quick: apply the config's ``[quick]`` table.
        experiments_dir: where experiments live (see :func:`experiments_root`).

    Returns:
        ``(experiment, resolved_config)``.

    Raises:
        ConfigError: unknown experiment, unknown keys, wrong types, bad sweeps.
    """
    if isinstance(experiment_or_name, Experiment):
        experiment = experiment_or_name
        path = _config_path_of(experiment)
        raw = load_toml(path) if path is not None else {}
    else:
        available = discover(experiments_dir)
        target = str(experiment_or_name)
        path = Path(target)
        if target not in available and (path / "config.toml").is_file():
            path, target = path / "config.toml", str(path / "config.toml")  # a folder was given
        if target not in available and (target.endswith(".toml") or path.is_file()):
            if not path.is_file():
                raise ConfigError(f"Config file {path} does not exist.")
            raw = load_toml(path)
            folder = path.resolve().parent
            beside = (folder / "experiment.py").is_file()  # the config sits in its experiment
            name = raw.get("experiment", folder.name if beside else None)
            if name is None:
                raise ConfigError(
                    f"{path}: a config outside experiments/<name>/ must say which experiment "
                    f'it is for (experiment = "<name>"); available: {", ".join(available)}.'
                )
            if beside and name == folder.name:
                available = {**available, name: folder}
            if not isinstance(name, str) or name not in available:
                raise ConfigError(
                    f"{path}: unknown experiment {name!r}; available: {', '.join(available)}."
                )
        else:
            name = target
            if name not in available:
                raise ConfigError(
                    f"Unknown experiment {name!r} in {experiments_root(experiments_dir)}; "
                    f"available: {', '.join(available) or '(none)'}."
                )
            raw = load_toml(available[name] / "config.toml")
        experiment = load_experiment(available[name])
    resolved = resolve(
        raw, experiment.name, experiment.config_cls, overrides=overrides, quick=quick
    )
    return experiment, resolved


@contextlib.contextmanager
def _enable_x64():
    """64-bit JAX types for the whole process while the block runs, then the previous setting
    (a process-wide switch rather than ``jax.enable_x64``'s thread-local one, so host callbacks,
    which run on other threads, see it too)."""
    before = bool(jax.config.read("jax_enable_x64"))
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


def run_experiment(
    experiment_or_name: str | Path | Experiment,
    *,
    overrides: Sequence[str] = (),
    quick: bool = False,
    results_dir: str | Path = "results",
    max_batch: int | None = None,
    memory_budget: int | str | None = None,
    experiments_dir: str | Path | None = None,
    progress: bool = True,
    config: ResolvedConfig | None = None,
    xla_opt_level: int | None = None,
    layout: str = "auto",
) -> RunResult:
    """Run (or resume) every point of an experiment's sweep, then write its report.

    Writes ``<results_dir>/<experiment>/<run-id>/``: ``config.json`` (the resolved config; the
    run id is a hash of it, so the same command resumes), ``points/<hash>.json`` (one per
    finished point), ``metrics.jsonl`` (one line per point: ``{"point", "status",
    "metrics"}``), ``report.md`` with its PNG figures, and ``run.json`` (JAX version, devices,
    timings). Every file is written atomically, and one process at a time owns the folder (a
    second command on it waits, then resumes; see :mod:`jaxspec.experiments._store`).

    A point's status is ``"ok"``, ``"nonfinite"`` (a metric holds NaN or an infinity; the
    values are kept) or ``"error"`` (it raised at run time, for example through
    ``eqx.error_if``; its metrics are NaN placeholders and the next run tries it again). A
    failing batch is re-run point by point, so one bad point never loses the others. In a
    multi-process run (:func:`~jaxspec.experiments.initialize_distributed` first) the sweep is
    sharded over every process's devices, each process writes its own points, and process 0
    writes the report; there a run-time error stops the run.

    Args:
        experiment_or_name: experiment name, config ``.toml`` path, or :class:`Experiment`
            (see :func:`load_config`).
        overrides: ``"key=value"`` strings (``--set``).
        quick: apply the config's ``[quick]`` table.
        results_dir: root of the results (shared by all processes of a multi-process run).
        max_batch: at most this many points per compiled call (rounded down to a multiple of
            the device count when larger than it); results equal an unchunked run up to
            floating-point reassociation by XLA.
        memory_budget: bytes per device a call may use (an int, a string such as ``"4GiB"``,
            or ``"auto"``: 75% of the device's free memory; on CPU, of what the process can
            still allocate (the least of the available RAM, its cgroup's room and its
            address-space room) over the local CPU devices). Each static group is compiled
            at one and two points per device to measure its footprint, then chunked to fit.
            Combines with ``max_batch`` (the smaller wins). Without a budget, a call that
            runs out of device memory is retried with half the batch.
        experiments_dir: where experiments live (see :func:`experiments_root`).
        progress: show a progress bar (tqdm, else plain prints to stderr; process 0 only).
        config: an already-resolved config for ``experiment_or_name`` (then ``overrides`` and
            ``quick`` must be left at their defaults, except ``quick`` to label the run).
        xla_opt_level: XLA's backend (LLVM) optimization level for the sweep's programs, 0 to
            3; ``None`` keeps XLA's default (3). Level 1 roughly halves compile time on CPU
            with little or no loss in run time for small programs (what ``jaxspec run --quick``
            uses there); level 0 compiles a little faster still but runs about 2x slower.
            Results agree across levels to round-off. Recorded in ``run.json``.
        layout: how a static group's points are vmapped. ``"grid"``: where the seeds and
            the other dynamic values form a full product (at least 2 of each), a ``vmap`` over
            the seeds (sharded over the devices) of a ``vmap`` over the values, so what
            ``run`` derives from its key alone is computed once per seed; on one CPU core this
            made the sweeps of ``benchmarks/sweeps.py`` 1.1-3.5x faster than ``"flat"``.
            The rest of the group (seeds with some points already on disk after a resume, or
            all of it when ``max_batch`` is smaller than one seed's row) runs flat.
            ``"flat"``: one ``vmap`` over the points. ``"map"``: each device runs its points
            one after another inside one compiled call (``lax.map``), chunked like
            ``"flat"``: no lockstep (a tolerance-stopped solver stops each point on its own)
            and no batched LAPACK calls, so it suits sweeps whose points differ in step
            counts and factorize small matrices: on one CPU core the ``sbl`` sweep of
            ``benchmarks/sweeps.py`` ran 2.2-2.4x faster than ``"grid"`` and 1.5x faster than a
            Python loop, while the other four ran 1.1-1.5x faster than the loop, slower
            than ``"grid"``. ``"auto"`` (default): ``"grid"`` when
            every device gets a full seed row in each call (at least as many full rows as
            devices, and as many rows per call under ``max_batch``), else ``"flat"`` (a grid
            would leave devices computing padding). For a fixed layout the numbers do not
            depend on the device or process count, except where a memory budget or an
            out-of-memory error sends seed rows to the flat path; the layouts agree to
            round-off (reassociated sums). The layout used is recorded per group in
            ``run.json``.

    Returns:
        A :class:`RunResult`.

    Raises:
        ConfigError: a bad config or override.
        ValueError: a bad ``max_batch``, ``memory_budget`` or ``xla_opt_level``.
    """
    start = time.perf_counter()
    if max_batch is not None and (
        isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1
    ):
        raise ValueError(f"`max_batch` must be a positive int, got {max_batch!r}.")
    if xla_opt_level is not None and (
        isinstance(xla_opt_level, bool)
        or not isinstance(xla_opt_level, int)
        or not 0 <= xla_opt_level <= 3
    ):
        raise ValueError(
            f"`xla_opt_level` must be None or an int in [0, 3], got {xla_opt_level!r}."
        )
    if layout not in ("auto", "grid", "flat", "map"):
        raise ValueError(f"`layout` must be 'auto', 'grid', 'flat' or 'map', got {layout!r}.")
    budget = parse_memory_budget(memory_budget)
    if config is not None:
        if overrides:
            raise ValueError("Pass `overrides` or an already-resolved `config`, not both.")
        experiment = (
            experiment_or_name
            if isinstance(experiment_or_name, Experiment)
            else load_config(experiment_or_name, experiments_dir=experiments_dir)[0]
        )
        resolved = config
    else:
        experiment, resolved = load_config(
            experiment_or_name, overrides=overrides, quick=quick, experiments_dir=experiments_dir
        )
    rid = run_id(resolved, quick)
    run_dir = Path(results_dir) / experiment.name / rid
    lead = jax.process_index() == 0
    owner = run_folder_lock(run_dir) if lead else contextlib.nullcontext(0.0)
    with owner as lock_wait_s:
        store = PointStore(run_dir, point_id, jax.process_index())
        removed = 0
        if lead:
            removed = remove_stale_temporaries(run_dir)
            write_if_changed(run_dir / "config.json", json.dumps(resolved.raw, indent=2) + "\n")
        points = resolved.points()
        # Process 0 decides what is left, so every process compiles and runs the same batches.
        pending_index = broadcast_json(
            "pending",
            [i for i, p in enumerate(points) if store.load(p) is None] if lead else None,
        )
        pending = [points[i] for i in pending_index]
        dynamic_keys = tuple(
            k for k in resolved.swept_keys if k != "seed" and resolved.fields[k].dynamic
        )
        static_keys = tuple(
            k for k in resolved.swept_keys if k != "seed" and not resolved.fields[k].dynamic
        )
        groups: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
        for point in pending:
            static_values = {k: point[k] for k in static_keys}
            groups.setdefault(_canonical(static_values), (static_values, []))[1].append(point)

        bar = _Progress(len(pending), experiment.name, progress and lead)
        group_info = []
        precision = _enable_x64() if experiment.x64 else contextlib.nullcontext()
        try:
            with precision:
                for static_values, group_points in groups.values():
                    group_info.append(
                        _run_group(
                            experiment,
                            resolved,
                            static_values,
                            group_points,
                            dynamic_keys,
                            store,
                            max_batch,
                            budget,
                            bar,
                            xla_opt_level,
                            layout,
                        )
                    )
        finally:
            bar.close()
        barrier("computed")  # every process's points are on disk

        records, compute_s = [], 0.0
        for point in points:
            loaded = store.load(point, errors=True)
            if loaded is None:
                raise RuntimeError(
                    f"Point {point} has no stored result in {store.points_dir}"
                    + (
                        " (in a multi-process run the results folder must be on a file system "
                        "every process sees)."
                        if is_distributed()
                        else "."
                    )
                )
            compute_s += loaded["wall_s"]
            records.append(
                Record(
                    point=point,
                    metrics=loaded["metrics"],
                    config=resolved.point_dict(point),
                    status=loaded["status"],
                    message=loaded["message"],
                )
            )
        report_path = run_dir / "report.md"
        if lead:
            _write_outputs(
                experiment,
                resolved,
                rid,
                quick,
                run_dir,
                records,
                start,
                compute_s,
                len(pending),
                {
                    "max_batch": max_batch,
                    "memory_budget": budget,
                    "xla_backend_optimization_level": xla_opt_level,
                    "layout": layout,
                    "groups": group_info,
                    "lock_wait_s": lock_wait_s,
                    "stale_temporaries_removed": removed,
                },
            )
        barrier("reported")  # the other processes return once the report exists
    return RunResult(
        run_dir,
        records,
        report_path,
        len(pending),
        len(points) - len(pending),
        time.perf_counter() - start,
    )


def _write_outputs(
    experiment: Experiment,
    resolved: ResolvedConfig,
    rid: str,
    quick: bool,
    run_dir: Path,
    records: list[Record],
    start: float,
    compute_s: float,
    num_run: int,
    extra: dict[str, Any],
) -> None:
    lines = [
        json.dumps(
            {
                "point": json_point(r.point),
                "status": r.status,
                "metrics": {k: to_json(v) for k, v in r.metrics.items()},
            }
        )
        for r in records
    ]
    atomic_write_text(run_dir / "metrics.jsonl", "\n".join(lines) + "\n")
    ctx = ReportContext(outdir=run_dir, config=resolved.to_dict(), quick=quick)
    body = experiment.report(records, ctx)
    wall_s = time.perf_counter() - start
    compile_s = sum(g.get("compile_s", 0.0) for g in extra["groups"])
    header = _header(
        experiment,
        rid,
        quick,
        wall_s,
        compile_s,
        compute_s,
        num_run,
        records,
        extra["xla_backend_optimization_level"],
    )
    atomic_write_text(run_dir / "report.md", header + body.rstrip() + "\n")
    statuses = {s: sum(r.status == s for r in records) for s in (STATUS_OK, STATUS_NONFINITE)}
    statuses[STATUS_ERROR] = sum(r.status == STATUS_ERROR for r in records)
    run_info = {
        "experiment": experiment.name,
        "description": experiment.description,
        "run_id": rid,
        "quick": quick,
        "jax_version": jax.__version__,
        "python_version": platform.python_version(),
        **_device_summary(),
        "x64": experiment.x64 or bool(jax.config.read("jax_enable_x64")),
        "points": len(records),
        "computed": num_run,
        "resumed": len(records) - num_run,
        "statuses": statuses,
        **extra,
        "wall_s": wall_s,
        "compile_s": compile_s,
        "compute_s": compute_s,
        "finished_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    atomic_write_text(run_dir / "run.json", json.dumps(run_info, indent=2, default=str) + "\n")
