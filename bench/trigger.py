"""External triggers through PostgreSQL, Redis and two Celery workers: endpoint latency and executions per second.

Issue target: trigger -> completed throughput of a 3-node workflow without LLM of at least 150 executions per
second on a 2-core machine, with p50/p99 from trigger to completion, and the latency of POST /api/trigger/:agentId
at 50 concurrent callers. The figures are printed next to their targets; a miss still exits 0.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bench.common import (
    LOOPBACK,
    BenchError,
    Figure,
    ProductionDeployment,
    WorkerConfig,
    add_worker_arguments,
    api,
    cpu_usage,
    install_sigterm_handler,
    raise_open_files_limit,
    run_and_report,
    summarize,
)

THROUGHPUT_TARGET = 150.0  # completed executions per second (issue)
REDIS_DB = 14  # the trigger benchmark's own Redis database (chat_ws uses 15, CI 0); emptied at start and end
FINISHED = ("completed", "failed", "cancelled")
REQUEST_TIMEOUT = 30.0  # seconds one trigger call may take


def node(node_id: str, node_type: str, **data: Any) -> dict[str, Any]:
    """One workflow node at the origin."""
    return {"id": node_id, "type": node_type, "position": {"x": 0, "y": 0}, "data": data}


# trigger -> transform -> output, nothing but the engine's own node types.
WORKFLOW = {
    "nodes": [
        node("start", "trigger", trigger_type="api"),
        node("shape", "transform", output={"n": "{{ input.n }}", "batch": "{{ input.batch }}"}),
        node("out", "output", value="done {{ nodes.shape.n }}"),
    ],
    "edges": [{"source": "start", "target": "shape"}, {"source": "shape", "target": "out"}],
}


# --- Callers -----------------------------------------------------------------------------------------


@dataclass
class TriggerCall:
    """One POST /api/trigger/:agentId as the caller saw it."""

    sent_at: float  # wall clock (time.time), comparable with the database's timestamps
    latency_s: float
    status: int
    execution_id: str | None
    error: str = ""


class Caller:
    """One keep-alive HTTP/1.1 connection to the server (a thin stdlib client: little CPU of its own)."""

    def __init__(self, port: int, api_key: str):
        self.port = port
        self.headers = {"Content-Type": "application/json", "Accept": "application/json", "X-API-Key": api_key}
        self.connection: http.client.HTTPConnection | None = None

    def post(self, path: str, body: dict[str, Any]) -> TriggerCall:
        """POST once (never retried: a retry could start a second execution)."""
        data = json.dumps(body).encode()
        if self.connection is None:
            self.connection = http.client.HTTPConnection(LOOPBACK, self.port, timeout=REQUEST_TIMEOUT)
        sent_at, began = time.time(), time.perf_counter()
        try:
            self.connection.request("POST", path, body=data, headers=self.headers)
            response = self.connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return TriggerCall(sent_at, time.perf_counter() - began, 0, None, repr(exc))
        latency = time.perf_counter() - began
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = {}
        execution_id = payload.get("execution_id") if isinstance(payload, dict) else None
        error = "" if response.status == 202 else raw[:300].decode(errors="replace")
        return TriggerCall(sent_at, latency, response.status, execution_id, error)

    def close(self) -> None:
        """Drop the connection (a new one is opened on the next call)."""
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def fire_triggers(port: int, api_key: str, agent_id: str, *, total: int, callers: int, batch: str) -> list[TriggerCall]:
    """`total` triggers from `callers` threads, each with its own connection, all starting together."""
    path = f"/api/trigger/{agent_id}"
    lock = threading.Lock()
    next_index = iter(range(total))
    results: list[TriggerCall | None] = [None] * total
    start = threading.Barrier(callers + 1)

    def run() -> None:
        caller = Caller(port, api_key)
        try:
            start.wait()
            while True:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                results[index] = caller.post(path, {"input": {"n": index, "batch": batch}})
        finally:
            caller.close()

    threads = [threading.Thread(target=run, name=f"caller-{i}", daemon=True) for i in range(callers)]
    for thread in threads:
        thread.start()
    start.wait()
    deadline = time.monotonic() + 60 + total * REQUEST_TIMEOUT / callers
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        raise BenchError(f"{batch}: the callers did not finish in time")
    calls = [call for call in results if call is not None]
    failed = [call for call in calls if call.status != 202 or not call.execution_id]
    if len(calls) != total or failed:
        first = failed[0] if failed else None
        raise BenchError(
            f"{batch}: {len(failed)} of {total} triggers failed"
            + (f", first: {first.status} {first.error}" if first else "")
        )
    return calls


# --- Reading the executions back -------------------------------------------------------------------------


def wait_finished(
    deployment: ProductionDeployment, ids: list[str], *, timeout: float, poll: float = 0.25
) -> list[dict[str, Any]]:
    """Poll PostgreSQL every `poll` s until every execution in `ids` has ended; their rows (id, status, times,
    error)."""
    deadline = time.monotonic() + timeout
    with deployment.services.connect() as conn:
        done = 0
        while time.monotonic() < deadline:
            done = conn.execute(
                "SELECT count(*) FROM executions_execution WHERE id = ANY(%s) AND status = ANY(%s)",
                (ids, list(FINISHED)),
            ).fetchone()[0]
            if done == len(ids):
                break
            time.sleep(poll)  # the times come from the rows: polling only has to notice the end
        else:
            raise BenchError(f"only {done} of {len(ids)} executions ended within {timeout:.0f} s")
        rows = conn.execute(
            "SELECT id, status, created_at, started_at, completed_at, error FROM executions_execution"
            " WHERE id = ANY(%s)",
            (ids,),
        ).fetchall()
    names = ("id", "status", "created_at", "started_at", "completed_at", "error")
    return [dict(zip(names, row, strict=True)) for row in rows]


def seconds(moment: datetime) -> float:
    """A database timestamp as a Unix time."""
    return moment.astimezone(UTC).timestamp()


def execution_figures(calls: list[TriggerCall], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Throughput and trigger-to-completion latencies of one batch, from the callers' clocks and the rows."""
    first_sent = min(call.sent_at for call in calls)
    last_answer = max(call.sent_at + call.latency_s for call in calls)
    completed = [row for row in rows if row["status"] == "completed"]
    last_completion = max(seconds(row["completed_at"]) for row in rows)
    window = last_completion - first_sent
    return {
        "executions": len(rows),
        "completed": len(completed),
        "not_completed": len(rows) - len(completed),
        "first_errors": sorted({row["error"] for row in rows if row["status"] != "completed"})[:3],
        "submit_s": round(last_answer - first_sent, 3),
        "submit_per_second": round(len(calls) / (last_answer - first_sent), 1),
        "first_trigger_to_last_completion_s": round(window, 3),
        "executions_per_second": round(len(completed) / window, 1),
        # Per execution, from the rows: trigger accepted (created) -> claimed by a worker -> completed.
        "trigger_to_completion_ms": summarize(
            [(seconds(r["completed_at"]) - seconds(r["created_at"])) * 1000 for r in completed], 1
        ),
        "queue_wait_ms": summarize(
            [(seconds(r["started_at"]) - seconds(r["created_at"])) * 1000 for r in completed], 1
        ),
        "run_ms": summarize([(seconds(r["completed_at"]) - seconds(r["started_at"])) * 1000 for r in completed], 1),
    }


