"""REST throughput and latency: `GET /api/agents` (20 items) and `GET /api/auth/me` against `GET /health`.

Each endpoint is measured on the same server in the same run, and reported as a ratio to `/health` (target: the
agent list at least 0.5 of health's throughput). The run is repeated for each web layout (`--web-processes`, the
`serve --processes` count) so that the production layout can be chosen from the figures (docs/operations.md).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from bench.common import (
    LOOPBACK,
    BenchError,
    Figure,
    ProductionDeployment,
    WorkerConfig,
    api,
    cpu_usage,
    install_sigterm_handler,
    raise_open_files_limit,
    run_and_report,
    summarize,
)

REDIS_DB = 12
LIST_RATIO_TARGET = 0.5
AGENTS = 20
ENDPOINTS = ("/health", "/api/auth/me", "/api/agents")


@dataclass
class LoadResult:
    """What the connections of one measurement saw."""

    latencies_s: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one HTTP/1.1 response (Content-Length or chunked); (status, whether the server closes)."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status = int(status_line.split()[1])
    length, chunked, closes = 0, False, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value:
            chunked = True
        elif name == "connection" and value == "close":
            closes = True
    if chunked:
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, closes


async def _connection(port: int, request: bytes, stop_at: float, result: LoadResult) -> None:
    """One keep-alive connection sending `request` back to back until `stop_at` (a closed loop)."""
    reader = writer = None
    try:
        while time.perf_counter() < stop_at:
            if writer is None:
                reader, writer = await asyncio.open_connection(LOOPBACK, port)
            began = time.perf_counter()
            writer.write(request)
            try:
                status, closes = await _read_response(reader)
            except (ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
                result.errors.append(repr(exc))
                writer.close()
                reader = writer = None
                continue
            result.latencies_s.append(time.perf_counter() - began)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if closes:
                writer.close()
                reader = writer = None
    finally:
        if writer is not None:
            writer.close()


def http_request(port: int, path: str, token: str | None) -> bytes:
    """The bytes of one keep-alive GET."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {LOOPBACK}:{port}", "Accept: application/json"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def load(port: int, path: str, token: str | None, *, connections: int, seconds: float) -> LoadResult:
    """`connections` keep-alive connections hammering `path` for `seconds`."""
    result = LoadResult()
    request = http_request(port, path, token)
    stop_at = time.perf_counter() + seconds
    await asyncio.gather(*(_connection(port, request, stop_at, result) for _ in range(connections)))
    return result


def measure(
    deployment: ProductionDeployment, path: str, token: str | None, *, connections: int, seconds: float, warmup: float
) -> dict[str, Any]:
    """Warm up, then measure one endpoint: requests per second, latency percentiles, CPU per request."""
    port = deployment.server.port
    asyncio.run(load(port, path, token, connections=connections, seconds=warmup))
    before = deployment.cpu_snapshot()
    began = time.perf_counter()
    result = asyncio.run(load(port, path, token, connections=connections, seconds=seconds))
    elapsed = time.perf_counter() - began
    count = len(result.latencies_s)
    if result.errors or set(result.statuses) != {200}:
        raise BenchError(f"{path}: statuses {result.statuses}, errors {result.errors[:3]}")
    return {
        "path": path,
        "requests": count,
        "requests_per_second": round(count / elapsed, 1),
        "latency_ms": summarize([latency * 1000 for latency in result.latencies_s], 2),
        "cpu": cpu_usage(before, deployment.cpu_snapshot(), count),
    }


def set_up(deployment: ProductionDeployment) -> str:
    """A user with `AGENTS` agents; their access token."""
    server = deployment.server
    token = server.register_user("bench-rest@example.com")
    for index in range(AGENTS):
        body = {"name": f"Bench agent {index:02d}", "description": "An agent of the REST benchmark."}
        api("POST", f"{server.base_url}/api/agents", body, token=token, expect=201)
    listed = api("GET", f"{server.base_url}/api/agents", token=token)
    if len(listed["agents"]) != AGENTS:
        raise BenchError(f"the list has {len(listed['agents'])} agents, not {AGENTS}")
    return token


def layout_run(args: argparse.Namespace, web_processes: int) -> dict[str, Any]:
    """One web layout: start it, measure every endpoint, compare with /health."""
    # No Celery worker is needed: these endpoints never enqueue anything.
    workers = WorkerConfig(workers=0, concurrency=1, pool="threads")
    with ProductionDeployment(redis_db=REDIS_DB, workers=workers, web_processes=web_processes) as deployment:
        print(f"web: {web_processes} process(es) on {deployment.server.base_url}", flush=True)
        try:
            token = set_up(deployment)
            endpoints = {}
            for path in ENDPOINTS:
                print(f"  {path}: {args.connections} connections for {args.seconds:g} s ...", flush=True)
                endpoints[path] = measure(
                    deployment,
                    path,
                    None if path == "/health" else token,
                    connections=args.connections,
                    seconds=args.seconds,
                    warmup=args.warmup,
                )
        except BenchError as exc:
            raise BenchError(f"{exc}\nlogs (tail):\n{deployment.logs_tail()}") from None
    health = endpoints["/health"]["requests_per_second"]
    for result in endpoints.values():
        result["ratio_to_health"] = round(result["requests_per_second"] / health, 3)
    return {"web_processes": web_processes, "endpoints": endpoints}


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Every layout in turn."""
    return {"layouts": [layout_run(args, processes) for processes in args.web_processes]}


def figures_of(results: dict[str, Any]) -> list[Figure]:
    """The printed table's rows."""
    rows = []
    for layout in results["layouts"]:
        label = f"{layout['web_processes']} web:"
        for path, result in layout["endpoints"].items():
            rows += [
                Figure(f"{label} GET {path} requests/s", result["requests_per_second"]),
                Figure(f"{label} GET {path} p50", result["latency_ms"]["p50"], "ms"),
                Figure(f"{label} GET {path} p99", result["latency_ms"]["p99"], "ms"),
                Figure(f"{label} GET {path} web CPU per request", result["cpu"]["web_cpu_ms_per_item"], "ms"),
            ]
            if path != "/health":
                target = LIST_RATIO_TARGET if path == "/api/agents" else None
                rows.append(
                    Figure(f"{label} GET {path} / health throughput", result["ratio_to_health"], "", target, ">=")
                )
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.rest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--web-processes", type=int, nargs="+", default=[1, 2, 3], help="web layouts to measure")
    parser.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per endpoint")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each endpoint")
    return parser.parse_args(argv)


def config_of(args: argparse.Namespace) -> dict[str, Any]:
    """The run's configuration, as saved."""
    return {
        "web_processes": args.web_processes,
        "connections": args.connections,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "agents": AGENTS,
    }


def main(argv: list[str] | None = None) -> int:
    """Run, print the table, save the JSON; 0 unless the run itself failed."""
    args = parse_args(argv)
    install_sigterm_handler()
    raise_open_files_limit(4 * args.connections + 256)
    return run_and_report(
        "rest",
        lambda: benchmark(args),
        figures_of,
        config=config_of(args),
        title=lambda results: f"rest: {args.connections} keep-alive connections, {args.seconds:g} s per endpoint",
    )


if __name__ == "__main__":
    sys.exit(main())
