"""Experiments: typed configs, vmapped and sharded sweeps, resumable results, reports, the CLI.

An experiment is a pure ``run(config, key) -> metrics`` plus ``report(records, ctx) -> str``,
declared as ``EXPERIMENT = Experiment(...)`` in ``experiments/<name>/experiment.py`` beside its
``config.toml``. :func:`run_experiment` (and the ``jaxspec`` command) resolves the config,
runs every sweep point (static values in a Python loop, one compile each; dynamic values
stacked into one ``jit(vmap(run))`` sharded over the ``"sweep"`` axis of every device, across
processes in a ``jax.distributed`` run, or, for a ``seed x values`` product, a ``vmap`` over
seeds of a ``vmap`` over the values, so per-seed data is built once per seed), and writes
``results/<name>/<run-id>/``.

Example: ``experiments/quadratic/experiment.py``::

    import dataclasses
    import jax
    import jax.numpy as jnp
    from jaxspec.experiments import Experiment, group_records, markdown_table, mean_std

    @dataclasses.dataclass(frozen=True)
    class Optimizer:
        lr: float = 0.1          # float: dynamic (vmapped when swept)
        steps: int = 100         # int: static (one compile per swept value)

    @dataclasses.dataclass(frozen=True)
    class Config:
        dim: int = 16
        optimizer: Optimizer = Optimizer()

    def run(config, key):
        h = jax.random.normal(key, (config.dim, config.dim))
        h = h @ h.T / config.dim + jnp.eye(config.dim)
        def step(x, _):
            x = x - config.optimizer.lr * (h @ x)
            return x, 0.5 * x @ h @ x
        _, losses = jax.lax.scan(step, jnp.ones(config.dim), None, config.optimizer.steps)
        return {"loss": losses}

    def report(records, ctx):
        rows = [{"lr": lr, "final loss": mean_std(r.metrics["loss"][-1] for r in recs)}
                for lr, recs in group_records(records, by="optimizer.lr").items()]
        return markdown_table(rows)

    EXPERIMENT = Experiment("quadratic", "GD on a random quadratic.", Config, run, report)

with ``experiments/quadratic/config.toml``::

    seed = 0
    [optimizer]
    steps = 200
    [sweep.product]
    seed = [0, 1, 2]
    "optimizer.lr" = [0.01, 0.1]
    [quick]
    "optimizer.steps" = 20

then ``jaxspec run quadratic --quick --set dim=8``.
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
from jaxspec.experiments._data import image_patches
from jaxspec.experiments._discover import discover, experiments_root, load_experiment
from jaxspec.experiments._distributed import initialize_distributed, is_distributed
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
    "image_patches",
    "initialize_distributed",
    "is_distributed",
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
