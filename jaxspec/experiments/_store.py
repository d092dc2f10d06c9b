"""A run folder on disk: one atomically written file per finished point, a lock, cleanup.

Crash safety rests on three rules:

* every file is written to a temporary name in its folder and renamed over the target
  (:mod:`jaxspec.experiments._io`), so a reader sees the old file or the new one, never a
  truncated one; a ``SIGKILL`` mid-write leaves at most a hidden ``.*.tmp`` file, which the next
  run of the same folder removes;
* a point is finished when its file exists and parses with the same point values; anything
  else (no file, a corrupt or foreign file, a point that raised) is computed again;
* one process at a time owns a run folder: process 0 of a run holds an exclusive ``flock``
  on ``<run-dir>/.lock`` from before it looks for finished points until it has written the
  report. A second command on the same folder waits, then finds the points done.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from jaxspec.experiments._io import TMP_SUFFIX, atomic_write_text

try:  # POSIX advisory locks; elsewhere runs are not protected against a second process
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

STATUS_OK = "ok"
STATUS_NONFINITE = "nonfinite"
STATUS_ERROR = "error"
LOCK_NAME = ".lock"


def to_json(value: np.ndarray) -> Any:
    """A metric array as JSON (lists of Python numbers; NaN/Inf as NaN/Infinity)."""
    if value.dtype.kind == "b":
        return value.tolist()
    if value.dtype.kind in "iu":
        return value.astype(np.int64).tolist()
    return value.astype(np.float64).tolist()  # exact for float16/32/64


def json_point(point: dict[str, Any]) -> dict[str, Any]:
    """A point's values as JSON types (tuples -> lists), keys in sweep order."""
    return json.loads(json.dumps(point, default=str))


def nonfinite_keys(metrics: dict[str, np.ndarray]) -> list[str]:
    """Names of the floating-point metrics holding a NaN or an infinity."""
    return [
        k for k, v in metrics.items() if v.dtype.kind in "fc" and not bool(np.all(np.isfinite(v)))
    ]


class PointStore:
    """Finished points of one run, one JSON file each under ``<run-dir>/points/``."""

    def __init__(self, run_dir: Path, point_id: Any, process: int = 0):
        self.points_dir = Path(run_dir) / "points"
        self.points_dir.mkdir(parents=True, exist_ok=True)
        self._point_id = point_id
        self.process = process  # recorded in each file: which process computed the point

    def path(self, point: dict[str, Any]) -> Path:
        return self.points_dir / f"{self._point_id(point)}.json"

    def load(self, point: dict[str, Any], *, errors: bool = False) -> dict[str, Any] | None:
        """The stored result of ``point``: a dict with ``metrics``, ``wall_s``, ``status``,
        ``message`` and ``nonfinite``.

        Returns ``None`` when the file is missing, unreadable, or holds another point, and
        for a point stored with status ``"error"`` unless ``errors`` (such points are tried
        again by the next run).
        """
        try:
            data = json.loads(self.path(point).read_text(encoding="utf-8"))
            if data["point"] != json_point(point):
                return None  # a hash collision, or a file from elsewhere: recompute
            status = str(data.get("status", STATUS_OK))
            if status == STATUS_ERROR and not errors:
                return None
            metrics = {
                k: np.asarray(v, dtype=np.dtype(data["dtypes"][k]))
                for k, v in data["metrics"].items()
            }
            return {
                "metrics": metrics,
                "wall_s": float(data.get("wall_s", 0.0)),
                "status": status,
                "message": str(data.get("message", "")),
                "nonfinite": list(data.get("nonfinite", [])),
            }
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(
        self,
        point: dict[str, Any],
        metrics: dict[str, np.ndarray],
        wall_s: float,
        *,
        status: str | None = None,
        message: str = "",
    ) -> str:
        """Write one point atomically; returns its status (``"ok"``, ``"nonfinite"`` or the
        given ``status``)."""
        bad = nonfinite_keys(metrics)
        if status is None:
            status = STATUS_NONFINITE if bad else STATUS_OK
        payload = {
            "point": json_point(point),
            "status": status,
            "message": message,
            "nonfinite": bad,
            "metrics": {k: to_json(v) for k, v in metrics.items()},
            "dtypes": {k: v.dtype.str for k, v in metrics.items()},
            "wall_s": wall_s,
            "process": self.process,
        }
        atomic_write_text(self.path(point), json.dumps(payload))
        return status


def remove_stale_temporaries(run_dir: Path) -> int:
    """Delete the hidden ``.*.tmp`` files a killed writer left in ``run_dir`` (recursively).

    Only safe while holding the run folder's lock (no live writer). Returns how many went.
    """
    removed = 0
    for path in Path(run_dir).rglob(f".*{TMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    return removed


@contextlib.contextmanager
def run_folder_lock(run_dir: Path, *, poll_s: float = 0.5) -> Iterator[float]:
    """Hold an exclusive lock on ``run_dir`` (``flock`` on ``<run-dir>/.lock``).

    Blocks while another process holds it, saying so once on stderr. The lock is released
    when the block exits or the process dies (the kernel drops ``flock`` locks with their
    file descriptor, so a killed run never leaves a stale lock).

    Yields:
        Seconds spent waiting for the lock.
    """
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover - Windows
        yield 0.0
        return
    fd = os.open(Path(run_dir) / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    tic = time.perf_counter()
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(
                f"[jaxspec] {run_dir} is in use by another process; waiting for it to finish",
                file=sys.stderr,
                flush=True,
            )
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    time.sleep(poll_s)
        yield time.perf_counter() - tic
    finally:
        os.close(fd)  # releases the lock
