"""The experiment protocol: a pure ``run(config, key) -> metrics`` plus a report step."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from jaxspec.experiments._io import atomic_write_bytes


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A reproducible experiment.

    Declare one as ``EXPERIMENT = Experiment(...)`` in ``experiments/<name>/experiment.py``
    beside its ``config.toml``.

    Attributes:
        name: identifier, e.g. ``"ns_schedules"``; must equal the experiment's folder name.
        description: one line, shown by ``jaxspec list``.
        config_cls: frozen dataclass of the configuration; sections are nested frozen
            dataclasses. ``float`` fields are *dynamic*: when swept, their values are stacked
            and vmapped, so inside ``run`` they are traced scalars (float32, or float64 under
            ``jax_enable_x64``). Fields that are not swept keep their Python values, so a
            dynamic field is a Python float or a tracer; write ``run`` to accept either.
            ``int``, ``str``, ``bool`` and tuple fields are *static*: one compile per swept
            value, always Python values. Override per field with :func:`static` or
            :func:`dynamic`. The seed is owned by the runner (top-level ``seed`` in the TOML
            file, not a field of ``config_cls``) and reaches ``run`` as ``key``.
        run: pure ``run(config, key) -> metrics``, where ``key`` is a ``jax.random.key`` and
            metrics is a dict (possibly nested) of arrays or scalars. It must be jit- and
            vmap-compatible: the runner calls ``jax.jit(jax.vmap(...))`` over sweep points
            (or a ``vmap`` over seeds of a ``vmap`` over the other values, where ``key`` is
            then the same for every value of one seed; see ``run_experiment(layout=)``).
        report: ``report(records, ctx) -> str``, the Markdown body of ``report.md``; save plots
            with :meth:`ReportContext.save_figure`.
        x64: run the sweep with 64-bit JAX types (``jax_enable_x64`` switched on while its
            points compile and run, and restored afterwards), for experiments whose numerics
            need float64 (noiseless recovery, tiny noise variances).
    """

    name: str
    description: str
    config_cls: type
    run: Callable[[Any, Any], Any]
    report: Callable[[list[Record], ReportContext], str]
    x64: bool = False


def static(default: Any) -> Any:
    """A config field that is static (one compile per swept value), whatever its type.

    Args:
        default: the field's default value.

    Returns:
        A ``dataclasses.field`` to assign in a config dataclass body.

    Example:
        >>> import dataclasses
        >>> @dataclasses.dataclass(frozen=True)
        ... class Matrix:
        ...     lower: float = static(1e-3)  # used to build a NumPy schedule at trace time
    """
    return dataclasses.field(default=default, metadata={"sweep": "static"})


def dynamic(default: Any) -> Any:
    """A config field that is dynamic (stacked and vmapped when swept), whatever its type.

    Only ``float``, ``int`` and ``bool`` fields can be dynamic.

    Args:
        default: the field's default value.

    Returns:
        A ``dataclasses.field`` to assign in a config dataclass body.
    """
    return dataclasses.field(default=default, metadata={"sweep": "dynamic"})


@dataclasses.dataclass(frozen=True)
class Record:
    """One finished sweep point.

    Attributes:
        point: this point's value of every swept axis, by dotted key, plus ``"seed"``
            (always present), e.g. ``{"seed": 0, "optimizer.lr": 0.001}``.
        metrics: what ``run`` returned, as NumPy arrays (0-d for scalars); nested dicts are
            flattened to dotted keys (``{"norms": {"w1": x}}`` -> ``"norms.w1"``).
        config: the fully resolved configuration of this point as a nested dict (with
            ``"seed"``, without the sweep).
        status: ``"ok"``; ``"nonfinite"`` when a floating-point metric holds NaN or an
            infinity (the values are kept); ``"error"`` when the point raised at run time
            (its metrics are placeholders: NaN, -1 for integers, False for booleans).
        message: the error's text for status ``"error"``, else empty.
    """

    point: dict[str, Any]
    metrics: dict[str, np.ndarray]
    config: dict[str, Any]
    status: str = "ok"
    message: str = ""


@dataclasses.dataclass
class ReportContext:
    """What a report function gets besides the records.

    Attributes:
        outdir: the run folder, ``results/<experiment>/<run-id>``.
        config: the resolved configuration (nested dict, including its ``sweep``).
        quick: whether the run used the ``--quick`` sizes.
        figures: names of the figures saved so far.
    """

    outdir: Path
    config: dict[str, Any]
    quick: bool
    figures: list[str] = dataclasses.field(default_factory=list)

    def save_figure(self, fig: Any, name: str, *, dpi: int = 120) -> str:
        """Save a matplotlib figure as a PNG in :attr:`outdir` atomically, and close it.

        Args:
            fig: a ``matplotlib.figure.Figure``.
            name: file name, ``".png"`` appended when missing.
            dpi: resolution.

        Returns:
            The path relative to :attr:`outdir`, for Markdown: ``f"![]({path})"``.
        """
        if not name.endswith(".png"):
            name = f"{name}.png"
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
        import matplotlib.pyplot as plt

        plt.close(fig)
        atomic_write_bytes(Path(self.outdir) / name, buffer.getvalue())
        self.figures.append(name)
        return name
