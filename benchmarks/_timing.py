"""Timing and table helpers shared by the benchmark scripts (not a benchmark itself).

Every case is compiled ahead of time (``jit(...).lower(...).compile()``), so compile time is
measured separately and never lands in a sample. Cases of one group run round-robin, so a
burst of load from another process on a noisy machine hits all of them alike and their
ratios stay meaningful; quote medians and ratios, not single samples.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np


@dataclass
class Timing:
    """Wall-clock samples (seconds) of one compiled case, and its compile time."""

    samples: list[float] = field(default_factory=list)
    compile_s: float = float("nan")

    @property
    def median_ms(self) -> float:
        return 1e3 * float(np.median(self.samples))

    @property
    def min_ms(self) -> float:
        return 1e3 * float(np.min(self.samples))

    @property
    def iqr_ms(self) -> float:
        q1, q3 = np.percentile(self.samples, [25, 75])
        return 1e3 * float(q3 - q1)

    def as_dict(self) -> dict[str, Any]:
        return {
            "median_ms": self.median_ms,
            "min_ms": self.min_ms,
            "iqr_ms": self.iqr_ms,
            "compile_s": self.compile_s,
            "repeats": len(self.samples),
            "samples_ms": [1e3 * s for s in self.samples],
        }


@dataclass
class Case:
    """A function to time on fixed arguments; ``compiled`` is filled in by :func:`time_group`."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    compiled: Any = None


def compile_case(case: Case) -> float:
    """Lower and compile ``case.fn`` for its arguments; returns the compile time in seconds."""
    start = time.perf_counter()
    case.compiled = jax.jit(case.fn).lower(*case.args).compile()
    return time.perf_counter() - start


def run_once(case: Case) -> float:
    start = time.perf_counter()
    jax.block_until_ready(case.compiled(*case.args))
    return time.perf_counter() - start


def time_group(
    cases: dict[str, Case],
    repeats: int,
    *,
    budget_s: float = float("inf"),
    min_repeats: int = 3,
) -> dict[str, Timing]:
    """Compile, warm up, then time every case round-robin ``repeats`` times.

    Rounds stop early once ``budget_s`` seconds of sampling have passed and at least
    ``min_repeats`` rounds are in (slow reference paths such as an SVD on two cores).
    """
    return time_with_host(cases, {}, repeats, budget_s=budget_s, min_repeats=min_repeats)[0]


def time_with_host(
    cases: dict[str, Case],
    host: dict[str, Callable[[], Any]],
    repeats: int,
    *,
    budget_s: float = float("inf"),
    min_repeats: int = 3,
) -> tuple[dict[str, Timing], dict[str, Any]]:
    """Compiled JAX cases and host calls (a peer library), timed round-robin together.

    JAX cases are compiled (time kept apart) and run once untimed. Host calls have nothing to
    compile (the caller warms the peer up once per process), so they get no untimed call: each
    one's first timed result is returned for the accuracy checks. Rounds stop after
    ``budget_s`` seconds of sampling once ``min_repeats`` rounds are in.
    """
    timings = {name: Timing() for name in (*cases, *host)}
    for name, case in cases.items():
        timings[name].compile_s = compile_case(case)
        run_once(case)  # warm-up: first-call allocations and thread-pool start-up
    for name in host:
        timings[name].compile_s = 0.0
    results: dict[str, Any] = {}
    start = time.perf_counter()
    for done in range(repeats):
        if done >= min_repeats and time.perf_counter() - start > budget_s:
            break
        for name, case in cases.items():
            timings[name].samples.append(run_once(case))
        for name, fn in host.items():
            t0 = time.perf_counter()
            out = fn()
            timings[name].samples.append(time.perf_counter() - t0)
            results.setdefault(name, out)
    return timings, results


def environment() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "load_average": os.getloadavg(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def fmt(value: float | None, spec: str = ".3g") -> str:
    """Format a number for a table cell; ``None``/NaN become an em dash."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "—"
    return format(value, spec)


def timing_cells(t: Timing) -> dict[str, str]:
    """The usual timing columns of a table row."""
    return {
        "median ms": fmt(t.median_ms),
        "IQR ms": fmt(t.iqr_ms, ".2g"),
        "compile s": fmt(t.compile_s, ".2f"),
    }


def markdown_table(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table; a row lacking a column gets an em dash there."""

    def cell(text: Any) -> str:
        return str(text).replace("|", "\\|")  # a literal pipe would split the cell

    lines = ["| " + " | ".join(map(cell, columns)) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "—")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)
