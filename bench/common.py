"""Shared helpers for the benchmarks in bench/: a real server in a subprocess, HTTP calls, statistics, results.

Benchmarks print figures and save them as JSON in bench/results/; they never gate CI. Everything here talks to
loopback addresses only, and every wait is bounded.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_DIR = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_DIR / "bench" / "results"
LOOPBACK = "127.0.0.1"
ADMIN_EMAIL = "bench-admin@example.com"
HIGH_RATE_LIMIT = "1000000"
# Only these variables of the caller's environment reach the server: nothing of a developer's setup leaks in.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
# Loopback calls must never go through a proxy named in the environment.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class BenchError(Exception):
    """The run itself failed (server did not start, frames missing): the benchmark exits non-zero."""


# --- Small utilities ------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def fresh_encryption_key() -> str:
    """A new ENCRYPTION_KEYS entry: the urlsafe base64 of 32 random bytes."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def rss_kb(pid: int) -> int:
    """The resident set size of a process in KiB, from /proc/<pid>/status (Linux only)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for process {pid}")


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds a process has used so far, all threads, from /proc/<pid>/stat (Linux only)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def raise_open_files_limit(wanted: int) -> int:
    """Raise this process's soft limit of open files towards `wanted` (capped by the hard limit); the new limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "switch_interval_ms": sys.getswitchinterval() * 1000,
    }


# --- Statistics -----------------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """The pct-th percentile (0-100) with linear interpolation between ranks (numpy's default); nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: Sequence[float], digits: int = 3) -> dict[str, float | int]:
    """Count, mean, p50, p90, p99, p99.9 and max of a sample, rounded."""
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "mean": round(sum(values) / len(values), digits),
        "p50": round(percentile(values, 50), digits),
        "p90": round(percentile(values, 90), digits),
        "p99": round(percentile(values, 99), digits),
        "p99_9": round(percentile(values, 99.9), digits),
        "max": round(max(values), digits),
    }


# --- HTTP -----------------------------------------------------------------------------------------