# --- Phases ----------------------------------------------------------------------------------------------


@dataclass
class Target:
    """What the triggers go to."""

    port: int
    api_key: str
    agent_id: str


def latency_phase(deployment: ProductionDeployment, target: Target, *, total: int, callers: int) -> dict[str, Any]:
    """`total` triggers with `callers` in flight: the endpoint's latency (workers running meanwhile)."""
    before = deployment.cpu_snapshot()
    calls = fire_triggers(target.port, target.api_key, target.agent_id, total=total, callers=callers, batch="latency")
    cpu = cpu_usage(before, deployment.cpu_snapshot(), total)
    wall = max(c.sent_at + c.latency_s for c in calls) - min(c.sent_at for c in calls)
    rows = wait_finished(deployment, [c.execution_id for c in calls], timeout=120 + total / 5)
    return {
        "triggers": total,
        "callers": callers,
        "wall_s": round(wall, 3),
        "requests_per_second": round(total / wall, 1),
        "latency_ms": summarize([c.latency_s * 1000 for c in calls], 2),
        "cpu_during_calls": cpu,
        "executions": execution_figures(calls, rows),
    }


def throughput_phase(deployment: ProductionDeployment, target: Target, *, total: int, callers: int) -> dict[str, Any]:
    """`total` triggers as fast as `callers` can send them, until the last one completed: executions per second."""
    before = deployment.cpu_snapshot()
    calls = fire_triggers(
        target.port, target.api_key, target.agent_id, total=total, callers=callers, batch="throughput"
    )
    rows = wait_finished(deployment, [c.execution_id for c in calls], timeout=120 + total / 5)
    result = execution_figures(calls, rows)
    result["callers"] = callers
    result["cpu"] = cpu_usage(before, deployment.cpu_snapshot(), total)
    return result


