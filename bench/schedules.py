"""1,000 schedules due in the same minute, through PostgreSQL, Redis, two Celery workers and two Celery beats.

Issue target: all 1,000 executions of that minute started within 10 s of the minute, none twice. Two beats run on
purpose: each sends every due firing, and the firing claim in the database must let exactly one of them run. The
figures are printed next to their targets; a miss still exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
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
    format_table,
    install_sigterm_handler,
    machine_info,
    summarize,
    utc_now,
    write_results,
)
from bench.trigger import node

START_TARGET_S = 10.0  # every execution of the minute started within this many seconds of it (issue)
REDIS_DB = 13  # the schedules benchmark's own Redis database; emptied at start and end
USER_EMAIL = "bench-schedules@example.com"
SEND_MARK = "Scheduler: Sending due task schedule:"
SEND_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): INFO/\w+\] Scheduler: Sending due task schedule:")

WORKFLOW = {
    "nodes": [
        node("start", "trigger", trigger_type="schedule"),
        node("shape", "transform", output={"i": "{{ input.i }}"}),
        node("out", "output", value="tick {{ nodes.shape.i }}"),
    ],
    "edges": [{"source": "start", "target": "shape"}, {"source": "shape", "target": "out"}],
}

# Run by `manage.py shell -c` under the deployment's settings: the services the API uses, without 3,000 requests.
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
    schedule_create(agent=agent, cron="* * * * *", timezone_name="UTC", input={{"i": index}})
print("created", {count}, "schedules")
"""


def create_schedules(deployment: ProductionDeployment, count: int) -> float:
    """A user over HTTP, then `count` agents, workflows and `* * * * *` schedules through the services; seconds."""
    deployment.server.register_user(USER_EMAIL)
    began = time.monotonic()
    code = CREATE_SCHEDULES.format(email=USER_EMAIL, graph=json.dumps(WORKFLOW), count=count)
    deployment.shell(code, timeout=60 + count * 0.5)
    return time.monotonic() - began


def wait_beats_reloaded(deployment: ProductionDeployment, offsets: list[int], timeout: float) -> None:
    """Wait until every beat logged `Schedule changed` after `offsets` (its log length before the creation)."""
    deadline = time.monotonic() + timeout
    for beat_process, offset in zip(deployment.beats, offsets, strict=True):
        while "DatabaseScheduler: Schedule changed." not in beat_process.log_text()[offset:]:
            if time.monotonic() > deadline:
                log = beat_process.log_tail()
                raise BenchError(f"{beat_process.name} did not notice the new schedules; log:\n{log}")
            time.sleep(0.2)


def next_minute(after: datetime) -> datetime:
    """The first whole minute strictly after `after`."""
    return after.replace(second=0, microsecond=0) + timedelta(minutes=1)


