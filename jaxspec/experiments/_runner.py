"""Running an experiment: static groups compile once, dynamic axes vmapped and sharded.

The sweep's points are grouped by their static values (shapes, step counts, method names):
one ``jax.jit(jax.vmap(point_fn))`` per group, whose stacked dynamic values (seeds, learning
rates, thresholds) are placed on a ``NamedSharding`` over a 1-D mesh named ``"sweep"`` of all
local devices. Finished points are stored one file each, atomically, so a re-run resumes.
"""

from __future__ import annotations

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
from jax.sharding import NamedSharding, PartitionSpec

from jaxspec.experiments._api import (
    Experiment,
    Record,
    ReportContext,
    atomic_write_text,
)
from jaxspec.experiments._config import (
    ConfigError,
    ResolvedConfig,
    field_table,
    load_toml,
    replace_path,
    resolve,
)
from jaxspec.experiments._discover import discover, experiments_root, load_experiment


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What :func:`run_experiment` produced.

    Attributes:
        run_dir: ``results/<experiment>/<run-id>``.
        records: one :class:`Record` per sweep point, in sweep order.
        report_path: the Markdown report.
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


def _digest(obj: Any, n: int = 12) -> str:
    return hashlib.sha1(_canonical(obj).encode()).hexdigest()[:n]


def point_id(point: dict[str, Any]) -> str:
    """Stable file name of a sweep point."""
    return _digest(point, 16)


def run_id(resolved: ResolvedConfig, quick: bool) -> str:
    """Deterministic run id from the resolved config: the same command resumes."""
    return f"{'quick' if quick else 'full'}-{_digest(resolved.to_dict(), 10)}"


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

    visit(tree, "")
    return flat


def _to_json(value: np.ndarray) -> Any:
    if value.dtype.kind == "b":
        return value.tolist()
    if value.dtype.kind in "iu":
        return value.astype(np.int64).tolist()
    return value.astype(np.float64).tolist()


def _point_config(resolved: ResolvedConfig, point: dict[str, Any]) -> dict[str, Any]:
    config = json.loads(_canonical(resolved.raw))
    config.pop("sweep", None)
    for key, value in point.items():
        node = config
        parts = key.split(".")
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = value
    return config


