"""Experiments: typed configs, vmapped/sharded sweeps, resumable results, reports, the CLI.

An experiment is a pure ``run(config, key) -> metrics`` plus ``report(records, ctx) -> str``,
declared as ``EXPERIMENT = Experiment(...)`` in ``experiments/<name>/experiment.py`` beside its
``config.toml``. See :func:`run_experiment` and the ``jaxspec`` command.
"""

from jaxspec.experiments._api import (
    Experiment,
    Record,
    ReportContext,
    atomic_write_text,
    dynamic,
    static,
)
from jaxspec.experiments._config import ConfigError, ResolvedConfig, parse_override, resolve
from jaxspec.experiments._discover import discover, experiments_root, load_experiment
from jaxspec.experiments._report import group_records, markdown_table, mean_std
from jaxspec.experiments._runner import RunResult, load_config, point_id, run_experiment, run_id

__all__ = [
    "ConfigError",
    "Experiment",
    "Record",
    "ReportContext",
    "ResolvedConfig",
    "RunResult",
    "atomic_write_text",
    "discover",
    "dynamic",
    "experiments_root",
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
    "static",
]
