"""1,000 schedules due in the same minute, through PostgreSQL, Redis, two Celery workers and two Celery beats.

Issue target: all 1,000 executions of that minute started within 10 s of the minute, none twice. Two beats run on
purpose: each sends the schedule dispatcher every SCHEDULE_DISPATCH_INTERVAL_SECONDS, so two dispatchers race for the
same due schedules, and the row locks and the firing claim in the database must let exactly one of them start each
firing. The figures are printed next to their targets; a miss still exits 0.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import (
    BenchError,
    Figure,
    ProductionDeployment,
    WorkerConfig,
    add_worker_arguments,
    cpu_usage,
    install_sigterm_handler,
    run_and_report,
    summarize,
)
from bench.trigger import node

START_TARGET_S = 10.0  # every execution of the minute started within this many seconds of it (issue)
REDIS_DB = 13  # the schedules benchmark's own Redis database; emptied at start and end
USER_EMAIL = "bench-schedules@example.com"
# Arming starts no later than this second of a minute, so that every schedule gets the same next minute.
ARM_BY_SECOND = 30
# A worker's log line for one dispatcher run (Celery logs every task's result at INFO, ignore_result or not).
DISPATCH_LINE = re.compile(
    r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): INFO/[\w-]+\] "
    r"Task executions\.dispatch_due_schedules\[[^\]]+\] succeeded in ([\d.e-]+)s: (\{.*\})"
)

WORKFLOW = {
    "nodes": [
        node("start", "trigger", trigger_type="schedule"),
        node("shape", "transform", output={"i": "{{ input.i }}"}),
        node("out", "output", value="tick {{ nodes.shape.i }}"),
    ],
    "edges": [{"source": "start", "target": "shape"}, {"source": "shape", "target": "out"}],
}

# Run by `manage.py shell -c` under the deployment's settings: the services the API uses, without 3,000 requests.
# Created disabled, then armed together, so that none fires in a minute before the observed one.
CREATE_SCHEDULES = """
import json
from accounts.models import User
from agents.services import agent_create
from executions.schedules import schedule_create
from workflows.services import workflow_save

user = User.objects.get(email={email!r})
graph = json.loads({graph!r})
for index in range({count}):
    agent = agent_create(user=user, fields={{"name": f"Bench schedule {{index}}"}})
    workflow_save(agent=agent, nodes=graph["nodes"], edges=graph["edges"])
    schedule_create(agent=agent, cron="* * * * *", timezone_name="UTC", enabled=False, input={{"i": index}})
print("created", {count}, "schedules")
"""
ARM_SCHEDULES = """
from executions.models import Schedule
from executions.schedules import schedule_update

for schedule in Schedule.objects.filter(user__email={email!r}, enabled=False):
    schedule_update(schedule=schedule, fields={{"enabled": True}})
print("armed")
"""


def create_schedules(deployment: ProductionDeployment, count: int) -> float:
    """A user over HTTP, then `count` agents, workflows and `* * * * *` schedules through the services; seconds."""
    deployment.server.register_user(USER_EMAIL)
    began = time.monotonic()
    code = CREATE_SCHEDULES.format(email=USER_EMAIL, graph=json.dumps(WORKFLOW), count=count)
    deployment.shell(code, timeout=60 + count * 0.5)
    return time.monotonic() - began


def arm_schedules(deployment: ProductionDeployment, count: int) -> tuple[datetime, float]:
    """Enable every schedule early in a minute (through `schedule_update`); (their common next minute, seconds)."""
    if datetime.now(UTC).second > ARM_BY_SECOND:
        time.sleep(next_minute(datetime.now(UTC)).timestamp() - time.time() + 0.5)
    began = time.monotonic()
    deployment.shell(ARM_SCHEDULES.format(email=USER_EMAIL), timeout=60)
    armed_s = time.monotonic() - began
    with deployment.services.connect() as conn:
        armed, first, last = conn.execute(
            "SELECT count(*), min(next_run_at), max(next_run_at) FROM executions_schedule WHERE enabled"
        ).fetchone()
    if armed != count or first != last or first.timestamp() < time.time() + 2:
        raise BenchError(f"arming gave {armed} schedules due from {first} to {last}: not one future minute")
    return first, armed_s


def next_minute(after: datetime) -> datetime:
    """The first whole minute strictly after `after`."""
    return after.replace(second=0, microsecond=0) + timedelta(minutes=1)


def dispatch_runs(deployment: ProductionDeployment, offsets: list[int], minute: datetime) -> list[dict[str, Any]]:
    """Every dispatcher run that found schedules due since `offsets`: which worker, when (s after `minute`), counts."""
    runs = []
    for worker, offset in zip(deployment.workers, offsets, strict=True):
        for line in worker.log_text()[offset:].splitlines():
            match = DISPATCH_LINE.match(line)
            if not match:
                continue
            counts = ast.literal_eval(match.group(3))
            if not counts.get("due"):
                continue
            # Celery logs local time; a naive datetime's timestamp() reads it in the same zone.
            ended = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() - minute.timestamp()
            runtime = float(match.group(2))
            runs.append(
                {"worker": worker.name, "began_s": round(ended - runtime, 3), "runtime_s": round(runtime, 3), **counts}
            )
    return sorted(runs, key=lambda run: run["began_s"])


def minute_rows(conn: Any, minute: datetime) -> list[tuple]:
    """(schedule, agent, firing created, execution created, started, completed, status) of the minute's firings."""
    return conn.execute(
        "SELECT f.schedule_id, e.agent_id, f.created_at, e.created_at, e.started_at, e.completed_at, e.status"
        " FROM executions_schedulefiring f JOIN executions_execution e ON e.id = f.execution_id"
        " WHERE f.fire_time = %s",
        (minute,),
    ).fetchall()


