"""Finding experiments: ``experiments/<name>/experiment.py`` + ``config.toml``."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from jaxspec.experiments._api import Experiment

ENV_VAR = "JAXSPEC_EXPERIMENTS_DIR"


def experiments_root(explicit: str | os.PathLike | None = None) -> Path:
    """The folder holding experiment folders.

    Order: ``explicit``; ``$JAXSPEC_EXPERIMENTS_DIR``; ``./experiments``; the ``experiments/``
    folder beside the installed package (an editable install from a clone).
    """
    if explicit is not None:
        return Path(explicit)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    local = Path.cwd() / "experiments"
    if local.is_dir():
        return local
    import jaxspec

    return Path(jaxspec.__file__).resolve().parents[1] / "experiments"


def load_experiment(folder: Path) -> Experiment:
    """Import ``folder/experiment.py`` by path and return its ``EXPERIMENT``."""
    path = folder / "experiment.py"
    module_name = f"jaxspec_experiment_{folder.name}"
    if module_name in sys.modules and getattr(sys.modules[module_name], "__file__", None) == str(
        path
    ):
        module = sys.modules[module_name]
    else:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"Cannot import {path}.")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses resolve annotations through it
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
    experiment = getattr(module, "EXPERIMENT", None)
    if not isinstance(experiment, Experiment):
        raise ImportError(f"{path} must define EXPERIMENT = Experiment(...).")
    if experiment.name != folder.name:
        raise ImportError(
            f"{path}: EXPERIMENT.name {experiment.name!r} must equal its folder {folder.name!r}."
        )
    return experiment


def discover(root: str | os.PathLike | None = None) -> dict[str, Path]:
    """Map experiment names to their folders (sorted), without importing them."""
    base = experiments_root(root)
    if not base.is_dir():
        return {}
    return {
        p.name: p
        for p in sorted(base.iterdir())
        if p.is_dir() and (p / "experiment.py").is_file() and (p / "config.toml").is_file()
    }
