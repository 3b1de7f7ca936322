"""Engine overhead per node (in process) and the fixed cost of one execution through Celery and PostgreSQL.

Targets (issue 4): under 0.5 ms per node for a 1,000-node chain and a 1,000-node fan-out/fan-in of `transform`
nodes, run by the engine alone; p50 under 20 ms from the trigger to the completed row for a 3-node workflow run
one at a time by a Celery worker, events stored and published as in production.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from typing import Any

from bench.common import (
    BenchError,
    Figure,
    ProductionDeployment,
    WorkerConfig,
    api,
    install_sigterm_handler,
    run_and_report,
    summarize,
)
from bench.trigger import WORKFLOW, Caller, node, seconds, wait_finished

REDIS_DB = 11
PER_NODE_TARGET_MS = 0.5
FIXED_COST_TARGET_MS = 20.0


# --- In process ----------------------------------------------------------------------------------------------


def chain(nodes: int) -> tuple[list[dict], list[dict]]:
    """trigger -> transform x (nodes - 2) -> output, each node reading its parent's output."""
    graph = [node("start", "trigger", trigger_type="manual")]
    graph += [node(f"t{index}", "transform", output="{{ prev }}") for index in range(nodes - 2)]
    graph.append(node("out", "output", value="{{ prev }}"))
    ids = [spec["id"] for spec in graph]
    return graph, [{"source": source, "target": target} for source, target in itertools.pairwise(ids)]


def fan(nodes: int) -> tuple[list[dict], list[dict]]:
    """trigger -> (nodes - 2) transforms side by side -> one output joining them all."""
    middle = [f"t{index}" for index in range(nodes - 2)]
    graph = [node("start", "trigger", trigger_type="manual")]
    graph += [node(node_id, "transform", output="{{ input.n }}") for node_id in middle]
    graph.append(node("out", "output", value="{{ nodes.t0 }}"))
    edges = [{"source": "start", "target": node_id} for node_id in middle]
    edges += [{"source": node_id, "target": "out"} for node_id in middle]
    return graph, edges


def engine_overhead(nodes: int, repeats: int) -> dict[str, Any]:
    """Run each shape `repeats` times (after one warm-up) with an event listener; ms per node, median and best."""
    from workflows.engine import EngineLimits, run_workflow

    limits = EngineLimits()  # the defaults equal the WORKFLOW_* settings' defaults (4 nodes in parallel)
    shapes = {}
    for name, build in (("chain", chain), ("fan-out/fan-in", fan)):
        graph, edges = build(nodes)
        per_node = []
        for attempt in range(repeats + 1):
            events: list[dict] = []
            began = time.perf_counter()
            result = run_workflow(graph, edges, {"n": 1}, emit=events.append, limits=limits)
            elapsed = time.perf_counter() - began
            if result.status != "completed" or len(events) != 2 * nodes + 1:
                raise BenchError(f"{name}: {result.status}, {len(events)} events ({result.error})")
            if attempt:  # the first run imports and compiles templates
                per_node.append(elapsed * 1000 / nodes)
        shapes[name] = {
            "nodes": nodes,
            "runs": repeats,
            "ms_per_node_median": round(statistics.median(per_node), 4),
            "ms_per_node_best": round(min(per_node), 4),
        }
    return shapes


# --- Through Celery and PostgreSQL ---------------------------------------------------------------------------


def long_chain_workflow(nodes: int) -> dict[str, Any]:
    """A `nodes`-long chain of transforms behind an API trigger."""
    graph, edges = chain(nodes)
    graph[0]["data"]["trigger_type"] = "api"
    return {"nodes": graph, "edges": edges}


def sequential_runs(deployment: ProductionDeployment, key: str, agent_id: str, runs: int) -> list[dict[str, Any]]:
    """Trigger `runs` executions one at a time, each waited for before the next: no queueing, only fixed cost."""
    caller = Caller(deployment.server.port, key)
    rows = []
    try:
        for index in range(runs):
            call = caller.post(f"/api/trigger/{agent_id}", {"input": {"n": index, "batch": "fixed"}})
            if call.status != 202 or not call.execution_id:
                raise BenchError(f"trigger answered {call.status}: {call.error}")
            rows += wait_finished(deployment, [call.execution_id], timeout=60, poll=0.002)
    finally:
        caller.close()
    failed = [row for row in rows if row["status"] != "completed"]
    if failed:
        raise BenchError(f"{len(failed)} executions did not complete, first: {failed[0]}")
    return rows


