"""The experiment protocol: a pure ``run(config, key) -> metrics`` plus a report step."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A reproducible experiment.

    Attributes:
        name: identifier, e.g. ``"ns_schedules"`` (the folder name under ``experiments/``).
        description: one line, shown by ``jaxspec list``.
        config_cls: frozen dataclass of the configuration (sections are nested frozen
            dataclasses). ``float`` fields are *dynamic*: swept values arrive in ``run`` as
            traced scalars and are vmapped; ``int``/``str``/``bool``/tuple fields are *static*:
            one compile per value. Override per field with :func:`static` / :func:`dynamic`.
            The seed is owned by the runner (``seed`` in the TOML file) and becomes ``key``.
        run: pure function ``run(config, key) -> metrics`` (a dict of arrays), jit- and
            vmap-compatible.
        report: ``report(records, ctx) -> str``, the Markdown body of ``report.md``; save plots
            with ``ctx.save_figure``.
    """

    name: str
    description: str
    config_cls: type
    run: Callable[[Any, Any], Any]
    report: Callable[[list[Record], ReportContext], str]


def static(default: Any) -> Any:
    """A config field that is static (one compile per swept value) whatever its type."""
    return dataclasses.field(default=default, metadata={"sweep": "static"})


def dynamic(default: Any) -> Any:
    """A config field that is dynamic (stacked and vmapped when swept) whatever its type."""
    return dataclasses.field(default=default, metadata={"sweep": "dynamic"})


@dataclasses.dataclass(frozen=True)
class Record:
    """One finished sweep point.

    Attributes:
        point: the swept dotted keys (and ``"seed"``) with this point's values.
        metrics: the metrics returned by ``run``, as NumPy arrays (flattened dict keys).
        config: the fully resolved configuration of this point, as a nested dict.
    """

    point: dict[str, Any]
    metrics: dict[str, np.ndarray]
    config: dict[str, Any]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp creates 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Atomic text write (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


@dataclasses.dataclass
class ReportContext:
    """What a report function gets besides the records.

    Attributes:
        outdir: the run directory (``results/<experiment>/<run-id>``).
        config: the resolved configuration (nested dict, with its sweep).
        quick: whether the run used ``--quick`` sizes.
    """

    outdir: Path
    config: dict[str, Any]
    quick: bool
    figures: list[str] = dataclasses.field(default_factory=list)

    def save_figure(self, fig: Any, name: str) -> str:
        """Save a matplotlib figure as PNG atomically, close it, return its relative path."""
        import io

        import matplotlib.pyplot as plt

        if not name.endswith(".png"):
            name = f"{name}.png"
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        atomic_write_bytes(self.outdir / name, buffer.getvalue())
        self.figures.append(name)
        return name
