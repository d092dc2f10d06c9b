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


def _read_int(path: str) -> int | None:
    """An integer file such as ``memory.max``; ``None`` when absent, ``"max"`` or unreadable."""
    try:
        with open(path) as f:
            text = f.read().strip()
        return int(text)
    except (OSError, ValueError):
        return None


def _cgroup_headroom(proc: str, cgroup_root: str) -> int | None:
    """Bytes this process's memory cgroup may still charge (the tightest level), or ``None``.

    cgroup v2 (``memory.max`` / ``memory.current``) and v1 (``memory.limit_in_bytes`` /
    ``memory.usage_in_bytes``), read from the process's own cgroup up to the mount point (a
    job scheduler such as SLURM often sets the limit on a parent of the step's cgroup).
    """
    try:
        with open(f"{proc}/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    layouts = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":  # v2 unified hierarchy
            layouts.append((cgroup_root, parts[2], "memory.max", "memory.current"))
        elif "memory" in parts[1].split(","):  # v1 memory controller
            layouts.append(
                (
                    f"{cgroup_root}/memory",
                    parts[2],
                    "memory.limit_in_bytes",
                    "memory.usage_in_bytes",
                )
            )
    best = None
    for mount, path, limit_file, usage_file in layouts:
        # In a container with its own cgroup namespace the path is "/", and the mount is the
        # container's cgroup; elsewhere the path is relative to the mount.
        levels = [p for p in path.strip("/").split("/") if p]
        while True:
            folder = "/".join([mount, *levels])
            limit, usage = _read_int(f"{folder}/{limit_file}"), _read_int(f"{folder}/{usage_file}")
            if limit is not None and limit < 2**60:  # v1 writes "no limit" as about 2^63
                room = max(0, limit - (usage or 0))
                best = room if best is None else min(best, room)
            if not levels:
                break
            levels.pop()
    return best


def host_available_bytes(proc: str = "/proc", cgroup_root: str = "/sys/fs/cgroup") -> int:
    """Bytes this process can still allocate on the host: the least of the RAM the kernel
    reports available (``MemAvailable``), the room left under the process's memory cgroup
    limit (cgroup v1 or v2, as set by containers and job schedulers) and the room left under
    its address-space limit (``RLIMIT_AS``, against its mapped size ``VmSize``). Falls back
    to the physical memory where ``/proc`` is missing.

    Args:
        proc: where procfs is mounted (a parameter for tests).
        cgroup_root: where the cgroup hierarchies are mounted (a parameter for tests).
    """
    candidates = []
    try:
        with open(f"{proc}/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    candidates.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    if not candidates:
        try:
            candidates.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (OSError, ValueError):
            candidates.append(2**34)  # unknown: 16 GiB
    cgroup = _cgroup_headroom(proc, cgroup_root)
    if cgroup is not None:
        candidates.append(cgroup)
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            with open(f"{proc}/self/status") as f:
                mapped = next(
                    int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:")
                )
            candidates.append(max(0, soft - mapped))
    except (ImportError, OSError, ValueError, StopIteration):
        pass
    return min(candidates)


def device_budget(devices: Sequence[Any]) -> int:
    """The ``"auto"`` budget per device: 75% of what a device can still allocate.

    Accelerators report ``bytes_limit`` and ``bytes_in_use`` (``device.memory_stats()``); CPU
    devices share the host's memory, so each gets 75% of :func:`host_available_bytes` (the
    least of the available RAM, the cgroup's room and the address-space room) over the number
    of local devices.
    """
    stats = None
    try:
        stats = devices[0].memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory statistics
        stats = None
    if stats and stats.get("bytes_limit"):
        free = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
        return max(1, int(AUTO_FRACTION * free))
    return max(1, int(AUTO_FRACTION * host_available_bytes() / max(1, len(devices))))


def is_out_of_memory(err: BaseException) -> bool:
    """Whether an error is XLA running out of device memory (``RESOURCE_EXHAUSTED``).

    Raised by a call, and on GPUs also by compilation: XLA:GPU's autotuner allocates
    buffers the size of a matrix product's operands to time its candidate kernels.
    """
    text = str(err)
    return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "out of memory" in text


_COMPILE_OOM = "compiling the probe ran out of device memory (XLA:GPU autotuning): one row"


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
        fit, and ``"compiled"``: the program at ``rows`` when it was one of the probes. When
        compiling a probe runs out of memory (see :func:`is_out_of_memory`), ``rows`` is 1
        and ``info["compile_out_of_memory"]`` the probe's row count (1: not even one row
        compiles).

    Raises:
        Exception: whatever ``compile_rows`` raises other than running out of memory.
    """
    info: dict[str, Any] = {"budget_bytes": budget}
    try:
        one = compile_rows(1)
    except Exception as err:
        if not is_out_of_memory(err):
            raise
        info.update(bytes_at_1_row=None, compile_out_of_memory=1, note=_COMPILE_OOM)
        return 1, info
    bytes_one = program_bytes(one)
    info["bytes_at_1_row"] = bytes_one
    if bytes_one is None:
        info["note"] = "no memory analysis on this backend: budget not applied"
        return max_rows, info
    if max_rows == 1:
        info["compiled"] = one
        return 1, info
    try:
        two = compile_rows(2)
    except Exception as err:
        if not is_out_of_memory(err):
            raise
        info.update(compile_out_of_memory=2, note=_COMPILE_OOM, compiled=one)
        return 1, info
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