def row_figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per execution: created -> completed, created -> started (queue), started -> completed (run), in ms."""

    def span(start: str, end: str) -> list[float]:
        return [(seconds(row[end]) - seconds(row[start])) * 1000 for row in rows]

    return {
        "executions": len(rows),
        "trigger_to_completion_ms": summarize(span("created_at", "completed_at"), 2),
        "queue_ms": summarize(span("created_at", "started_at"), 2),
        "run_ms": summarize(span("started_at", "completed_at"), 2),
    }


def set_up_agent(deployment: ProductionDeployment, token: str, name: str, workflow: dict[str, Any]) -> str:
    """An agent with `workflow`; its id."""
    base = deployment.server.base_url
    agent = api("POST", f"{base}/api/agents", {"name": name}, token=token, expect=201)
    api("PUT", f"{base}/api/agents/{agent['id']}/workflow", workflow, token=token)
    return agent["id"]


def execution_costs(args: argparse.Namespace) -> dict[str, Any]:
    """One worker, executions one at a time: the 3-node fixed cost, and the per-node cost of a long chain."""
    workers = WorkerConfig(workers=1, concurrency=args.concurrency, pool="threads")
    with ProductionDeployment(redis_db=REDIS_DB, workers=workers, web_processes=1) as deployment:
        try:
            server = deployment.server
            token = server.register_user("bench-engine@example.com")
            small = set_up_agent(deployment, token, "Bench fixed cost", WORKFLOW)
            long = set_up_agent(deployment, token, "Bench long chain", long_chain_workflow(args.chain_nodes))
            key = api(
                "POST",
                f"{server.base_url}/api/keys",
                {"name": "bench", "scopes": ["trigger"], "agent_ids": [small, long]},
                token=token,
                expect=201,
            )["key"]
            sequential_runs(deployment, key, small, 20)  # warm-up
            print(f"fixed cost: {args.executions} executions of the 3-node workflow, one at a time ...", flush=True)
            fixed = row_figures(sequential_runs(deployment, key, small, args.executions))
            print(f"per node: {args.chain_runs} executions of a {args.chain_nodes}-node chain ...", flush=True)
            chained = row_figures(sequential_runs(deployment, key, long, args.chain_runs))
        except BenchError as exc:
            raise BenchError(f"{exc}\nlogs (tail):\n{deployment.logs_tail()}") from None
    chained["nodes"] = args.chain_nodes
    chained["run_ms_per_node_p50"] = round(chained["run_ms"]["p50"] / args.chain_nodes, 3)
    return {"fixed_cost": fixed, "long_chain": chained}


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """The in-process overhead, then (unless --in-process-only) the costs through the deployment."""
    print(f"engine in process: {args.nodes}-node shapes x {args.repeats} ...", flush=True)
    results: dict[str, Any] = {"in_process": engine_overhead(args.nodes, args.repeats)}
    if not args.in_process_only:
        results.update(execution_costs(args))
    return results


def figures_of(results: dict[str, Any]) -> list[Figure]:
    """The printed table's rows."""
    rows = []
    for name, shape in results["in_process"].items():
        label = f"engine, {shape['nodes']:,}-node {name}: per node"
        rows.append(
            Figure(f"{label} (median of {shape['runs']})", shape["ms_per_node_median"], "ms", PER_NODE_TARGET_MS)
        )
    if "fixed_cost" in results:
        fixed = results["fixed_cost"]
        rows += [
            Figure(
                "execution fixed cost (3 nodes, trigger -> completed) p50",
                fixed["trigger_to_completion_ms"]["p50"],
                "ms",
                FIXED_COST_TARGET_MS,
            ),
            Figure("execution fixed cost p99", fixed["trigger_to_completion_ms"]["p99"], "ms"),
            Figure("  of which queue (created -> started) p50", fixed["queue_ms"]["p50"], "ms"),
            Figure("  of which run (started -> completed) p50", fixed["run_ms"]["p50"], "ms"),
        ]
        chained = results["long_chain"]
        rows.append(
            Figure(
                f"execution of a {chained['nodes']}-node chain: run per node p50 (events stored + published)",
                chained["run_ms_per_node_p50"],
                "ms",
            )
        )
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000, help="nodes of the in-process shapes")
    parser.add_argument("--repeats", type=int, default=5, help="measured runs of each in-process shape")
    parser.add_argument("--executions", type=int, default=200, help="3-node executions for the fixed cost")
    parser.add_argument("--chain-nodes", type=int, default=100, help="nodes of the chain run through a worker")
    parser.add_argument("--chain-runs", type=int, default=10, help="executions of that chain")
    parser.add_argument("--concurrency", type=int, default=8, help="the worker's --concurrency")
    parser.add_argument("--in-process-only", action="store_true", help="skip the deployment (no PostgreSQL/Redis)")
    return parser.parse_args(argv)


def config_of(args: argparse.Namespace) -> dict[str, Any]:
    """The run's configuration, as saved."""
    return {key: value for key, value in vars(args).items()}


def main(argv: list[str] | None = None) -> int:
    """Run, print the table, save the JSON; 0 unless the run itself failed."""
    args = parse_args(argv)
    install_sigterm_handler()
    return run_and_report("engine", lambda: benchmark(args), figures_of, config=config_of(args))


if __name__ == "__main__":
    sys.exit(main())