def beat_sends(deployment: ProductionDeployment, offsets: list[int], minute: datetime) -> list[dict[str, Any]]:
    """Per beat: how many `schedule:` entries it sent since `offsets`, and when (seconds after `minute`)."""
    result = []
    for beat_process, offset in zip(deployment.beats, offsets, strict=True):
        times = []
        for line in beat_process.log_text()[offset:].splitlines():
            match = SEND_LINE.match(line)
            if match:
                # Celery logs local time; a naive datetime's timestamp() reads it in the same zone.
                logged = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                times.append(logged - minute.timestamp())
        result.append(
            {
                "beat": beat_process.name,
                "sent": len(times),
                "first_s": round(min(times), 3) if times else None,
                "last_s": round(max(times), 3) if times else None,
            }
        )
    return result


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
    """From just before `minute` until every execution of it completed, both beats sent, and the queue is idle."""
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
            sent = [
                beat.log_text()[offset:].count(SEND_MARK)
                for beat, offset in zip(deployment.beats, offsets, strict=True)
            ]
            if finished >= count and all(number >= count for number in sent) and queue_idle(deployment):
                done_at = time.time()
                break
            time.sleep(0.5)
        # No beat may send the next minute's firings into the figures.
        for beat_process in deployment.beats:
            beat_process.stop()
        cpu = cpu_usage(before, deployment.cpu_snapshot(), count)
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

    sends = beat_sends(deployment, offsets, minute)
    return {
        "minute": minute.isoformat(),
        "schedules": count,
        "executions": len(rows),
        "started": sum(row[4] is not None for row in rows),
        "completed": sum(row[6] == "completed" for row in rows),
        "all_done_after_s": round(done_at - base, 3) if done_at else None,
        "beat_sends": sends,
        "fire_tasks_sent": sum(beat["sent"] for beat in sends),
        "agents_run_twice": twice,
        "double_firings": double_firings,
        "unclaimed_schedule_executions": unclaimed,
        "created_after_minute_s": summarize(after_minute(3)),
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
            offsets = [len(beat_process.log_text()) for beat_process in deployment.beats]
            print(f"creating {args.schedules} agents with `* * * * *` schedules ...", flush=True)
            created_s = create_schedules(deployment, args.schedules)
            wait_beats_reloaded(deployment, offsets, timeout=30)
            minute = next_minute(datetime.now(UTC) + timedelta(seconds=3))
            print(f"created in {created_s:.1f} s; waiting for {minute:%H:%M:%S} UTC ...", flush=True)
            result = observe_minute(deployment, minute, args.schedules, offsets)
        except BenchError as exc:
            raise BenchError(f"{exc}\nlogs (tail):\n{deployment.logs_tail()}") from None
    result["create_s"] = round(created_s, 1)
    if result["executions"] == 0:
        raise BenchError(f"no execution ran for {minute:%H:%M} (beats sent {result['beat_sends']})")
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
        Figure("created (firing claimed) after the minute: max", created.get("max", float("nan")), "s"),
        Figure("completed after the minute: max", results["completed_after_minute_s"].get("max", float("nan")), "s"),
    ]
    for beat in results["beat_sends"]:
        rows.append(Figure(f"{beat['beat']}: firings sent", beat["sent"]))
        if beat["last_s"] is not None:
            rows.append(Figure(f"{beat['beat']}: last firing sent after the minute", beat["last_s"], "s"))
    rows += [
        Figure("agents run twice in the minute", results["agents_run_twice"], "", 0, "=="),
        Figure("schedule executions without a firing claim", results["unclaimed_schedule_executions"], "", 0, "=="),
        Figure("firing times claimed twice", results["double_firings"], "", 0, "=="),
        Figure("machine busy during the minute", round(results["cpu"]["machine_busy_fraction"] * 100, 1), "%"),
        Figure("creating the schedules", results["create_s"], "s"),
        Figure("total wall time", results["wall_time_s"], "s"),
    ]
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.schedules", description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedules", type=int, default=1000, help="agents with a `* * * * *` schedule")
    parser.add_argument("--beats", type=int, default=2, help="Celery beat processes (2 proves no double firing)")
    add_worker_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run, print the table, save the JSON; 0 unless the run itself failed."""
    args = parse_args(argv)
    install_sigterm_handler()
    started = time.monotonic()
    config = {
        "mode": "production (PostgreSQL + Redis, daphne, Celery workers and beats)",
        "schedules": args.schedules,
        "beats": args.beats,
        "workers": args.workers,
        "pool": args.pool,
        "concurrency": args.concurrency,
        "worker_loglevel": args.worker_loglevel,
        "workflow": WORKFLOW,
    }
    try:
        results = benchmark(args)
    except BenchError as exc:
        print(f"schedules benchmark failed: {exc}", file=sys.stderr)
        return 1
    results["wall_time_s"] = round(time.monotonic() - started, 1)
    figures = figures_of(results)
    print()
    print(
        f"schedules: {args.schedules:,} due at {results['minute']}, {args.beats} beats,"
        f" {args.workers} workers x {args.pool}/{args.concurrency}"
    )
    print(format_table(figures))
    path = write_results(
        "schedules",
        {
            "benchmark": "schedules",
            "finished_at": utc_now(),
            "config": config,
            "machine": machine_info(),
            "figures": [figure.as_dict() for figure in figures],
            **results,
        },
    )
    with contextlib.suppress(ValueError):
        path = path.relative_to(path.parents[2])
    print(f"\nsaved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