def http_json(
    method: str, url: str, body: Any = None, *, token: str | None = None, timeout: float = 15
) -> tuple[int, Any]:
    """One JSON request; (status, parsed body or None). Network failures raise BenchError."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with _HTTP.open(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        raise BenchError(f"{method} {url} failed: {exc}") from exc
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None


def api(method: str, url: str, body: Any = None, *, token: str | None = None, expect: int = 200) -> Any:
    """A JSON request that must answer `expect`; else BenchError with the error envelope."""
    status, payload = http_json(method, url, body, token=token)
    if status != expect:
        raise BenchError(f"{method} {url} answered {status} (expected {expect}): {payload}")
    return payload


# --- The server under test -----------------------------------------------------------------------


@dataclass
class ProductionServices:
    """PostgreSQL and Redis on loopback for `--production` runs: a fresh database, dropped afterwards."""

    postgres_admin_url: str = f"postgresql://postgres@{LOOPBACK}:5432/postgres"
    redis_url: str = f"redis://{LOOPBACK}:6379/15"
    database: str = field(default_factory=lambda: f"bench_{secrets.token_hex(6)}")

    @property
    def database_url(self) -> str:
        """The DATABASE_URL of the fresh database."""
        return self.postgres_admin_url.rsplit("/", 1)[0] + "/" + self.database

    def __enter__(self) -> ProductionServices:
        import psycopg

        with psycopg.connect(self.postgres_admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')
        return self

    def __exit__(self, *exc_info: object) -> None:
        import psycopg

        with (
            contextlib.suppress(Exception),
            psycopg.connect(self.postgres_admin_url, autocommit=True, connect_timeout=5) as conn,
        ):
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


class ServerProcess:
    """`manage.py serve` on a free loopback port from a fresh DATA_DIR, with an admin, in its own process group.

    Use as a context manager: the server is migrated, started and waited for on entry; on exit its whole process
    group is terminated (then killed) and the temporary directory removed. Its output goes to `log_path`.
    """

    def __init__(
        self,
        *,
        extra_env: dict[str, str] | None = None,
        services: ProductionServices | None = None,
        admin_email: str = ADMIN_EMAIL,
        start_timeout: float = 180,
    ):
        self.admin_email = admin_email
        self.admin_password = secrets.token_urlsafe(18)
        self.extra_env = extra_env or {}
        self.services = services
        self.start_timeout = start_timeout
        self.port = free_port()
        self.tmp = Path(tempfile.mkdtemp(prefix="claraverse-bench-"))
        self.log_path = self.tmp / "server.log"
        self.process: subprocess.Popen | None = None
        self._log_file = None
        self.env_vars = self.env()  # built once: it holds the fresh secrets

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://{LOOPBACK}:{self.port}"

    def ws_url(self, path: str, token: str) -> str:
        """`ws://127.0.0.1:<port><path>?token=<token>`."""
        return f"ws://{LOOPBACK}:{self.port}{path}?token={token}"

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.process is not None, "start the server first"
        return self.process.pid

    def rss_kb(self) -> int:
        """The server process's resident set size in KiB."""
        return rss_kb(self.pid)

    def cpu_times(self) -> tuple[float, float]:
        """(user, system) CPU seconds the server process has used so far."""
        return cpu_times(self.pid)

    def env(self) -> dict[str, str]:
        """The server's whole environment: fresh secrets, temp DATA_DIR, no .env file, rate limits out of the way."""
        env = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
        env.update(
            DJANGO_SETTINGS_MODULE="claraverse.settings.base",
            ENV_FILE="",
            DEBUG="false",
            SECRET_KEY=secrets.token_urlsafe(50),
            ENCRYPTION_KEYS=fresh_encryption_key(),
            DATA_DIR=str(self.tmp / "data"),
            ALLOWED_HOSTS=f"{LOOPBACK},localhost",
            RATE_LIMIT_GLOBAL_API=HIGH_RATE_LIMIT,
            RATE_LIMIT_PUBLIC_READ=HIGH_RATE_LIMIT,
            RATE_LIMIT_AUTHENTICATED=HIGH_RATE_LIMIT,
            RATE_LIMIT_WEBSOCKET=HIGH_RATE_LIMIT,
            DJANGO_SUPERUSER_PASSWORD=self.admin_password,
            PYTHONUNBUFFERED="1",
        )
        if self.services is not None:
            env.update(DATABASE_URL=self.services.database_url, REDIS_URL=self.services.redis_url)
        env.update(self.extra_env)
        return env

    def _manage(self, *args: str, timeout: float) -> None:
        """Run one management command to completion; its output goes to the log, a failure raises BenchError."""
        assert self._log_file is not None
        self._log_file.write(f"$ manage.py {' '.join(args)}\n")
        self._log_file.flush()
        try:
            subprocess.run(
                [sys.executable, "manage.py", *args],
                cwd=REPO_DIR,
                env=self.env_vars,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=True,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise BenchError(f"manage.py {args[0]} failed ({exc}); log:\n{self.log_tail()}") from exc

    def start(self) -> ServerProcess:
        """Migrate, create the admin, serve, and wait for /health to answer 200."""
        self._log_file = self.log_path.open("a")
        started = time.monotonic()
        self._manage("migrate", "--noinput", timeout=self.start_timeout)
        self._manage("createsuperuser", "--noinput", "--email", self.admin_email, timeout=60)
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--host", LOOPBACK, "--port", str(self.port)],
            cwd=REPO_DIR,
            env=self.env_vars,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so that stop() reaches every child
        )
        self.wait_healthy(timeout=max(10.0, self.start_timeout - (time.monotonic() - started)))
        return self

    def wait_healthy(self, timeout: float) -> None:
        """Poll GET /health until it answers 200; BenchError if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise BenchError(f"the server exited with {self.process.returncode}; log:\n{self.log_tail()}")
            try:
                status, payload = http_json("GET", f"{self.base_url}/health", timeout=2)
                if status == 200:
                    return
                last = f"{status} {payload}"
            except BenchError as exc:
                last = str(exc)
            time.sleep(0.2)
        raise BenchError(f"/health did not answer 200 within {timeout:.0f} s ({last}); log:\n{self.log_tail()}")

    def stop(self) -> None:
        """Terminate the server's process group (kill it after 15 s) and remove the temporary directory."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's output."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> ServerProcess:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- Accounts and providers through the API ---

    def login(self, email: str, password: str) -> str:
        """An access token for these credentials."""
        return api("POST", f"{self.base_url}/api/auth/login", {"email": email, "password": password})["access_token"]

    def admin_token(self) -> str:
        """An access token of the admin created at start."""
        return self.login(self.admin_email, self.admin_password)

    def register_user(self, email: str, name: str = "Bench User") -> str:
        """Register a user with a random password; their access token."""
        body = {"email": email, "password": secrets.token_urlsafe(18), "name": name}
        return api("POST", f"{self.base_url}/api/auth/register", body, expect=201)["access_token"]

    def add_openai_compatible_model(self, admin_token: str, *, base_url: str, model_id: str, name: str) -> None:
        """Register an OpenAI-compatible provider at `base_url` and one streaming model of it."""
        provider = api(
            "POST",
            f"{self.base_url}/api/admin/providers",
            {"name": name, "type": "openai_compatible", "base_url": base_url},
            token=admin_token,
            expect=201,
        )
        api(
            "POST",
            f"{self.base_url}/api/admin/models",
            {"id": model_id, "provider_id": provider["id"], "name": model_id, "supports_streaming": True},
            token=admin_token,
            expect=201,
        )


