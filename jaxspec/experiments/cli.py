"""The ``jaxspec`` command: ``list``, ``run`` and ``reproduce`` experiments.

Examples::

    jaxspec list
    jaxspec run ns_schedules --quick --set run.max_steps=8
    jaxspec run path/to/my_config.toml --max-batch 64
    jaxspec reproduce --quick --results-dir results
    jaxspec run spectra --memory-budget 8GiB
    jaxspec run spectra --coordinator-address host0:1234 --num-processes 2 --process-id 0
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
import traceback
from pathlib import Path

from jaxspec._cpu_pool import cpu_pool_guard
from jaxspec.experiments._config import ConfigError
from jaxspec.experiments._discover import discover, experiments_root, load_experiment
from jaxspec.experiments._distributed import initialize_distributed
from jaxspec.experiments._io import atomic_write_text
from jaxspec.experiments._memory import parse_memory_budget
from jaxspec.experiments._report import markdown_table
from jaxspec.experiments._runner import run_experiment


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
        )
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"{result.report_path}  ({result.num_run} point(s) computed, {result.num_resumed} "
        f"resumed, {result.wall_s:.1f} s)"
    )
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    found = discover(args.experiments_dir)
    if not found:
        print(f"No experiments found in {experiments_root(args.experiments_dir)}.")
        return 1
    results_dir = Path(args.results_dir)
    size = "quick" if args.quick else "full"
    rows, failed = [], []
    for name, folder in found.items():
        tic = time.perf_counter()
        print(f"== {name} ({size})", flush=True)
        description, _ = _describe(folder)
        row = {"experiment": name, "description": description}
        try:
            result = run_experiment(
                name,
                quick=args.quick,
                results_dir=results_dir,
                max_batch=args.max_batch,
                memory_budget=args.memory_budget,
                experiments_dir=args.experiments_dir,
                progress=not args.no_progress,
            )
        except Exception as err:  # noqa: BLE001 - report every failure, run the others
            traceback.print_exc()
            failed.append(name)
            message = f"{type(err).__name__}: {err}".splitlines()[0][:200]
            row.update(status=f"FAILED: {message}", report="", points="")
        else:
            link = Path(os.path.relpath(result.report_path, results_dir)).as_posix()
            row.update(
                status="ok",
                report=f"[{result.run_dir.name}]({link})",
                points=f"{len(result.records)} ({result.num_resumed} resumed)",
            )
            print(f"   {result.report_path}", flush=True)
        row["wall time (s)"] = f"{time.perf_counter() - tic:.1f}"
        rows.append(row)
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
    _use_agg()
    if args.command != "list":
        try:  # before anything creates the JAX backends (the guard below does)
            initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        cpu_pool_guard()  # before the first computation; see jaxspec/_cpu_pool.py
    handlers = {"list": _cmd_list, "run": _cmd_run, "reproduce": _cmd_reproduce}
    return handlers[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