def backlog_phase(deployment: ProductionDeployment, target: Target, *, total: int, callers: int) -> dict[str, Any]:
    """Workers paused while `total` triggers queue up, then resumed: what the workers alone drain per second."""
    deployment.pause_workers()
    try:
        calls = fire_triggers(
            target.port, target.api_key, target.agent_id, total=total, callers=callers, batch="backlog"
        )
        time.sleep(0.5)
        before = deployment.cpu_snapshot()
        resumed = time.time()
    finally:
        deployment.resume_workers()
    rows = wait_finished(deployment, [c.execution_id for c in calls], timeout=120 + total / 5)
    last = max(seconds(row["completed_at"]) for row in rows)
    completed = sum(row["status"] == "completed" for row in rows)
    return {
        "executions": total,
        "completed": completed,
        "drain_s": round(last - resumed, 3),
        "executions_per_second": round(completed / (last - resumed), 1),
        "cpu": cpu_usage(before, deployment.cpu_snapshot(), total),
    }


# --- The whole benchmark -----------------------------------------------------------------------------------


def set_up(deployment: ProductionDeployment) -> Target:
    """Over HTTP: a user, an agent with the 3-node workflow, and an API key with the `trigger` scope."""
    server = deployment.server
    token = server.register_user("bench-trigger@example.com")
    agent = api("POST", f"{server.base_url}/api/agents", {"name": "Bench trigger"}, token=token, expect=201)
    api("PUT", f"{server.base_url}/api/agents/{agent['id']}/workflow", WORKFLOW, token=token)
    key = api(
        "POST",
        f"{server.base_url}/api/keys",
        {"name": "bench", "scopes": ["trigger"], "agent_ids": [agent["id"]]},
        token=token,
        expect=201,
    )
    return Target(port=server.port, api_key=key["key"], agent_id=agent["id"])


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Start the deployment, set up, warm up, then the latency, throughput and (optionally) backlog phases."""
    workers = WorkerConfig(workers=args.workers, concurrency=args.concurrency, pool=args.pool)
    results: dict[str, Any] = {}
    with ProductionDeployment(
        redis_db=REDIS_DB, workers=workers, worker_loglevel=args.worker_loglevel, web_processes=args.web_processes
    ) as deployment:
        server, database = deployment.server, deployment.services.database
        print(f"web on {server.base_url}; workers {workers.describe()}; database {database}", flush=True)
        try:
            target = set_up(deployment)
            warm = fire_triggers(target.port, target.api_key, target.agent_id, total=100, callers=10, batch="warmup")
            rows = wait_finished(deployment, [c.execution_id for c in warm], timeout=120)
            if any(row["status"] != "completed" for row in rows):
                raise BenchError(
                    f"a warm-up execution did not complete: {next(r for r in rows if r['status'] != 'completed')}"
                )
            print(f"latency: {args.latency_triggers} triggers, {args.callers} callers ...", flush=True)
            results["latency"] = latency_phase(deployment, target, total=args.latency_triggers, callers=args.callers)
            print(f"throughput: {args.executions} triggers, {args.callers} callers ...", flush=True)
            results["throughput"] = throughput_phase(deployment, target, total=args.executions, callers=args.callers)
            if args.backlog:
                print(f"backlog: {args.backlog} triggers queued with the workers paused ...", flush=True)
                results["backlog"] = backlog_phase(deployment, target, total=args.backlog, callers=args.callers)
        except BenchError as exc:
            raise BenchError(f"{exc}\nlogs (tail):\n{deployment.logs_tail()}") from None
    return results


def figures_of(results: dict[str, Any]) -> list[Figure]:
    """The printed table's rows."""
    latency = results["latency"]
    throughput = results["throughput"]
    label = f"trigger at {latency['callers']} callers"
    rows = [
        Figure(f"{label}: latency p50", latency["latency_ms"]["p50"], "ms"),
        Figure(f"{label}: latency p99", latency["latency_ms"]["p99"], "ms"),
        Figure(f"{label}: latency max", latency["latency_ms"]["max"], "ms"),
        Figure(f"{label}: requests per second", latency["requests_per_second"]),
        Figure(
            "trigger -> completed: executions per second",
            throughput["executions_per_second"],
            "",
            THROUGHPUT_TARGET,
            ">=",
        ),
        Figure("trigger -> completed: p50", throughput["trigger_to_completion_ms"]["p50"], "ms"),
        Figure("trigger -> completed: p99", throughput["trigger_to_completion_ms"]["p99"], "ms"),
        Figure("  of which queue wait p50 (created -> started)", throughput["queue_wait_ms"]["p50"], "ms"),
        Figure("  of which run p50 (started -> completed)", throughput["run_ms"]["p50"], "ms"),
        Figure("  triggers accepted per second", throughput["submit_per_second"]),
        Figure(f"executions not completed (of {throughput['executions']:,})", throughput["not_completed"], "", 0, "=="),
    ]
    cpu = throughput["cpu"]
    rows += [
        Figure(f"CPU per execution: {role}", cpu[f"{role}_cpu_ms_per_item"], "ms")
        for role in ("web", "workers", "postgres", "redis", "client")
    ]
    rows += [
        Figure("CPU per execution: rest of the machine (not this run)", cpu["other_cpu_ms_per_item"], "ms"),
        Figure("machine busy during throughput", round(cpu["machine_busy_fraction"] * 100, 1), "%"),
    ]
    if "backlog" in results:
        backlog = results["backlog"]
        rows += [
            Figure("workers alone: executions per second (backlog)", backlog["executions_per_second"]),
            Figure("workers alone: CPU per execution", backlog["cpu"]["workers_cpu_ms_per_item"], "ms"),
        ]
    rows.append(Figure("total wall time", results["wall_time_s"], "s"))
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.trigger", description=__doc__.split("\n\n")[0])
    parser.add_argument("--callers", type=int, default=50, help="concurrent trigger callers")
    parser.add_argument("--latency-triggers", type=int, default=2000, help="triggers of the latency phase")
    parser.add_argument("--executions", type=int, default=1000, help="triggers of the throughput phase")
    parser.add_argument("--backlog", type=int, default=1000, help="triggers queued with the workers paused (0: skip)")
    add_worker_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run, print the table, save the JSON; 0 unless the run itself failed."""
    args = parse_args(argv)
    install_sigterm_handler()
    raise_open_files_limit(4 * (args.callers + 256))
    return run_and_report(
        "trigger",
        lambda: benchmark(args),
        figures_of,
        config=config_of(args),
        title=lambda results: (
            f"trigger: {args.workers} workers x {args.pool}/{args.concurrency}, {args.callers} callers,"
            f" 3-node workflow (trigger -> transform -> output)"
        ),
    )


def config_of(args: argparse.Namespace) -> dict[str, Any]:
    """The run's configuration, as saved."""
    return {
        "mode": f"production (PostgreSQL + Redis, {args.web_processes} web processes, Celery workers)",
        "workers": args.workers,
        "pool": args.pool,
        "concurrency": args.concurrency,
        "worker_loglevel": args.worker_loglevel,
        "callers": args.callers,
        "latency_triggers": args.latency_triggers,
        "executions": args.executions,
        "backlog": args.backlog,
        "workflow": WORKFLOW,
    }


if __name__ == "__main__":
    sys.exit(main())
