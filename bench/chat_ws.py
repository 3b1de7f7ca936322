"""Chat WebSocket benchmark: server-added latency per streamed chunk, and memory per idle connection.

    python -m bench.chat_ws                     # 100 streaming sockets, 500 idle ones, embedded SQLite mode
    python -m bench.chat_ws --sockets 100 500   # one streaming run per count
    python -m bench.chat_ws --production        # PostgreSQL + Redis on loopback (fresh database, dropped after)

A stamping OpenAI-compatible provider (its own process) writes every chunk with the CLOCK_MONOTONIC time it was
written; the client notes when the matching `stream` frame arrives. The difference is the time the server adds
between a provider chunk and the client's frame, loopback hops and the client's own event loop included, so it is
an upper bound. Memory per idle connection is the growth of the server's RSS over M authenticated, pinged sockets,
divided by M. Figures are printed and saved in bench/results/; missed targets never fail the run, a broken run does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.common import (
    BenchError,
    Figure,
    ProductionServices,
    ServerProcess,
    StampingProvider,
    StreamScript,
    parse_stamps,
    raise_open_files_limit,
    run_and_report,
    summarize,
)

MODEL_ID = "bench/model"
LATENCY_TARGET_MS = 5.0  # p99 of the server-added latency per chunk (issue 3)
IDLE_MEMORY_TARGET_KB = 100.0  # per idle connection (issue 3)
CONNECT_CONCURRENCY = 50  # sockets opened at once; more would only overflow the listen backlog
FRAME_TIMEOUT = 30.0  # seconds any one expected frame may take
NS_PER_MS = 1_000_000


# --- Sockets --------------------------------------------------------------------------------------


async def open_socket(url: str) -> ClientConnection:
    """An authenticated /ws/chat socket, proven open by a ping answered with pong."""
    ws = await connect(url, proxy=None, compression=None, ping_interval=None, open_timeout=FRAME_TIMEOUT)
    try:
        await ws.send(json.dumps({"type": "ping", "payload": {}}))
        frame = json.loads(await asyncio.wait_for(ws.recv(), FRAME_TIMEOUT))
        if frame.get("type") != "pong":
            raise BenchError(f"expected a pong, got {frame}")
    except BaseException:
        await close_sockets([ws])
        raise
    return ws


async def open_sockets(url: str, count: int) -> list[ClientConnection]:
    """`count` open sockets, at most CONNECT_CONCURRENCY connecting at a time; all or none."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one() -> ClientConnection:
        async with gate:
            return await open_socket(url)

    results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    sockets = [result for result in results if isinstance(result, ClientConnection)]
    failures = [result for result in results if isinstance(result, BaseException)]
    if failures:
        await close_sockets(sockets)
        raise BenchError(f"{len(failures)} of {count} sockets failed to open, first: {failures[0]!r}")
    return sockets


