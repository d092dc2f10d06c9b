"""Running an experiment: static groups compile once, dynamic axes vmapped and sharded.

The sweep's points are grouped by their static values (shapes, step counts, method names).
Each group is one ``jax.jit(jax.vmap(point_fn))`` whose stacked dynamic values (seeds, learning
rates, thresholds) are placed on a ``NamedSharding`` over a 1-D mesh of all local devices with
the axis name ``"sweep"``; the point count is padded to a multiple of the device count and the
padding outputs are dropped. Every finished point is stored as its own atomically-written file
under ``<run-dir>/points/``, so re-running the same config resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from jaxspec.experiments._api import Experiment, Record, ReportContext
from jaxspec.experiments._config import ConfigError, ResolvedConfig, load_toml, resolve
from jaxspec.experiments._discover import discover, experiments_root, load_experiment
from jaxspec.experiments._io import atomic_write_text, write_if_changed

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


def _flatten_metrics(tree: Any) -> dict[str, np.ndarray]:
    flat: dict[str, np.ndarray] = {}

    def visit(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                visit(value, f"{prefix}{key}.")
        elif isinstance(node, list | tuple):
            for i, value in enumerate(node):
                visit(value, f"{prefix}{i}.")
        else:
            flat[prefix[:-1]] = np.asarray(node)

    visit(tree if isinstance(tree, dict) else {"value": tree}, "")
    return flat


def _to_json(value: np.ndarray) -> Any:
    if value.dtype.kind == "b":
        return value.tolist()
    if value.dtype.kind in "iu":
        return value.astype(np.int64).tolist()
    return value.astype(np.float64).tolist()  # exact for float16/32/64; NaN/inf as NaN/Infinity


def _json_point(point: dict[str, Any]) -> dict[str, Any]:
    # JSON types (tuples -> lists), keys kept in sweep order for metrics.jsonl.
    return json.loads(json.dumps(point, default=str))


class _Store:
    """Finished points of one run, one JSON file each, written atomically."""

    def __init__(self, run_dir: Path):
        self.points_dir = run_dir / "points"
        self.points_dir.mkdir(parents=True, exist_ok=True)

    def path(self, point: dict[str, Any]) -> Path:
        return self.points_dir / f"{point_id(point)}.json"

    def load(self, point: dict[str, Any]) -> tuple[dict[str, np.ndarray], float] | None:
        try:
            data = json.loads(self.path(point).read_text(encoding="utf-8"))
            if data["point"] != _json_point(point):
                return None  # a hash collision, or a file from elsewhere: recompute
            metrics = {
                k: np.asarray(v, dtype=np.dtype(data["dtypes"][k]))
                for k, v in data["metrics"].items()
            }
            return metrics, float(data.get("wall_s", 0.0))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, point: dict[str, Any], metrics: dict[str, np.ndarray], wall_s: float) -> None:
        payload = {
            "point": _json_point(point),
            "metrics": {k: _to_json(v) for k, v in metrics.items()},
            "dtypes": {k: v.dtype.str for k, v in metrics.items()},
            "wall_s": wall_s,
        }
        atomic_write_text(self.path(point), json.dumps(payload))


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


def sweep_sharding() -> NamedSharding:
    """``NamedSharding`` of the leading (sweep) axis over a 1-D mesh of all local devices."""
    devices = jax.local_devices()
    mesh = jax.make_mesh(
        (len(devices),), (SWEEP_AXIS,), axis_types=(AxisType.Auto,), devices=devices
    )
    return NamedSharding(mesh, PartitionSpec(SWEEP_AXIS))


def _dtype(info_type: Any) -> Any:
    if info_type is bool:
        return jnp.bool_
    # int32/float32, or int64/float64 under jax_enable_x64: what a Python scalar would become.
    return jnp.result_type(info_type)


def _batched_fn(
    experiment: Experiment, config: Any, dynamic_keys: tuple[str, ...], sharding: NamedSharding
) -> Callable:
    resolved_paths = [key.split(".") for key in dynamic_keys]

    def single(values: dict[str, jax.Array], seed: jax.Array) -> Any:
        point_config = config
        for key, parts in zip(dynamic_keys, resolved_paths):
            point_config = _replace(point_config, parts, values[key])
        return experiment.run(point_config, jax.random.key(seed))

    return jax.jit(jax.vmap(single), in_shardings=sharding, out_shardings=sharding)


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


def _run_group(
    experiment: Experiment,
    resolved: ResolvedConfig,
    static_values: dict[str, Any],
    points: list[dict[str, Any]],
    dynamic_keys: tuple[str, ...],
    store: _Store,
    max_batch: int | None,
    progress: _Progress,
) -> dict[str, Any]:
    sharding = sweep_sharding()
    n_devices = sharding.mesh.size
    config = resolved.config_for(static_values)
    batched = _batched_fn(experiment, config, dynamic_keys, sharding)
    size, padded = _chunk_sizes(len(points), n_devices, max_batch)
    dtypes = {k: _dtype(resolved.fields[k].type) for k in dynamic_keys}
    note = ", ".join(f"{k}={v}" for k, v in static_values.items()) or "all"
    info: dict[str, Any] = {"static": static_values, "points": len(points), "batch": padded}
    calls = 0
    for start in range(0, len(points), size):
        tic = time.perf_counter()
        part = points[start : start + size]
        filled = part + [part[-1]] * (padded - len(part))
        values = {k: np.asarray([p[k] for p in filled], dtypes[k]) for k in dynamic_keys}
        seeds = np.asarray([p["seed"] for p in filled], np.uint32)
        values, seeds = jax.device_put((values, seeds), sharding)
        out = batched(values, seeds)
        if calls == 0:
            leaves = jax.tree.leaves(out)
            if leaves:
                info["output_sharding"] = str(leaves[0].sharding)
                info["output_shards"] = len(leaves[0].addressable_shards)
        flat = _flatten_metrics(jax.device_get(out))
        wall = (time.perf_counter() - tic) / len(part)
        for i, point in enumerate(part):
            store.save(point, {k: v[i] for k, v in flat.items()}, wall)
        calls += 1
        progress.update(len(part), note)
    info["calls"] = calls
    return info


def _device_summary() -> dict[str, Any]:
    devices = jax.local_devices()
    return {
        "backend": jax.default_backend(),
        "device_count": len(devices),
        "device_kinds": sorted({d.device_kind for d in devices}),
        "devices": [str(d) for d in devices],
    }


def _header(
    experiment: Experiment,
    rid: str,
    quick: bool,
    wall_s: float,
    compute_s: float,
    num_run: int,
    num_points: int,
) -> str:
    dev = _device_summary()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            f"# {experiment.name}",
            "",
            experiment.description,
            "",
            f"- Run id: `{rid}`, {'quick' if quick else 'full'} size; resolved config: "
            "[config.json](config.json); metrics: [metrics.jsonl](metrics.jsonl)",
            f"- Written {now} on {dev['device_count']} {dev['backend']} device(s) "
            f"({', '.join(dev['device_kinds'])}); JAX {jax.__version__}, "
            f"Python {platform.python_version()}",
            f"- Wall time {wall_s:.1f} s for this invocation ({num_run} of {num_points} points "
            f"computed, {num_points - num_run} resumed from disk); {compute_s:.1f} s of compute "
            "over all invocations",
            "",
            "",
        ]
    )


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
    experiments_dir: str | Path | None = None,
    progress: bool = True,
    config: ResolvedConfig | None = None,
) -> RunResult:
    """Run (or resume) every point of an experiment's sweep, then write its report.

    Writes ``<results_dir>/<experiment>/<run-id>/``: ``config.json`` (the resolved config; the
    run id is a hash of it, so the same command resumes), ``points/<hash>.json`` (one per
    finished point), ``metrics.jsonl`` (one line per point: ``{"point", "metrics"}``),
    ``report.md`` with its PNG figures, and ``run.json`` (JAX version, devices, timings).
    Every file is written atomically.

    Args:
        experiment_or_name: experiment name, config ``.toml`` path, or :class:`Experiment`
            (see :func:`load_config`).
        overrides: ``"key=value"`` strings (``--set``).
        quick: apply the config's ``[quick]`` table.
        results_dir: root of the results.
        max_batch: at most this many points per compiled call (rounded down to a multiple of
            the device count when larger than it); results equal an unchunked run up to
            floating-point reassociation by XLA.
        experiments_dir: where experiments live (see :func:`experiments_root`).
        progress: show a progress bar (tqdm, else plain prints to stderr).
        config: an already-resolved config for ``experiment_or_name`` (then ``overrides`` and
            ``quick`` must be left at their defaults, except ``quick`` to label the run).

    Returns:
        A :class:`RunResult`.

    Raises:
        ConfigError: a bad config or override.
        ValueError: a bad ``max_batch``.
    """
    start = time.perf_counter()
    if max_batch is not None and (
        isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1
    ):
        raise ValueError(f"`max_batch` must be a positive int, got {max_batch!r}.")
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
    store = _Store(run_dir)
    write_if_changed(run_dir / "config.json", json.dumps(resolved.raw, indent=2) + "\n")

    points = resolved.points()
    dynamic_keys = tuple(
        k for k in resolved.swept_keys if k != "seed" and resolved.fields[k].dynamic
    )
    static_keys = tuple(
        k for k in resolved.swept_keys if k != "seed" and not resolved.fields[k].dynamic
    )
    pending = [p for p in points if store.load(p) is None]
    groups: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for point in pending:
        static_values = {k: point[k] for k in static_keys}
        groups.setdefault(_canonical(static_values), (static_values, []))[1].append(point)

    bar = _Progress(len(pending), experiment.name, progress)
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
                        bar,
                    )
                )
    finally:
        bar.close()

    records, compute_s = [], 0.0
    for point in points:
        loaded = store.load(point)
        if loaded is None:  # pragma: no cover - every point was just written
            raise RuntimeError(f"Point {point} has no stored result in {store.points_dir}.")
        metrics, wall = loaded
        compute_s += wall
        records.append(Record(point=point, metrics=metrics, config=resolved.point_dict(point)))
    lines = [
        json.dumps(
            {
                "point": _json_point(r.point),
                "metrics": {k: _to_json(v) for k, v in r.metrics.items()},
            }
        )
        for r in records
    ]
    atomic_write_text(run_dir / "metrics.jsonl", "\n".join(lines) + "\n")

    ctx = ReportContext(outdir=run_dir, config=resolved.to_dict(), quick=quick)
    body = experiment.report(records, ctx)
    wall_s = time.perf_counter() - start
    header = _header(experiment, rid, quick, wall_s, compute_s, len(pending), len(points))
    report_path = run_dir / "report.md"
    atomic_write_text(report_path, header + body.rstrip() + "\n")
    run_info = {
        "experiment": experiment.name,
        "description": experiment.description,
        "run_id": rid,
        "quick": quick,
        "jax_version": jax.__version__,
        "python_version": platform.python_version(),
        **_device_summary(),
        "x64": experiment.x64 or bool(jax.config.read("jax_enable_x64")),
        "points": len(points),
        "computed": len(pending),
        "resumed": len(points) - len(pending),
        "max_batch": max_batch,
        "groups": group_info,
        "wall_s": wall_s,
        "compute_s": compute_s,
        "finished_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    atomic_write_text(run_dir / "run.json", json.dumps(run_info, indent=2, default=str) + "\n")
    return RunResult(
        run_dir, records, report_path, len(pending), len(points) - len(pending), wall_s
    )