class _Store:
    """One run directory: finished points as files, written atomically."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.points_dir = run_dir / "points"
        self.points_dir.mkdir(parents=True, exist_ok=True)

    def path(self, point: dict[str, Any]) -> Path:
        return self.points_dir / f"{point_id(point)}.json"

    def load(self, point: dict[str, Any]) -> dict[str, np.ndarray] | None:
        path = self.path(point)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, OSError):
            return None  # unreadable: recompute (files are atomic, so this is not expected)
        if data.get("point") != json.loads(_canonical(point)):
            return None
        return {k: np.asarray(v) for k, v in data["metrics"].items()}

    def save(self, point: dict[str, Any], metrics: dict[str, np.ndarray]) -> None:
        payload = {"point": point, "metrics": {k: _to_json(v) for k, v in metrics.items()}}
        atomic_write_text(self.path(point), json.dumps(payload))


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        import tqdm as tqdm_module
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is in the experiments extra
        return None
    # No monitor thread: a sleeping helper thread is not worth a possible stall next to XLA's
    # thread pool (seen once on a loaded 2-core machine).
    tqdm_module.tqdm.monitor_interval = 0
    return tqdm(total=total, desc=desc, unit="pt", leave=False, file=sys.stderr)


def _dynamic_dtype(value: Any) -> Any:
    if isinstance(value, bool):
        return jnp.bool_
    if isinstance(value, int):
        return jnp.int32
    return jnp.result_type(float)  # float32, or float64 under jax_enable_x64


def _build_batched(
    experiment: Experiment, static_config: Any, dynamic_keys: tuple[str, ...]
) -> Callable:
    def single(values: dict[str, jax.Array], seed: jax.Array) -> Any:
        config = static_config
        for key in dynamic_keys:
            config = replace_path(config, key, values[key])
        return experiment.run(config, jax.random.key(seed))

    return jax.jit(jax.vmap(single))


def _sweep_sharding() -> tuple[NamedSharding, int]:
    devices = jax.local_devices()
    mesh = jax.sharding.Mesh(np.array(devices), ("sweep",))
    return NamedSharding(mesh, PartitionSpec("sweep")), len(devices)


def _execute_group(
    experiment: Experiment,
    resolved: ResolvedConfig,
    static_values: dict[str, Any],
    points: list[dict[str, Any]],
    dynamic_keys: tuple[str, ...],
    store: _Store,
    max_batch: int | None,
    bar: Any,
) -> None:
    config = resolved.base
    for key, value in static_values.items():
        config = replace_path(config, key, value)
    batched = _build_batched(experiment, config, dynamic_keys)
    sharding, n_dev = _sweep_sharding()
    chunk = len(points) if max_batch is None else max_batch
    chunk = -(-max(chunk, 1) // n_dev) * n_dev  # a multiple of the device count
    for start in range(0, len(points), chunk):
        part = points[start : start + chunk]
        padded = part + [part[-1]] * (chunk - len(part))
        values = {
            k: jnp.asarray([p[k] for p in padded], _dynamic_dtype(padded[0][k]))
            for k in dynamic_keys
        }
        seeds = jnp.asarray([p["seed"] for p in padded], jnp.uint32)
        values, seeds = jax.device_put((values, seeds), sharding)
        out = jax.device_get(batched(values, seeds))
        flat = _flatten_metrics(out)
        for i, point in enumerate(part):
            store.save(point, {k: v[i] for k, v in flat.items()})
        if bar is not None:
            bar.update(len(part))


def _header(
    experiment: Experiment, rid: str, quick: bool, wall_s: float, num_run: int, num_resumed: int
) -> str:
    devices = jax.local_devices()
    kinds = sorted({d.device_kind for d in devices})
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            f"# {experiment.name}",
            "",
            f"{experiment.description}",
            "",
            f"- run id: `{rid}` ({'quick' if quick else 'full'} size); config: "
            "[config.json](config.json); metrics: [metrics.jsonl](metrics.jsonl)",
            f"- written {now}; {len(devices)} {jax.default_backend()} device(s) "
            f"({', '.join(kinds)}); JAX {jax.__version__}, Python {platform.python_version()}",
            f"- this invocation: {num_run} point(s) computed, {num_resumed} resumed from disk, "
            f"{wall_s:.1f} s wall time",
            "",
            "",
        ]
    )


def load_config(
    name_or_path: str | Path,
    *,
    overrides: Sequence[str] = (),
    quick: bool = False,
    experiments_dir: str | Path | None = None,
) -> tuple[Experiment, ResolvedConfig]:
    """Resolve an experiment name (or a config file path) into its experiment and config."""
    path = Path(name_or_path)
    available = discover(experiments_dir)
    if path.suffix == ".toml" and path.is_file():
        raw = load_toml(path)
        name = raw.get("experiment", path.parent.name)
        if name not in available:
            raise ConfigError(
                f"{path}: experiment {name!r} not found; available: {sorted(available)}."
            )
    else:
        name = str(name_or_path)
        if name not in available:
            root = experiments_root(experiments_dir)
            raise ConfigError(
                f"Unknown experiment {name!r} in {root}; available: {sorted(available)}."
            )
        raw = load_toml(available[name] / "config.toml")
    experiment = load_experiment(available[name])
    resolved = resolve(raw, name, experiment.config_cls, overrides=tuple(overrides), quick=quick)
    return experiment, resolved


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
    """Run (or resume) every point of an experiment's sweep and write its report.

    Args:
        experiment_or_name: experiment name, path to a config TOML, or an :class:`Experiment`
            (then ``config`` must be given, e.g. from :func:`load_config`).
        overrides: ``"key=value"`` strings (``--set``).
        quick: apply the config's ``[quick]`` overrides.
        results_dir: root of ``<experiment>/<run-id>/``.
        max_batch: at most this many points per compiled call (rounded up to a multiple of the
            device count); results equal an unchunked run.
        experiments_dir: where experiments live (see :func:`experiments_root`).
        progress: show a progress bar.
        config: an already-resolved config.

    Returns:
        A :class:`RunResult`.
    """
    start = time.perf_counter()
    if isinstance(experiment_or_name, Experiment):
        if config is None:
            raise ValueError("`config` is required when passing an Experiment object.")
        experiment, resolved = experiment_or_name, config
    else:
        experiment, resolved = load_config(
            experiment_or_name, overrides=overrides, quick=quick, experiments_dir=experiments_dir
        )
    if max_batch is not None and (not isinstance(max_batch, int) or max_batch < 1):
        raise ValueError(f"`max_batch` must be a positive int, got {max_batch!r}.")
    rid = run_id(resolved, quick)
    run_dir = Path(results_dir) / experiment.name / rid
    store = _Store(run_dir)
    atomic_write_text(run_dir / "config.json", json.dumps(resolved.to_dict(), indent=2))

    fields = field_table(experiment.config_cls)
    points = resolved.points()
    swept = list(points[0])
    dynamic_keys = tuple(k for k in swept if k != "seed" and fields[k].dynamic)
    static_keys = tuple(k for k in swept if k != "seed" and not fields[k].dynamic)

    pending = [p for p in points if store.load(p) is None]
    groups: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for point in pending:
        static_values = {k: point[k] for k in static_keys}
        groups.setdefault(_canonical(static_values), (static_values, []))[1].append(point)
    bar = _progress(len(pending), experiment.name, progress and bool(pending))
    try:
        for static_values, group_points in groups.values():
            _execute_group(
                experiment,
                resolved,
                static_values,
                group_points,
                dynamic_keys,
                store,
                max_batch,
                bar,
            )
    finally:
        if bar is not None:
            bar.close()

    records = []
    for point in points:
        metrics = store.load(point)
        if metrics is None:  # pragma: no cover - every point was just written
            raise RuntimeError(f"Point {point} has no stored result.")
        records.append(Record(point=point, metrics=metrics, config=_point_config(resolved, point)))
    lines = [
        json.dumps({"point": r.point, "metrics": {k: _to_json(v) for k, v in r.metrics.items()}})
        for r in records
    ]
    atomic_write_text(run_dir / "metrics.jsonl", "\n".join(lines) + "\n")

    ctx = ReportContext(outdir=run_dir, config=resolved.to_dict(), quick=quick)
    body = experiment.report(records, ctx)
    wall = time.perf_counter() - start
    num_run = len(pending)
    report = _header(experiment, rid, quick, wall, num_run, len(points) - num_run) + body + "\n"
    report_path = run_dir / "report.md"
    atomic_write_text(report_path, report)
    run_info = {
        "experiment": experiment.name,
        "run_id": rid,
        "quick": quick,
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.local_devices()],
        "points": len(points),
        "computed": num_run,
        "resumed": len(points) - num_run,
        "wall_s": wall,
        "finished_utc": datetime.datetime.now(datetime.UTC).isoformat(),
    }
    atomic_write_text(run_dir / "run.json", json.dumps(run_info, indent=2))
    return RunResult(run_dir, records, report_path, num_run, len(points) - num_run, wall)
