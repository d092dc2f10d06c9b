"""Helpers for Markdown reports: tables, mean ± std, grouping records."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from jaxspec.experiments._api import Record


def _cell(value: Any, floatfmt: str) -> str:
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        text = format(value, floatfmt)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(
    rows: Sequence[dict[str, Any]] | Sequence[Sequence[Any]],
    headers: Sequence[str] | None = None,
    floatfmt: str = ".4g",
) -> str:
    """A GitHub-flavoured Markdown table.

    Args:
        rows: dicts (their keys, in first-seen order, are the headers unless ``headers`` is
            given; missing cells are blank) or sequences (then ``headers`` is required).
        headers: column names.
        floatfmt: format spec for floats (NumPy scalars and 0-d arrays included).

    Returns:
        The table, without a trailing newline; ``"_(no rows)_"`` when ``rows`` is empty.

    Example:
        >>> print(markdown_table([{"lr": 0.001, "loss": 1.23456}]))
        | lr | loss |
        |---|---|
        | 0.001 | 1.235 |
    """
    rows = list(rows)
    if not rows:
        return "_(no rows)_"
    if isinstance(rows[0], dict):
        if headers is None:
            headers = list(dict.fromkeys(k for row in rows for k in row))
        body = [[row.get(h, "") for h in headers] for row in rows]
    else:
        if headers is None:
            raise ValueError("`headers` is required when rows are sequences.")
        body = [list(row) for row in rows]
        if any(len(row) != len(headers) for row in body):
            raise ValueError(f"Every row needs {len(headers)} cells.")
    lines = [
        "| " + " | ".join(_cell(h, floatfmt) for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(_cell(v, floatfmt) for v in row) + " |" for row in body]
    return "\n".join(lines)


def mean_std(values: Iterable[Any], fmt: str = ".4g") -> str:
    """Format the mean and the sample standard deviation of ``values``.

    Args:
        values: numbers (or 0-d arrays).
        fmt: format spec of both numbers.

    Returns:
        ``"mean ± std"`` (std with ``ddof=1``; ``± 0`` for a single value; ``"n/a"`` for none).

    Example:
        >>> mean_std([0.12, 0.126])
        '0.123 ± 0.004243'
    """
    arr = np.asarray([np.asarray(v, dtype=np.float64) for v in values], dtype=np.float64)
    if arr.size == 0:
        return "n/a"
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return f"{format(float(arr.mean()), fmt)} ± {format(std, fmt)}"


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node[part]
    return node


def group_records(records: Sequence[Record], by: str | Sequence[str]) -> dict[Any, list[Record]]:
    """Group records by the values of some keys, in first-seen order.

    Args:
        records: records of a run.
        by: one dotted key or several; a key missing from a record's point is looked up in its
            resolved config (so un-swept fields work too).

    Returns:
        ``{value: records}`` for a single key, ``{(value, ...): records}`` for several.

    Example:
        >>> groups = group_records(records, by="optimizer.name")  # doctest: +SKIP
        >>> {name: len(recs) for name, recs in groups.items()}  # doctest: +SKIP
        {'adamw': 3, 'spectra_adamw': 3}
    """
    single = isinstance(by, str)
    keys = (by,) if single else tuple(by)
    groups: dict[Any, list[Record]] = {}
    for record in records:
        values = tuple(
            record.point[k] if k in record.point else _lookup(record.config, k) for k in keys
        )
        groups.setdefault(values[0] if single else values, []).append(record)
    return groups


def stack(records: Sequence[Record], metric: str) -> np.ndarray:
    """Stack one metric over records: shape ``(len(records), *metric_shape)``."""
    return np.stack([np.asarray(r.metrics[metric]) for r in records])