async def close_sockets(sockets: list[ClientConnection]) -> None:
    """Close every socket, bounded in time."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(30):
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


# --- Streaming --------------------------------------------------------------------------------------


@dataclass
class Conversation:
    """What one socket saw of its streamed answer."""

    latencies_ns: list[int] = field(default_factory=list)  # per chunk: frame received - chunk written
    first_frame_ns: int | None = None  # chat frame sent -> first stream frame
    done_after_last_ns: int | None = None  # last content frame -> the final `done` frame


async def converse(ws: ClientConnection, conversation_id: str, chunks: int, go: asyncio.Event) -> Conversation:
    """Send one `chat` frame when `go` is set, and time every stamped chunk until the `done` frame."""
    await go.wait()
    seen = Conversation()
    payload = {"conversation_id": conversation_id, "message": "hi", "model": MODEL_ID, "stream": True}
    sent = time.monotonic_ns()
    await ws.send(json.dumps({"type": "chat", "payload": payload}))
    expected = 0
    last_content = sent
    while True:
        try:
            raw = await asyncio.wait_for(ws.recv(), FRAME_TIMEOUT)
        except (TimeoutError, ConnectionClosed) as exc:
            raise BenchError(f"{conversation_id}: no frame ({exc!r}) after {expected} of {chunks} chunks") from None
        received = time.monotonic_ns()
        frame = json.loads(raw)
        body = frame.get("payload") or {}
        if frame.get("type") != "stream" or body.get("conversation_id") != conversation_id:
            raise BenchError(f"{conversation_id}: unexpected frame {str(frame)[:300]}")
        if seen.first_frame_ns is None:
            seen.first_frame_ns = received - sent
        if body.get("done"):
            seen.done_after_last_ns = received - last_content
            break
        for sequence, written in parse_stamps(body.get("content", "")):
            if sequence != expected:
                raise BenchError(f"{conversation_id}: chunk {sequence} arrived, expected {expected}")
            seen.latencies_ns.append(received - written)
            expected += 1
        last_content = received
    if expected != chunks:
        raise BenchError(f"{conversation_id}: {expected} of {chunks} chunks arrived before done")
    return seen


async def watch_loop_lag(stop: asyncio.Event, lags_ns: list[int], every: float = 0.005) -> None:
    """Sample how long a callback that just became ready waits in this event loop (the client's own delay)."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        ready = loop.create_future()
        queued = time.monotonic_ns()
        loop.call_soon(ready.set_result, None)
        await ready
        lags_ns.append(time.monotonic_ns() - queued)
        await asyncio.sleep(every)


async def streaming_run(server: ServerProcess, token: str, sockets: int, script: StreamScript, run: str) -> dict:
    """Open `sockets` sockets, start one streamed answer on each at the same moment, and time every chunk."""
    sockets_open = await open_sockets(server.ws_url("/ws/chat", token), sockets)
    lags_ns: list[int] = []
    stop_watch = asyncio.Event()
    go = asyncio.Event()
    answer_seconds = script.first_delay + script.interval * (script.chunks + 1)
    budget = 60 + answer_seconds * 3 + sockets * 0.2
    try:
        watcher = asyncio.create_task(watch_loop_lag(stop_watch, lags_ns))
        tasks = [
            asyncio.create_task(converse(ws, f"bench-{run}-{index}", script.chunks, go))
            for index, ws in enumerate(sockets_open)
        ]
        await asyncio.sleep(0.2)  # let every task reach go.wait() so the frames leave together
        started, cpu_before = time.monotonic(), server.cpu_times()
        go.set()
        try:
            async with asyncio.timeout(budget):
                conversations = await asyncio.gather(*tasks)
        except TimeoutError:
            raise BenchError(f"{run}: the answers did not finish within {budget:.0f} s") from None
        finally:
            for task in tasks:
                task.cancel()
            stop_watch.set()
            await asyncio.gather(watcher, *tasks, return_exceptions=True)
        elapsed, cpu_after = time.monotonic() - started, server.cpu_times()
    finally:
        await close_sockets(sockets_open)
    latencies = [ns / NS_PER_MS for c in conversations for ns in c.latencies_ns]
    user_cpu, system_cpu = (after - before for after, before in zip(cpu_after, cpu_before, strict=True))
    server_cpu = user_cpu + system_cpu
    return {
        "sockets": sockets,
        "chunks_expected": sockets * script.chunks,
        "chunks_measured": len(latencies),
        "wall_s": round(elapsed, 3),
        "chunks_per_second": round(len(latencies) / elapsed, 1),
        # CPU the server spent on the whole run (turn set-up and saving included), per streamed chunk.
        "server_cpu_s": round(server_cpu, 3),
        "server_cpu_user_s": round(user_cpu, 3),
        "server_cpu_system_s": round(system_cpu, 3),
        "server_cpu_per_chunk_us": round(server_cpu / max(1, len(latencies)) * 1e6, 1),
        "server_added_latency_ms": summarize(latencies),
        "first_frame_ms": summarize([c.first_frame_ns / NS_PER_MS for c in conversations]),
        "done_after_last_chunk_ms": summarize([c.done_after_last_ns / NS_PER_MS for c in conversations]),
        "client_loop_lag_ms": summarize([ns / NS_PER_MS for ns in lags_ns]),
    }


# --- Idle memory ------------------------------------------------------------------------------------


async def idle_memory(server: ServerProcess, token: str, sockets: int, rounds: int) -> dict:
    """Server RSS growth per idle authenticated socket, over `rounds` rounds of opening and closing `sockets`."""
    url = server.ws_url("/ws/chat", token)
    results = []
    for _ in range(rounds):
        await asyncio.sleep(0.5)
        before = server.rss_kb()
        opened = await open_sockets(url, sockets)
        try:
            await asyncio.sleep(0.5)  # let the server finish any work the connections started
            after = server.rss_kb()
        finally:
            await close_sockets(opened)
        per_connection = (after - before) / sockets
        results.append({"rss_before_kb": before, "rss_after_kb": after, "per_connection_kb": per_connection})
    await asyncio.sleep(0.5)
    return {
        "sockets": sockets,
        "rounds": results,
        # The largest round is reported: a later round may reuse memory an earlier one freed.
        "per_connection_kb": round(max(r["per_connection_kb"] for r in results), 2),
        "rss_after_close_kb": server.rss_kb(),
    }


# --- The whole benchmark ----------------------------------------------------------------------------


def figures_of(results: dict) -> list[Figure]:
    """The printed table's rows."""
    rows = []
    for run in results["runs"]:
        label = f"{run['sockets']} sockets:"
        latency = run["server_added_latency_ms"]
        rows += [
            Figure(f"{label} server-added latency p50", latency["p50"], "ms"),
            Figure(f"{label} server-added latency p99", latency["p99"], "ms", target=LATENCY_TARGET_MS),
            Figure(f"{label} server-added latency max", latency["max"], "ms"),
            Figure(f"{label} chunks measured", run["chunks_measured"], f"of {run['chunks_expected']:,}"),
            Figure(f"{label} chunks per second", run["chunks_per_second"]),
            Figure(f"{label} server CPU per chunk", run["server_cpu_per_chunk_us"], "us"),
            Figure(f"{label} first frame after chat p99", run["first_frame_ms"]["p99"], "ms"),
            Figure(f"{label} done frame after last chunk p99", run["done_after_last_chunk_ms"]["p99"], "ms"),
            Figure(f"{label} client event-loop lag p99", run["client_loop_lag_ms"]["p99"], "ms"),
        ]
    idle = results["idle_memory"]
    if idle:
        name = f"memory per idle connection ({idle['sockets']} sockets)"
        rows.append(Figure(name, idle["per_connection_kb"], "KB", IDLE_MEMORY_TARGET_KB))
    rows.append(Figure("total wall time", results["wall_time_s"], "s"))
    return rows


async def benchmark(args: argparse.Namespace) -> dict:
    """Start provider and server, set up a model and a user, measure idle memory, then each streaming run."""
    script = StreamScript(chunks=args.chunks, interval=args.interval_ms / 1000, random_phase=not args.aligned)
    extra_env = {"CHAT_MAX_CONCURRENT_GENERATIONS": str(max(200, *args.sockets))}
    results: dict[str, Any] = {"runs": [], "idle_memory": None}
    with contextlib.ExitStack() as stack:
        services = stack.enter_context(ProductionServices()) if args.production else None
        provider = stack.enter_context(StampingProvider(script))
        print(f"provider on {provider.base_url()}; starting the server ...", flush=True)
        web_processes = args.web_processes if args.production else None
        server = stack.enter_context(ServerProcess(extra_env=extra_env, services=services, web_processes=web_processes))
        print(f"server on {server.base_url} (pid {server.pid})", flush=True)
        admin = server.admin_token()
        server.add_openai_compatible_model(admin, base_url=provider.base_url("/v1"), model_id=MODEL_ID, name="bench")
        token = server.register_user("bench-user@example.com")
        try:
            # Warm-up: the first answer imports and caches what every later one reuses.
            warm = await streaming_run(server, token, 2, script, "warmup")
            if warm["chunks_measured"] != warm["chunks_expected"]:
                raise BenchError(f"warm-up measured {warm['chunks_measured']} chunks of {warm['chunks_expected']}")
            if args.idle_sockets:
                print(f"idle memory: {args.idle_sockets} sockets x {args.idle_rounds} rounds ...", flush=True)
                results["idle_memory"] = await idle_memory(server, token, args.idle_sockets, args.idle_rounds)
            for sockets in args.sockets:
                print(f"streaming: {sockets} sockets, {script.chunks} chunks every {args.interval_ms:g} ms", flush=True)
                results["runs"].append(await streaming_run(server, token, sockets, script, f"s{sockets}"))
        except BenchError as exc:
            raise BenchError(f"{exc}\nserver log (tail):\n{server.log_tail()}") from None
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.chat_ws", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, nargs="+", default=[100], help="streaming sockets per run (a list)")
    parser.add_argument("--chunks", type=int, default=50, help="chunks per answer")
    parser.add_argument("--interval-ms", type=float, default=15.0, help="milliseconds between chunks of an answer")
    parser.add_argument("--aligned", action="store_true", help="all answers write their chunks in the same instant")
    parser.add_argument("--idle-sockets", type=int, default=500, help="idle sockets for the memory figure (0: skip)")
    parser.add_argument("--idle-rounds", type=int, default=2, help="times the idle sockets are opened and closed")
    parser.add_argument("--production", action="store_true", help="PostgreSQL + Redis on loopback, not SQLite")
    parser.add_argument(
        "--web-processes", type=int, default=2, help="with --production: web processes (`serve --processes`)"
    )
    return parser.parse_args(argv)


def config_of(args: argparse.Namespace) -> dict[str, Any]:
    """The run's configuration, as saved."""
    return {
        "mode": f"production (PostgreSQL + Redis, {args.web_processes} web processes)"
        if args.production
        else "embedded (SQLite, in-memory layer)",
        "sockets": args.sockets,
        "chunks": args.chunks,
        "interval_ms": args.interval_ms,
        "random_phase": not args.aligned,
        "idle_sockets": args.idle_sockets,
        "idle_rounds": args.idle_rounds,
    }


def main(argv: list[str] | None = None) -> int:
    """Run, print the table, save the JSON; 0 unless the run itself failed."""
    args = parse_args(argv)
    raise_open_files_limit(4 * (max(*args.sockets, args.idle_sockets) + 256))
    config = config_of(args)
    return run_and_report(
        "chat_ws",
        lambda: asyncio.run(benchmark(args)),
        figures_of,
        config=config,
        title=lambda results: (
            f"chat_ws: {config['mode']}, {args.chunks} chunks every {args.interval_ms:g} ms per answer"
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
