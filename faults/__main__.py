"""Run the fault scenarios: `python -m faults` (all) or `python -m faults <name> [<name> ...]`.

Prints one table, scenario -> PASS/FAIL with the reason, and exits non-zero if any scenario failed. The scenarios
start their own PostgreSQL cluster and Redis server on free loopback ports (never the machine's shared ones) and
stop everything they started on every way out.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from . import hanging_webhook, postgres_restart, redis_restart, worker_killed
from .infra import FaultError, Services, Verdict

SCENARIOS: dict[str, Callable[[Services, Verdict], None]] = {
    "worker-killed": worker_killed.run,
    "redis-restart": redis_restart.run,
    "postgres-restart": postgres_restart.run,
    "hanging-webhook": hanging_webhook.run,
}


def run_one(name: str, services: Services) -> Verdict:
    """Run one scenario; an exception (a set-up or a hard check that failed) becomes a failure of its verdict."""
    verdict = Verdict(name)
    print(f"--- {name} ...", flush=True)
    try:
        SCENARIOS[name](services, verdict)
    except FaultError as exc:
        verdict.failures.append(str(exc).split("\n", 1)[0][:500])
        detail = str(exc).split("\n", 1)[1:] or [""]
        if detail[0]:
            print(detail[0][-4000:], flush=True)
    except Exception as exc:
        verdict.failures.append(f"crashed: {exc!r}"[:500])
        traceback.print_exc()
    seconds = time.monotonic() - verdict.started
    verdict.figure("took", seconds)
    state = "PASS" if verdict.passed else "FAIL"
    print(f"--- {name}: {state} in {seconds:.0f} s; {verdict.summary()}", flush=True)
    for failure in verdict.failures:
        print(f"    {failure}", flush=True)
    return verdict


def table(verdicts: list[Verdict]) -> str:
    """scenario | verdict | reason: the failures, or the figures of a pass."""
    rows = [("scenario", "verdict", "reason")]
    for verdict in verdicts:
        reason = "; ".join(verdict.failures) if verdict.failures else verdict.summary()
        rows.append((verdict.name, "PASS" if verdict.passed else "FAIL", reason))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    lines = []
    for index, (name, state, reason) in enumerate(rows):
        lines.append(f"{name.ljust(widths[0])}  {state.ljust(widths[1])}  {reason}")
        if index == 0:
            lines.append(f"{'-' * widths[0]}  {'-' * widths[1]}  {'-' * 6}")
    return "\n".join(lines)


def _raise_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run the named scenarios (all by default) against one throwaway PostgreSQL and Redis; 0 if all passed."""
    parser = argparse.ArgumentParser(prog="python -m faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="scenario", help=f"any of: {', '.join(SCENARIOS)}")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    names = args.names or list(SCENARIOS)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)  # so that the clean-up below runs
    started = time.monotonic()
    verdicts: list[Verdict] = []
    try:
        with Services() as services:
            print(
                f"PostgreSQL on 127.0.0.1:{services.postgres.port}, Redis on 127.0.0.1:{services.redis.port}",
                flush=True,
            )
            for name in names:
                verdicts.append(run_one(name, services))
    except FaultError as exc:
        print(f"faults: could not start the services: {exc}", file=sys.stderr)
        return 2
    print()
    print(table(verdicts))
    print(f"\n{sum(v.passed for v in verdicts)} of {len(verdicts)} passed in {time.monotonic() - started:.0f} s")
    return 0 if all(verdict.passed for verdict in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