# --- Reporting ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One row of a benchmark's table: a measured value, and the target it is held against (if any)."""

    name: str
    value: float | int | str
    unit: str = ""
    target: float | None = None  # the value must stay below this

    @property
    def verdict(self) -> str:
        """`pass` or `miss` against the target; empty when the figure has none."""
        if self.target is None or not isinstance(self.value, int | float) or math.isnan(self.value):
            return ""
        return "pass" if self.value < self.target else "miss"

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON."""
        return {
            "figure": self.name,
            "value": self.value,
            "unit": self.unit,
            "target": f"< {self.target:g}" if self.target is not None else None,
            "verdict": self.verdict or None,
        }


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_table(figures: Iterable[Figure]) -> str:
    """The figures as an aligned text table: figure, value, target, pass/miss."""
    rows = [("figure", "value", "target", "verdict")]
    for figure in figures:
        value = f"{_cell(figure.value)} {figure.unit}".rstrip()
        target = f"< {figure.target:g} {figure.unit}".rstrip() if figure.target is not None else ""
        rows.append((figure.name, value, target, figure.verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for index, row in enumerate(rows):
        lines.append(
            "  ".join([row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].ljust(widths[2]), row[3]]).rstrip()
        )
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def write_results(name: str, data: dict[str, Any]) -> Path:
    """Save a run as bench/results/<name>-<UTC timestamp>.json; the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def utc_now() -> str:
    """The current time, ISO 8601 UTC with Z."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- A loopback LLM provider that stamps every chunk ---------------------------------------------

# Each streamed piece of text carries its sequence number and the moment it was written, on CLOCK_MONOTONIC
# (time.monotonic_ns), which on Linux is one system-wide clock, comparable between processes.
_STAMP = re.compile(r"\[(\d+):(\d+)\]")


def stamp(sequence: int, sent_ns: int) -> str:
    """The text of one streamed chunk: `[<sequence>:<monotonic ns when written>] `."""
    return f"[{sequence}:{sent_ns}] "


def parse_stamps(text: str) -> list[tuple[int, int]]:
    """The (sequence, sent ns) stamps in a piece of streamed text."""
    return [(int(sequence), int(sent)) for sequence, sent in _STAMP.findall(text)]


@dataclass(frozen=True)
class StreamScript:
    """How the stamping provider answers every streamed chat completion."""

    chunks: int = 50
    interval: float = 0.015  # seconds between chunks
    first_delay: float = 0.0  # seconds between the headers and the first chunk
    random_phase: bool = True  # offset each answer by a random fraction of the interval, as independent users are


class StampingProvider:
    """An OpenAI-compatible streaming server in a child process, writing time-stamped chunks on a fixed schedule.

    A child process of its own keeps its schedule and its stamps apart from the benchmark client's event loop.
    `POST .../chat/completions` with `stream: true` streams `script.chunks` stamped text chunks, then the finish
    chunk, usage (when asked for) and `[DONE]`; without `stream` it answers one JSON completion; `GET .../models`
    lists one model. Use as a context manager; `base_url("/v1")` is what a provider row points at.
    """

    def __init__(self, script: StreamScript, start_timeout: float = 15):
        self.script = script
        self.start_timeout = start_timeout
        self.port: int | None = None
        self._process = None

    def base_url(self, path: str = "") -> str:
        """`http://127.0.0.1:<port>` followed by `path`."""
        return f"http://{LOOPBACK}:{self.port}{path}"

    def __enter__(self) -> StampingProvider:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        receiver, sender = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_provider_main, args=(self.script, sender), name="bench-provider", daemon=True
        )
        self._process.start()
        sender.close()
        try:
            if not receiver.poll(self.start_timeout):
                raise EOFError
            self.port = receiver.recv()
        except (EOFError, OSError):
            self.__exit__()
            raise BenchError("the stamping provider did not start") from None
        finally:
            receiver.close()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(5)
            self._process = None


def _provider_main(script: StreamScript, ready: Any) -> None:
    """Entry point of the provider's process: serve until terminated."""
    import asyncio

    asyncio.run(_serve_provider(script, ready))


