"""Experiments: typed configs, vmapped and sharded sweeps, resumable results, reports, the CLI.

An experiment is a pure ``run(config, key) -> metrics`` plus ``report(records, ctx) -> str``,
declared as ``EXPERIMENT = Experiment(...)`` in ``experiments/<name>/experiment.py`` beside its
``config.toml``. :func:`run_experiment` (and the ``jaxspec`` command) resolves the config,
runs every sweep point (static values in a Python loop, one compile each; dynamic values
stacked into one ``jit(vmap(run))`` sharded over the ``"sweep"`` axis of all local devices),
and writes ``results/<name>/<run-id>/``.
"""

from jaxspec.experiments._api import Experiment, Record, ReportContext, dynamic, static
from jaxspec.experiments._config import (
    ConfigError,
    FieldInfo,
    ResolvedConfig,
    field_table,
    parse_override,
    resolve,
)
from jaxspec.experiments._discover import discover, experiments_root, load_experiment
from jaxspec.experiments._io import atomic_write_bytes, atomic_write_text
from jaxspec.experiments._report import group_records, markdown_table, mean_std, stack
from jaxspec.experiments._runner import (
    RunResult,
    load_config,
    point_id,
    run_experiment,
    run_id,
    sweep_sharding,
)

__all__ = [
    "ConfigError",
    "Experiment",
    "FieldInfo",
    "Record",
    "ReportContext",
    "ResolvedConfig",
    "RunResult",
    "atomic_write_bytes",
    "atomic_write_text",
    "discover",
    "dynamic",
    "experiments_root",
    "field_table",
    "group_records",
    "load_config",
    "load_experiment",
    "markdown_table",
    "mean_std",
    "parse_override",
    "point_id",
    "resolve",
    "run_experiment",
    "run_id",
    "sweep_sharding",
    "stack",
    "static",
]
