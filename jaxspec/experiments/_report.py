"""Helpers for Markdown reports: tables, mean ± std, grouping records."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from jaxspec.experiments._api import Record


def _fmt(value: Any, floatfmt: str) -> str:
    if isinstance(value, float | np.floating):
        return format(float(value), floatfmt)
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return _fmt(value.item(), floatfmt)
    return str(value)


def markdown_table(
    rows: Sequence[dict[str, Any]] | Sequence[Sequence[Any]],
    headers: Sequence[str] | None = None,
    floatfmt: str = ".4g",
) -> str:
    """A GitHub-flavoured Markdown table from dict rows (keys = headers) or sequences."""
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
    lines = [
        "| " + " | ".join(str(h) for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(_fmt(v, floatfmt) for v in row) + " |" for row in body]
    return "\n".join(lines)


def mean_std(values: Iterable[float], fmt: str = ".4g") -> str:
    """``"mean ± std"`` (sample std, ddof=1; ``± 0`` for a single value)."""
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        return "n/a"
    std = arr.std(ddof=1) if arr.size > 1 else 0.0
    return f"{format(arr.mean(), fmt)} ± {format(std, fmt)}"


def group_records(records: Sequence[Record], by: Sequence[str]) -> dict[tuple, list[Record]]:
    """Group records by the values of the point keys ``by`` (first-seen order)."""
    groups: dict[tuple, list[Record]] = {}
    for record in records:
        key = tuple(record.point.get(k, _lookup(record.config, k)) for k in by)
        groups.setdefault(key, []).append(record)
    return groups


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node[part]
    return node
