"""Memory budgets for sweeps: how many points fit on a device at once.

XLA reports, for a compiled program, the bytes of its arguments, outputs and temporaries per
device (``compiled.memory_analysis()``). The runner compiles a group's program at one and at
two points per device, fits ``bytes = fixed + rows * per_row`` and takes the most rows per
device that stay within the budget. An explicit ``max_batch`` and the budget combine (the
smaller wins).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
AUTO_FRACTION = 0.75


def parse_memory_budget(value: int | float | str | None) -> int | str | None:
    """``None``, ``"auto"``, or a number of bytes from an int or a string such as ``"4GiB"``.

    Raises:
        ValueError: not a positive size.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        match = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)", text)
        if match is None or match.group(2) not in _UNITS:
            raise ValueError(
                f"`memory_budget` must be 'auto' or a size such as 512MiB, 4GiB or 2e9, "
                f"got {value!r}."
            )
        size = float(match.group(1)) * _UNITS[match.group(2)]
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"`memory_budget` must be a size in bytes or a string, got {value!r}.")
    else:
        size = float(value)
    if not math.isfinite(size) or size < 1:
        raise ValueError(f"`memory_budget` must be a positive size, got {value!r}.")
    return int(size)


def device_budget(devices: Sequence[Any]) -> int:
    """The ``"auto"`` budget per device: 75% of what a device can still allocate.

    Accelerators report ``bytes_limit`` and ``bytes_in_use`` (``device.memory_stats()``); CPU
    devices share the host's RAM, so each gets 75% of the physical memory over the number of
    local devices.
    """
    stats = None
    try:
        stats = devices[0].memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory statistics
        stats = None
    if stats and stats.get("bytes_limit"):
        free = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
        return max(1, int(AUTO_FRACTION * free))
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(1, int(AUTO_FRACTION * total / max(1, len(devices))))


def program_bytes(compiled: Any) -> int | None:
    """Peak bytes per device of a compiled program (arguments + outputs + temporaries,
    less the outputs that alias arguments), or ``None`` when XLA gives no analysis."""
    try:
        analysis = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    if analysis is None:
        return None
    return int(
        analysis.argument_size_in_bytes
        + analysis.output_size_in_bytes
        + analysis.temp_size_in_bytes
        - analysis.alias_size_in_bytes
    )


def rows_within_budget(
    compile_rows: Callable[[int], Any], budget: int, max_rows: int
) -> tuple[int, dict[str, Any]]:
    """The most rows (points per device) whose program fits in ``budget`` bytes per device.

    Args:
        compile_rows: ``rows -> compiled program`` at ``rows`` points per device.
        budget: bytes per device.
        max_rows: rows needed for the whole group in one call.

    Returns:
        ``(rows, info)``, ``1 <= rows <= max_rows``; ``info`` holds the measured bytes and the
        fit, and ``"compiled"``: the program at ``rows`` when it was one of the probes.
    """
    one = compile_rows(1)
    bytes_one = program_bytes(one)
    info: dict[str, Any] = {"budget_bytes": budget, "bytes_at_1_row": bytes_one}
    if bytes_one is None:
        info["note"] = "no memory analysis on this backend: budget not applied"
        return max_rows, info
    if max_rows == 1:
        info["compiled"] = one
        return 1, info
    two = compile_rows(2)
    bytes_two = program_bytes(two) or bytes_one
    per_row = max(1, bytes_two - bytes_one)
    fixed = max(0, bytes_one - per_row)
    rows = max(1, min(max_rows, (budget - fixed) // per_row))
    info.update(bytes_at_2_rows=bytes_two, bytes_per_row=per_row, fixed_bytes=fixed)
    if fixed + per_row > budget:
        info["note"] = "one point per device exceeds the budget; running one at a time"
    if rows in (1, 2):
        info["compiled"] = one if rows == 1 else two
    return int(rows), info