def queue_idle(deployment: ProductionDeployment) -> bool:
    """No message waiting in the Celery queue and none delivered but unacknowledged."""
    client = deployment.services.redis()
    try:
        return client.llen("celery") == 0 and client.hlen("unacked") == 0
    finally:
        client.close()


def observe_minute(deployment: ProductionDeployment, minute: datetime, count: int, offsets: list[int]) -> dict:
    """From just before `minute` until every execution of it completed and the queue is idle."""
    wait = minute.timestamp() - time.time() - 1
    if wait > 0:
        time.sleep(wait)
    before = deployment.cpu_snapshot()
    deadline = minute.timestamp() + 55  # the next minute would fire again: everything must be over by then
    with deployment.services.connect() as conn:
        done_at = None
        while time.time() < deadline:
            # Cheap checks only: the benchmark shares the cores with what it measures. Times come from the rows.
            finished = conn.execute(
                "SELECT count(*) FROM executions_schedulefiring f JOIN executions_execution e ON e.id = f.execution_id"
                " WHERE f.fire_time = %s AND e.status IN ('completed', 'failed', 'cancelled')",
                (minute,),
            ).fetchone()[0]
            if finished >= count and queue_idle(deployment):
                done_at = time.time()
                break
            time.sleep(0.5)
        # Read before the beats stop: a stopped process group has no CPU time left to read.
        cpu = cpu_usage(before, deployment.cpu_snapshot(), count)
        # No beat may send a dispatcher for the next minute into the figures.
        for beat_process in deployment.beats:
            beat_process.stop()
        settle = time.monotonic() + 20
        while not queue_idle(deployment) and time.monotonic() < settle:
            time.sleep(0.25)
        rows = minute_rows(conn, minute)
        twice = conn.execute(
            "SELECT count(*) FROM (SELECT agent_id FROM executions_execution WHERE trigger = 'schedule'"
            " AND created_at >= %s AND created_at < %s GROUP BY agent_id HAVING count(*) > 1) AS doubled",
            (minute, minute + timedelta(minutes=1)),
        ).fetchone()[0]
        unclaimed = conn.execute(
            "SELECT count(*) FROM executions_execution e WHERE e.trigger = 'schedule' AND NOT EXISTS"
            " (SELECT 1 FROM executions_schedulefiring f WHERE f.execution_id = e.id)"
        ).fetchone()[0]
        double_firings = conn.execute(
            "SELECT count(*) FROM (SELECT schedule_id FROM executions_schedulefiring WHERE fire_time = %s"
            " GROUP BY schedule_id HAVING count(*) > 1) AS doubled",
            (minute,),
        ).fetchone()[0]
    base = minute.timestamp()

    def after_minute(index: int) -> list[float]:
        return [row[index].timestamp() - base for row in rows if row[index] is not None]

    runs = dispatch_runs(deployment, offsets, minute)
    return {
        "minute": minute.isoformat(),
        "schedules": count,
        "executions": len(rows),
        "started": sum(row[4] is not None for row in rows),
        "completed": sum(row[6] == "completed" for row in rows),
        "all_done_after_s": round(done_at - base, 3) if done_at else None,
        "dispatch_runs": runs,
        "agents_run_twice": twice,
        "double_firings": double_firings,
        "unclaimed_schedule_executions": unclaimed,
        "created_after_minute_s": {**summarize(after_minute(3)), "min": round(min(after_minute(3), default=0), 3)},
        "started_after_minute_s": summarize(after_minute(4)),
        "completed_after_minute_s": summarize(after_minute(5)),
        "cpu": cpu,
    }


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Start the deployment with its beats, create the schedules, and watch the next whole minute."""
    workers = WorkerConfig(workers=args.workers, concurrency=args.concurrency, pool=args.pool)
    with ProductionDeployment(
        redis_db=REDIS_DB, workers=workers, beats=args.beats, worker_loglevel=args.worker_loglevel
    ) as deployment:
        server, database = deployment.server, deployment.services.database
        print(f"web on {server.base_url}; workers {workers.describe()}; {args.beats} beats; database {database}")
        try:
            print(f"creating {args.schedules} agents with `* * * * *` schedules ...", flush=True)
            created_s = create_schedules(deployment, args.schedules)
            offsets = [len(worker.log_text()) for worker in deployment.workers]
            minute, armed_s = arm_schedules(deployment, args.schedules)
            print(f"created in {created_s:.1f} s, armed in {armed_s:.1f} s; waiting for {minute:%H:%M:%S} UTC ...")
            result = observe_minute(deployment, minute, args.schedules, offsets)
        except BenchError as exc:
            raise BenchError(f"{exc}\nlogs (tail):\n{deployment.logs_tail()}") from None
    result["create_s"] = round(created_s, 1)
    result["arm_s"] = round(armed_s, 1)
    if result["executions"] == 0:
        raise BenchError(f"no execution ran for {minute:%H:%M} (dispatcher runs: {result['dispatch_runs']})")
    return result


def figures_of(results: dict[str, Any]) -> list[Figure]:
    """The printed table's rows."""
    started = results["started_after_minute_s"]
    created = results["created_after_minute_s"]
    count = results["schedules"]
    rows = [
        Figure(f"executions of the minute (of {count:,} schedules)", results["executions"], "", count, "=="),
        Figure("executions started", results["started"], "", count, "=="),
        Figure("started after the minute: p50", started.get("p50", float("nan")), "s"),
        Figure("started after the minute: p99", started.get("p99", float("nan")), "s"),
        Figure("started after the minute: max", started.get("max", float("nan")), "s", START_TARGET_S, "<="),
        Figure("created (firing claimed) after the minute: first", created.get("min", float("nan")), "s"),
        Figure("created (firing claimed) after the minute: max", created.get("max", float("nan")), "s"),
        Figure("completed after the minute: max", results["completed_after_minute_s"].get("max", float("nan")), "s"),
    ]
    runs = results["dispatch_runs"]
    rows.append(Figure("dispatcher runs that found schedules due", len(runs)))
    for run in runs:
        rows.append(
            Figure(
                f"  {run['worker']} at +{run['began_s']:.2f} s: fired / claimed elsewhere",
                f"{run.get('fired', 0)} / {run.get('claimed_elsewhere', 0)}",
            )
        )
        rows.append(Figure(f"  {run['worker']} at +{run['began_s']:.2f} s: run time", run["runtime_s"], "s"))
    rows += [
        Figure("agents run twice in the minute", results["agents_run_twice"], "", 0, "=="),
        Figure("schedule executions without a firing claim", results["unclaimed_schedule_executions"], "", 0, "=="),
        Figure("firing times claimed twice", results["double_firings"], "", 0, "=="),
        Figure("machine busy during the minute", round(results["cpu"]["machine_busy_fraction"] * 100, 1), "%"),
        Figure("creating the schedules", results["create_s"], "s"),
        Figure("arming them (schedule_update, enabled)", results["arm_s"], "s"),
        Figure("total wall time", results["wall_time_s"], "s"),
    ]
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.schedules", description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedules", type=int, default=1000, help="agents with a `* * * * *` schedule")
    parser.add_argument("--beats", type=int, default=2, help="Celery beat processes (2 race two dispatchers)")
    add_worker_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run, print the table, save the JSON; 0 unless the run itself failed."""
    args = parse_args(argv)
    install_sigterm_handler()
    return run_and_report(
        "schedules",
        lambda: benchmark(args),
        figures_of,
        config=config_of(args),
        title=lambda results: (
            f"schedules: {args.schedules:,} due at {results['minute']}, {args.beats} beats,"
            f" {args.workers} workers x {args.pool}/{args.concurrency}"
        ),
    )


def config_of(args: argparse.Namespace) -> dict[str, Any]:
    """The run's configuration, as saved."""
    return {
        "mode": "production (PostgreSQL + Redis, web processes, Celery workers and beats)",
        "schedules": args.schedules,
        "beats": args.beats,
        "workers": args.workers,
        "pool": args.pool,
        "concurrency": args.concurrency,
        "worker_loglevel": args.worker_loglevel,
        "workflow": WORKFLOW,
    }


if __name__ == "__main__":
    sys.exit(main())
