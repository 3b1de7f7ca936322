"""`make bench`: every benchmark in bench/, one after the other, then one table of every figure with its target.

Each benchmark starts its own production-like deployment on loopback (PostgreSQL and Redis at 127.0.0.1, the web
as `manage.py serve --processes`, Celery workers and beats) and tears it down; see bench/README.md. The table is
also saved, with every benchmark's full results, as bench/results/all-<UTC timestamp>.json.

    python -m bench                      # everything (about 6 minutes on 2 cores)
    python -m bench --only rest engine   # some of them
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from bench import chat_ws, engine, rest, schedules, trigger
from bench.common import (
    BenchError,
    Figure,
    format_table,
    install_sigterm_handler,
    machine_info,
    raise_open_files_limit,
    utc_now,
    write_results,
)


def run_chat(args: argparse.Namespace) -> dict[str, Any]:
    raise_open_files_limit(4 * (max(*args.sockets, args.idle_sockets) + 256))
    return asyncio.run(chat_ws.benchmark(args))


# name -> (module, its arguments in this run, how to run it)
BENCHMARKS: dict[str, tuple[Any, list[str], Any]] = {
    "rest": (rest, [], rest.benchmark),
    "engine": (engine, [], engine.benchmark),
    "trigger": (trigger, [], trigger.benchmark),
    "schedules": (schedules, [], schedules.benchmark),
    "chat_ws": (chat_ws, ["--production", "--sockets", "100", "500"], run_chat),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these benchmarks")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks, print the table, save the JSON; 1 if any benchmark's run failed."""
    args = parse_args(argv)
    install_sigterm_handler()
    names = args.only or list(BENCHMARKS)
    figures: list[Figure] = []
    results: dict[str, Any] = {}
    failures: dict[str, str] = {}
    started = time.monotonic()
    for name in names:
        module, module_argv, run = BENCHMARKS[name]
        module_args = module.parse_args(module_argv)
        print(f"\n=== {name}", flush=True)
        began = time.monotonic()
        try:
            outcome = run(module_args)
        except BenchError as exc:
            print(f"{name} failed: {exc}", file=sys.stderr, flush=True)
            failures[name] = str(exc)[:2000]
            continue
        outcome["wall_time_s"] = round(time.monotonic() - began, 1)
        section = module.figures_of(outcome)
        print(format_table(section), flush=True)
        figures += [Figure(f"{name}: {figure.name}", *figure_fields(figure)) for figure in section]
        results[name] = {"config": vars(module_args), **outcome}
    print("\n=== all figures")
    print(format_table(figures))
    misses = [figure.name for figure in figures if figure.verdict == "miss"]
    print(f"\n{sum(1 for f in figures if f.verdict == 'pass')} targets met, {len(misses)} missed", end="")
    print(f", {len(failures)} benchmark(s) failed: {', '.join(failures)}" if failures else "")
    path = write_results(
        "all",
        {
            "benchmark": "all",
            "finished_at": utc_now(),
            "machine": machine_info(),
            "wall_time_s": round(time.monotonic() - started, 1),
            "figures": [figure.as_dict() for figure in figures],
            "failures": failures,
            **results,
        },
    )
    print(f"saved {path.relative_to(path.parents[2])}")
    return 1 if failures else 0


def figure_fields(figure: Figure) -> tuple:
    return figure.value, figure.unit, figure.target, figure.comparison


if __name__ == "__main__":
    sys.exit(main())
