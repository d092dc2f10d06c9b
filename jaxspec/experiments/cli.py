"""The ``jaxspec`` command: ``list``, ``run`` and ``reproduce``."""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
import traceback
from pathlib import Path

from jaxspec.experiments._api import atomic_write_text
from jaxspec.experiments._config import ConfigError
from jaxspec.experiments._discover import discover, experiments_root, load_experiment
from jaxspec.experiments._report import markdown_table
from jaxspec.experiments._runner import run_experiment


def _cmd_list(args: argparse.Namespace) -> int:
    found = discover(args.experiments_dir)
    if not found:
        print(f"No experiments found in {experiments_root(args.experiments_dir)}.")
        return 1
    width = max(len(n) for n in found)
    for name, folder in found.items():
        print(f"{name:<{width}}  {load_experiment(folder).description}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    try:
        result = run_experiment(
            args.target,
            overrides=args.set,
            quick=args.quick,
            results_dir=args.results_dir,
            max_batch=args.max_batch,
            experiments_dir=args.experiments_dir,
            progress=not args.no_progress,
        )
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"{result.report_path}  ({result.num_run} computed, {result.num_resumed} resumed, "
        f"{result.wall_s:.1f} s)"
    )
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    found = discover(args.experiments_dir)
    results_dir = Path(args.results_dir)
    rows, failed = [], []
    for name in found:
        start = time.perf_counter()
        print(f"== {name} ({'quick' if args.quick else 'full'})", flush=True)
        try:
            result = run_experiment(
                name,
                quick=args.quick,
                results_dir=results_dir,
                max_batch=args.max_batch,
                experiments_dir=args.experiments_dir,
                progress=not args.no_progress,
            )
            link = os.path.relpath(result.report_path, results_dir)
            status = "ok"
            print(f"   {result.report_path} ({result.wall_s:.1f} s)", flush=True)
        except Exception:  # noqa: BLE001 - report every failure, run the other experiments
            traceback.print_exc()
            failed.append(name)
            link, status = "", "FAILED (see log)"
        rows.append(
            {
                "experiment": name,
                "description": load_experiment(found[name]).description,
                "status": status,
                "report": f"[report]({link})" if link else "",
                "wall time (s)": f"{time.perf_counter() - start:.1f}",
            }
        )
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    index = "\n".join(
        [
            "# jaxspec reproductions",
            "",
            f"{'Quick' if args.quick else 'Full'} size, written {now}.",
            "",
            markdown_table(rows),
            "",
        ]
    )
    atomic_write_text(results_dir / "index.md", index)
    print(f"{results_dir / 'index.md'}: {len(rows) - len(failed)} ok, {len(failed)} failed")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``jaxspec`` command."""
    parser = argparse.ArgumentParser(
        prog="jaxspec", description="Run and reproduce jaxspec experiments."
    )
    parser.add_argument(
        "--experiments-dir", default=None, help="folder of experiments (default: ./experiments)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list experiments and their one-line descriptions")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--quick", action="store_true", help="small sizes for 2 CPU cores")
        p.add_argument("--results-dir", default="results")
        p.add_argument("--max-batch", type=int, default=None, help="points per compiled call")
        p.add_argument("--no-progress", action="store_true")

    run = sub.add_parser("run", help="run one experiment (name or config file)")
    run.add_argument("target", help="experiment name or path to a config .toml")
    run.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key"
    )
    common(run)
    reproduce = sub.add_parser("reproduce", help="run every experiment and write an index")
    common(reproduce)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``jaxspec`` console script."""
    args = build_parser().parse_args(argv)
    handlers = {"list": _cmd_list, "run": _cmd_run, "reproduce": _cmd_reproduce}
    return handlers[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
