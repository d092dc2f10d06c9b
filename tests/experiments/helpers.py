"""Shared helpers for the runner tests: the toy experiments in tests/fixtures/experiments."""

import sys
from pathlib import Path
from types import ModuleType

from jaxspec.experiments import Experiment, ResolvedConfig, RunResult, load_config, run_experiment
from jaxspec.experiments._config import load_toml

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "experiments"


def toy(**kwargs) -> tuple[Experiment, ResolvedConfig]:
    """The toy experiment and its resolved config."""
    return load_config("toy", experiments_dir=FIXTURES, **kwargs)


def toy_raw() -> dict:
    """The toy's config.toml, parsed."""
    return load_toml(FIXTURES / "toy" / "config.toml")


def toy_module() -> ModuleType:
    """The imported toy module (holds the TRACES counter)."""
    experiment, _ = toy()
    return sys.modules[experiment.run.__module__]


def run_toy(results_dir: Path, **kwargs) -> RunResult:
    """Run the toy without a progress bar."""
    return run_experiment(
        "toy", results_dir=results_dir, experiments_dir=FIXTURES, progress=False, **kwargs
    )
