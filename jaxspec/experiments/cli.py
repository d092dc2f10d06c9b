"""The ``jaxspec`` command: ``list``, ``run`` and ``reproduce`` experiments.

Examples::

    jaxspec list
    jaxspec run ns_schedules --quick --set run.max_steps=8
    jaxspec run path/to/my_config.toml --max-batch 64
    jaxspec reproduce --quick --results-dir results
    jaxspec reproduce --quick --jobs 1
    jaxspec run spectra --memory-budget 8GiB
    jaxspec run spectra --coordinator-address host0:1234 --num-processes 2 --process-id 0
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

from jaxspec._cpu_pool import cpu_pool_guard
from jaxspec.experiments._config import ConfigError
from jaxspec.experiments._discover import discover, experiments_root, load_experiment
from jaxspec.experiments._distributed import initialize_distributed, is_distributed
from jaxspec.experiments._io import atomic_write_text
from jaxspec.experiments._memory import parse_memory_budget
from jaxspec.experiments._report import markdown_table
from jaxspec.experiments._runner import run_experiment
from jaxspec.experiments._store import STATUS_ERROR, STATUS_NONFINITE


def _use_agg() -> None:
    try:
        import matplotlib
    except ImportError:  # reports without figures still work
        return
    matplotlib.use("Agg")


def _describe(folder: Path) -> tuple[str, bool]:
    try:
        return load_experiment(folder).description, True
    except Exception as err:  # noqa: BLE001 - listing must go on past a broken experiment
        return f"(cannot import: {type(err).__name__}: {err})", False


def _cmd_list(args: argparse.Namespace) -> int:
    found = discover(args.experiments_dir)
    if not found:
        print(f"No experiments found in {experiments_root(args.experiments_dir)}.")
        return 1
    width = max(len(n) for n in found)
    ok = True
    for name, folder in found.items():
        description, imported = _describe(folder)
        ok &= imported
        print(f"{name:<{width}}  {description}")
    return 0 if ok else 1


def _cmd_run(args: argparse.Namespace) -> int:
    try:
        result = run_experiment(
            args.target,
            overrides=args.set,
            quick=args.quick,
            results_dir=args.results_dir,
            max_batch=args.max_batch,
            memory_budget=args.memory_budget,
            experiments_dir=args.experiments_dir,
            progress=not args.no_progress,
            xla_opt_level=args.xla_opt_level,
            layout=args.layout,
        )
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    raised, nonfinite = _bad_points(result.records)
    print(
        f"{result.report_path}  ({result.num_run} point(s) computed, {result.num_resumed} "
        f"resumed, {result.wall_s:.1f} s; {raised} raised, {nonfinite} non-finite)"
    )
    return 0


def _bad_points(records: list) -> tuple[int, int]:
    """``(raised, non-finite)``: points stored with status ``error`` and ``nonfinite``."""
    statuses = [r.status for r in records]
    return statuses.count(STATUS_ERROR), statuses.count(STATUS_NONFINITE)


def _reproduce_in_process(name: str, args: argparse.Namespace, results_dir: Path) -> dict:
    try:
        result = run_experiment(
            name,
            quick=args.quick,
            results_dir=results_dir,
            max_batch=args.max_batch,
            memory_budget=args.memory_budget,
            experiments_dir=args.experiments_dir,
            progress=not args.no_progress,
            xla_opt_level=args.xla_opt_level,
            layout=args.layout,
        )
    except Exception as err:  # noqa: BLE001 - report every failure, run the others
        traceback.print_exc()
        return {"error": f"{type(err).__name__}: {err}".splitlines()[0][:200]}
    raised, nonfinite = _bad_points(result.records)
    return {
        "report": result.report_path,
        "points": len(result.records),
        "resumed": result.num_resumed,
        "raised": raised,
        "nonfinite": nonfinite,
    }


_DONE_LINE = re.compile(r"^(?P<path>.+report\.md)  \((?P<run>\d+) point\(s\) computed, "
                        r"(?P<resumed>\d+) resumed, .*; (?P<raised>\d+) raised, "
                        r"(?P<nonfinite>\d+) non-finite\)$")  # fmt: skip
_ERROR_LINE = re.compile(r"^([\w.]+(Error|Exception)|error)\b.*")


def _usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _child_env(jobs: int) -> dict[str, str]:
    """The environment of a ``--jobs`` child: the CPUs shared out among the children's BLAS
    and OpenMP thread pools (variables the user set are kept). With one pool per CPU in each
    child, ``jobs`` children oversubscribe the machine, and OpenBLAS threads spin while they
    wait: on 2 CPUs, the SBL notebook next to the SBL benchmark took 165 s and 119 s with
    default pools, 110 s and 55 s with one thread each."""
    env = dict(os.environ)
    threads = str(max(1, _usable_cpus() // jobs))
    for var in _THREAD_VARS:
        env.setdefault(var, threads)
    return env


def _reproduce_in_subprocess(
    name: str, args: argparse.Namespace, results_dir: Path, jobs: int = 2
) -> dict:
    """``jaxspec run NAME`` in a child process (one per experiment with ``--jobs`` > 1)."""
    cmd = [sys.executable, "-m", "jaxspec.experiments.cli", "run", name, "--no-progress"]
    cmd += ["--results-dir", str(results_dir)] + (["--quick"] if args.quick else [])
    if args.experiments_dir is not None:
        cmd += ["--experiments-dir", str(args.experiments_dir)]
    level = args.xla_opt_level  # already resolved from 'auto' by main()
    cmd += ["--xla-opt-level", "default" if level is None else str(level)]
    cmd += ["--layout", args.layout]
    if args.max_batch is not None:
        cmd += ["--max-batch", str(args.max_batch)]
    if args.memory_budget is not None:
        cmd += ["--memory-budget", str(args.memory_budget)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=_child_env(jobs))
    lines = [line for line in proc.stdout.splitlines() if _DONE_LINE.match(line)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(f"-- {name} failed (exit {proc.returncode}); its output:\n")
        sys.stderr.write(proc.stdout + proc.stderr)
        errors = [x.strip() for x in proc.stderr.splitlines() if _ERROR_LINE.match(x.strip())]
        return {"error": (errors[-1] if errors else f"exit status {proc.returncode}")[:200]}
    done = _DONE_LINE.match(lines[-1])
    return {
        "report": Path(done["path"]),
        "points": int(done["run"]) + int(done["resumed"]),
        "resumed": int(done["resumed"]),
        "raised": int(done["raised"]),
        "nonfinite": int(done["nonfinite"]),
    }


def _jobs(value: str) -> int:
    """``--jobs``: a positive count, or ``auto`` (one per usable CPU, at most 4, on a CPU-only
    machine; 1 with an accelerator, whose memory the experiments would share)."""
    if value != "auto":
        return int(value)
    import jax

    if jax.default_backend() != "cpu" or jax.process_count() > 1:
        return 1
    return max(1, min(_usable_cpus(), 4))


def _xla_opt_level(value: str, quick: bool) -> int | None:
    """``--xla-opt-level``: ``auto`` is 1 for ``--quick`` on a CPU-only machine and XLA's
    default otherwise (``None``).

    Compiling is about 80% of ``jaxspec reproduce --quick``'s process time on 2 CPU cores;
    backend level 1 takes about half as long as the default 3 and the small quick programs run
    as fast (level 0 compiles a little faster again but runs about 2x slower).
    """
    if value == "auto":
        import jax

        return 1 if quick and jax.default_backend() == "cpu" else None
    return None if value == "default" else int(value)


def _cmd_reproduce(args: argparse.Namespace) -> int:
    found = discover(args.experiments_dir)
    if not found:
        print(f"No experiments found in {experiments_root(args.experiments_dir)}.")
        return 1
    results_dir = Path(args.results_dir)
    size = "quick" if args.quick else "full"
    jobs = _jobs(args.jobs)
    if jobs > 1 and is_distributed():
        print("error: --jobs > 1 cannot be combined with a multi-process run", file=sys.stderr)
        return 2
    if jobs > 1:
        print(f"running {len(found)} experiments, {jobs} at a time (--jobs)", flush=True)

    def one(name: str) -> dict:
        tic = time.perf_counter()
        print(f"== {name} ({size})", flush=True)
        row = {"experiment": name, "description": _describe(found[name])[0]}
        if jobs > 1:
            out = _reproduce_in_subprocess(name, args, results_dir, jobs)
        else:
            out = _reproduce_in_process(name, args, results_dir)
        if "error" in out:
            row.update(status=f"FAILED: {out['error']}", report="", points="")
        else:
            link = Path(os.path.relpath(out["report"], results_dir)).as_posix()
            # Points that raised are missing results (a re-run retries them): not "ok".
            # Non-finite metrics are results (a diverging rate, say): counted, still "ok".
            nonfinite = f", {out['nonfinite']} non-finite" if out["nonfinite"] else ""
            row.update(
                status="ok" if not out["raised"] else f"{out['raised']} point(s) raised",
                report=f"[{out['report'].parent.name}]({link})",
                points=f"{out['points']} ({out['resumed']} resumed{nonfinite})",
            )
            print(f"   {out['report']}", flush=True)
        row["wall time (s)"] = f"{time.perf_counter() - tic:.1f}"
        return row

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        rows = list(pool.map(one, found))  # rows in discovery order
    failed = [row["experiment"] for row in rows if row["status"] != "ok"]
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    summary = f"{len(rows) - len(failed)} of {len(rows)} experiments ok"
    index = "\n".join(
        [
            "# jaxspec experiments",
            "",
            f"{size.capitalize()} size, written {now}: {summary}.",
            "",
            markdown_table(rows),
            "",
        ]
    )
    atomic_write_text(results_dir / "index.md", index)
    print(
        f"{results_dir / 'index.md'}: {summary}"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``jaxspec`` command."""
    help_dir = (
        "folder of experiment folders (default: $JAXSPEC_EXPERIMENTS_DIR, ./experiments, "
        "or the repository's experiments/)"
    )
    parser = argparse.ArgumentParser(
        prog="jaxspec", description="Run and reproduce jaxspec experiments."
    )
    parser.add_argument("--experiments-dir", default=None, help=help_dir)
    # Also accepted after the subcommand; SUPPRESS keeps a value given before it.
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--experiments-dir", default=argparse.SUPPRESS, help=help_dir)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", parents=[where], help="list experiments and their descriptions")

    def sizing(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--quick", action="store_true", help="apply each config's [quick] table (2 CPU cores)"
        )
        p.add_argument("--results-dir", default="results", help="root of the results")
        p.add_argument(
            "--max-batch", type=int, default=None, metavar="N", help="at most N points per call"
        )
        p.add_argument(
            "--memory-budget",
            default=None,
            metavar="SIZE",
            help="bytes per device a call may use, e.g. 4GiB, or 'auto' (75%% of free memory); "
            "larger sweeps run in chunks",
        )
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.add_argument(
            "--layout",
            choices=("auto", "grid", "flat", "map"),
            default="auto",
            help="how a static group's points are vmapped: 'grid' runs a seed x values product "
            "as a vmap over seeds (sharded) of a vmap over the values, so per-seed data is "
            "built once per seed; 'flat' is one vmap over the points; 'map' runs each "
            "device's points one after another in one compiled call (lax.map: no lockstep of "
            "tolerance-stopped solvers, no batched LAPACK; faster for SBL-like sweeps on CPU); "
            "'auto' (default) is 'grid' when every device gets a whole seed row per call, "
            "else 'flat'",
        )
        p.add_argument(
            "--xla-opt-level",
            choices=("auto", "default", "0", "1", "2", "3"),
            default="auto",
            help="XLA backend (LLVM) optimization level of the sweep programs (default 'auto': "
            "1 for --quick on a CPU-only machine, where compiling is most of a quick run and "
            "takes about half as long; XLA's default, 3, otherwise)",
        )
        dist = p.add_argument_group(
            "multi-process (jax.distributed)",
            "every process runs the same command with its own --process-id; the sweep is "
            "sharded over all processes' devices; the results folder must be shared. SLURM job "
            "steps with several tasks are detected without flags.",
        )
        dist.add_argument(
            "--coordinator-address",
            default=None,
            metavar="HOST:PORT",
            help="process 0's address (default: $JAX_COORDINATOR_ADDRESS)",
        )
        dist.add_argument(
            "--num-processes",
            type=int,
            default=None,
            metavar="N",
            help="number of processes (default: $JAX_NUM_PROCESSES)",
        )
        dist.add_argument(
            "--process-id",
            type=int,
            default=None,
            metavar="I",
            help="this process's index in [0, N) (default: $JAX_PROCESS_ID)",
        )

    run = sub.add_parser("run", parents=[where], help="run one experiment")
    run.add_argument("target", metavar="NAME_OR_CONFIG", help="experiment name or config .toml")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key; the value is a TOML literal (e.g. optimizer.lr=3e-4)",
    )
    sizing(run)
    reproduce = sub.add_parser(
        "reproduce", parents=[where], help="run every experiment and write <results>/index.md"
    )
    sizing(reproduce)
    reproduce.add_argument(
        "--jobs",
        default="auto",
        metavar="N",
        help="experiments run at once, each in its own process (default 'auto': one per CPU, "
        "at most 4, on a CPU-only machine; 1 with an accelerator or under jax.distributed)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``jaxspec`` console script.

    Args:
        argv: arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The exit status: 0 on success, 1 when an experiment failed, 2 for a bad config.
    """
    args = build_parser().parse_args(argv)
    if getattr(args, "max_batch", None) is not None and args.max_batch < 1:
        print("error: --max-batch must be a positive integer", file=sys.stderr)
        return 2
    try:
        if getattr(args, "memory_budget", None) is not None:
            args.memory_budget = parse_memory_budget(args.memory_budget)
    except ValueError as err:
        print(f"error: {err}".replace("`memory_budget`", "--memory-budget"), file=sys.stderr)
        return 2
    jobs = getattr(args, "jobs", "auto")
    if jobs != "auto" and not (jobs.isdigit() and int(jobs) >= 1):
        print(f"error: --jobs must be a positive integer or 'auto', got {jobs!r}", file=sys.stderr)
        return 2
    _use_agg()
    if args.command != "list":
        try:  # before anything creates the JAX backends (the guard below does)
            initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        cpu_pool_guard()  # before the first computation; see jaxspec/_cpu_pool.py
        args.xla_opt_level = _xla_opt_level(args.xla_opt_level, args.quick)
    handlers = {"list": _cmd_list, "run": _cmd_run, "reproduce": _cmd_reproduce}
    return handlers[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
