"""Finding experiments: ``<root>/<name>/experiment.py`` beside ``<root>/<name>/config.toml``."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
from pathlib import Path

from jaxspec.experiments._api import Experiment

ENV_VAR = "JAXSPEC_EXPERIMENTS_DIR"


def experiments_root(explicit: str | os.PathLike | None = None) -> Path:
    """The folder holding the experiment folders.

    Resolution order: ``explicit`` (``--experiments-dir``); ``$JAXSPEC_EXPERIMENTS_DIR``;
    ``./experiments`` when it exists in the working directory; the ``experiments/`` folder of
    the repository the package is installed from (editable install).

    Args:
        explicit: a folder given by the caller.

    Returns:
        The folder (which may not exist).
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


def _module_name(path: Path) -> str:
    # Unique per file, so two roots with an experiment of the same name do not collide.
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    stem = re.sub(r"\W", "_", path.parent.name)
    return f"jaxspec_experiment_{stem}_{digest}"


def load_experiment(folder: str | os.PathLike) -> Experiment:
    """Import ``folder/experiment.py`` by file path and return its ``EXPERIMENT``.

    The module is imported once per process (under a name unique to its path) and cached in
    ``sys.modules``; experiment folders need not be packages.

    Args:
        folder: an experiment folder.

    Returns:
        The module's ``EXPERIMENT``.

    Raises:
        ImportError: the file is missing, does not define an :class:`Experiment`, or its name
            differs from the folder's.
    """
    folder = Path(folder)
    path = (folder / "experiment.py").resolve()
    if not path.is_file():
        raise ImportError(f"{path} does not exist.")
    module_name = _module_name(path)
    module = sys.modules.get(module_name)
    if module is None:
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
    if experiment.name != folder.resolve().name:
        raise ImportError(
            f"{path}: EXPERIMENT.name {experiment.name!r} must equal its folder's name "
            f"{folder.resolve().name!r}."
        )
    return experiment


def discover(root: str | os.PathLike | None = None) -> dict[str, Path]:
    """Find experiment folders, without importing them.

    Args:
        root: the experiments folder; ``None`` resolves it with :func:`experiments_root`.

    Returns:
        ``{name: folder}`` sorted by name, for every sub-folder holding both
        ``experiment.py`` and ``config.toml`` (names starting with ``_`` or ``.`` skipped).
    """
    base = experiments_root(root)
    if not base.is_dir():
        return {}
    return {
        p.name: p
        for p in sorted(base.iterdir())
        if p.is_dir()
        and not p.name.startswith(("_", "."))
        and (p / "experiment.py").is_file()
        and (p / "config.toml").is_file()
    }
