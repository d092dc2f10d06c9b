"""GPU check of memory-bounded sweeps (run by ``.ci/gpu-check``; CI has no GPU).

The ``faulty`` test fixture holds a ``(held, held)`` float32 matrix per point; with the
device pool capped (``XLA_PYTHON_CLIENT_MEM_FRACTION``) an 8-point sweep does not fit. Each
layout runs three ways: one point per call (the reference), with no budget (out-of-memory
errors, at compile time or run time, halve the batch) and with ``memory_budget="auto"``
(chunks from ``device.memory_stats()`` and XLA's memory analysis, no error). Exits non-zero
unless every point is ``ok``, the unbudgeted run needed at least one halving, the budgeted
run none, and both equal the reference bitwise.

Usage::

    XLA_PYTHON_CLIENT_MEM_FRACTION=0.1 python .ci/gpu_memory.py RESULTS_DIR [HELD]
"""

import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

from jaxspec.experiments import run_experiment

FAULTS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "experiments_faults"


def run(results: str, held: int, name: str, **kwargs):
    tic = time.perf_counter()
    result = run_experiment(
        "faulty",
        overrides=[f"held={held}"],
        progress=False,
        results_dir=f"{results}/{name}",
        experiments_dir=FAULTS,
        **kwargs,
    )
    (group,) = json.loads((result.run_dir / "run.json").read_text())["groups"]
    summary = {k: group.get(k) for k in ("layout", "calls", "batch", "oom_retries", "statuses")}
    memory = group.get("memory") or {}
    summary["memory"] = {k: memory[k] for k in ("budget_bytes", "bytes_per_row") if k in memory}
    print(f"{name}: {time.perf_counter() - tic:.1f} s {json.dumps(summary)}", flush=True)
    records = {json.dumps(r.point, sort_keys=True): r for r in result.records}
    return records, group


def main() -> int:
    results = sys.argv[1]
    held = int(sys.argv[2]) if len(sys.argv) > 2 else 32768  # 4 GiB per point
    device = jax.devices()[0]
    stats = device.memory_stats() or {}
    print(f"{device.device_kind}: bytes_limit {stats.get('bytes_limit')}", flush=True)
    failures = []
    for layout in ("grid", "flat"):
        reference, _ = run(results, held, f"reference-{layout}", layout=layout, max_batch=1)
        for kind, kwargs in (("unbudgeted", {}), ("auto", {"memory_budget": "auto"})):
            got, group = run(results, held, f"{kind}-{layout}", layout=layout, **kwargs)
            retries = group["oom_retries"]
            if kind == "unbudgeted" and retries < 1:
                failures.append(f"{kind}-{layout}: the sweep fit; raise HELD or lower the pool")
            if kind == "auto" and retries != 0:
                failures.append(f"{kind}-{layout}: {retries} out-of-memory retries")
            for key, ref in reference.items():
                rec = got[key]
                same = rec.metrics.keys() == ref.metrics.keys() and all(
                    np.array_equal(np.asarray(rec.metrics[m]), np.asarray(ref.metrics[m]))
                    for m in ref.metrics
                )
                if rec.status != "ok" or not same:
                    failures.append(f"{kind}-{layout} {key}: {rec.status} {rec.message[:200]}")
    print("peak bytes in use:", (device.memory_stats() or {}).get("peak_bytes_in_use"))
    print("\n".join(failures) or "all equal to one point per call, bitwise")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