async def _serve_provider(script: StreamScript, ready: Any) -> None:
    import asyncio

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, path, _ = request_line.split(" ", 2)
            headers = {}
            for line in header_lines:
                name, _, value = line.partition(":")
                if name:
                    headers[name.strip().lower()] = value.strip()
            raw = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length") or 0)), 30)
            body = json.loads(raw) if raw else {}
            route = path.split("?", 1)[0].rstrip("/")
            if method == "POST" and route.endswith("/chat/completions") and body.get("stream"):
                await _stream_answer(writer, body, script)
            elif method == "POST" and route.endswith("/chat/completions"):
                _write_json(writer, 200, _whole_answer(body))
            elif method == "GET" and route.endswith("/models"):
                _write_json(writer, 200, {"object": "list", "data": [{"id": "bench", "object": "model"}]})
            else:
                _write_json(writer, 404, {"error": {"message": f"no route for {method} {route}"}})
            await writer.drain()
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass  # the server under test hung up or sent nonsense: nothing to answer
        finally:
            writer.close()

    server = await asyncio.start_server(handle, LOOPBACK, 0, backlog=1024)
    ready.send(server.sockets[0].getsockname()[1])
    ready.close()
    async with server:
        await server.serve_forever()


def _write_json(writer: Any, status: int, payload: Any) -> None:
    data = json.dumps(payload).encode()
    writer.write(
        b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
        % (status, len(data), data)
    )


def _whole_answer(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "model": body.get("model"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _event(payload: Any) -> bytes:
    data = b"data: " + (payload if isinstance(payload, bytes) else json.dumps(payload).encode()) + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _stream_answer(writer: Any, body: dict[str, Any], script: StreamScript) -> None:
    import asyncio
    import random

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return _event({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "choices": [choice]})

    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    writer.write(chunk({"role": "assistant", "content": ""}))
    await writer.drain()
    loop = asyncio.get_running_loop()
    phase = random.uniform(0, script.interval) if script.random_phase else 0.0  # not for security
    start = loop.time() + script.first_delay + phase
    for sequence in range(script.chunks):
        await asyncio.sleep(max(0.0, start + sequence * script.interval - loop.time()))
        if writer.is_closing():
            return
        # Stamped as late as possible: the write below hands the bytes to the kernel at once (TCP_NODELAY is on).
        writer.write(chunk({"content": stamp(sequence, time.monotonic_ns())}))
        await writer.drain()
    writer.write(chunk({}, "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {"prompt_tokens": 8, "completion_tokens": script.chunks, "total_tokens": 8 + script.chunks}
        writer.write(_event({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "choices": [], "usage": usage}))
    writer.write(_event(b"[DONE]"))
    writer.write(b"0\r\n\r\n")
