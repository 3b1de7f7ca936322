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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_DIR = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_DIR / "bench" / "results"
LOOPBACK = "127.0.0.1"
ADMIN_EMAIL = "bench-admin@example.com"
HIGH_RATE_LIMIT = "1000000"
HIGH_QUOTA = "10000000"
QUOTA_TIERS = ("FREE", "PRO", "ENTERPRISE")
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
        "load_average": [round(load, 2) for load in os.getloadavg()],  # other work competing for the cores
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
    # Empty the Redis database of `redis_url` on entry and exit: only for an index no one else uses.
    flush_redis: bool = False

    @property
    def database_url(self) -> str:
        """The DATABASE_URL of the fresh database."""
        return self.postgres_admin_url.rsplit("/", 1)[0] + "/" + self.database

    def connect(self) -> Any:
        """A new autocommit psycopg connection to the fresh database (the benchmark's own reads)."""
        import psycopg

        return psycopg.connect(self.database_url, autocommit=True, connect_timeout=5)

    def redis(self) -> Any:
        """A redis-py client of `redis_url`."""
        import redis

        return redis.Redis.from_url(self.redis_url, socket_timeout=5, socket_connect_timeout=5)

    def _flush_redis(self) -> None:
        client = self.redis()
        try:
            client.flushdb()
        finally:
            client.close()

    def __enter__(self) -> ProductionServices:
        import psycopg

        if self.flush_redis:
            try:
                self._flush_redis()
            except Exception as exc:
                raise BenchError(f"Redis at {self.redis_url} is not usable: {exc}") from exc
        try:
            with psycopg.connect(self.postgres_admin_url, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'CREATE DATABASE "{self.database}"')
        except psycopg.Error as exc:
            raise BenchError(f"PostgreSQL at {self.postgres_admin_url} is not usable: {exc}") from exc
        return self

    def __exit__(self, *exc_info: object) -> None:
        import psycopg

        with (
            contextlib.suppress(Exception),
            psycopg.connect(self.postgres_admin_url, autocommit=True, connect_timeout=5) as conn,
        ):
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        if self.flush_redis:
            with contextlib.suppress(Exception):
                self._flush_redis()


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
        web_processes: int | None = None,
    ):
        # None: `manage.py serve` as `make run` starts it (access log, embedded worker when configured); a number:
        # the production web of docker-compose.yml, `serve --processes N --no-access-log --no-worker`.
        self.web_processes = web_processes
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
        """The resident set size in KiB of the server's processes (all web processes with `web_processes`)."""
        total = 0
        for pid in process_group_members(self.pid):
            with contextlib.suppress(OSError, BenchError):
                total += rss_kb(pid)
        return total

    def cpu_times(self) -> tuple[float, float]:
        """(user, system) CPU seconds the server's processes have used so far."""
        user = system = 0.0
        for pid in process_group_members(self.pid):
            with contextlib.suppress(OSError):
                process_user, process_system = cpu_times(pid)
                user, system = user + process_user, system + process_system
        return user, system

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
            RATE_LIMIT_IMAGE_PROXY=HIGH_RATE_LIMIT,
            # Benchmarks send far more than a day's quota of one user.
            **{
                f"QUOTA_{tier}_{limit}_PER_DAY": HIGH_QUOTA
                for tier in QUOTA_TIERS
                for limit in ("EXECUTIONS", "MESSAGES")
            },
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
            self.serve_argv(),
            cwd=REPO_DIR,
            env=self.env_vars,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so that stop() reaches every child
        )
        self.wait_healthy(timeout=max(10.0, self.start_timeout - (time.monotonic() - started)))
        return self

    def serve_argv(self) -> list[str]:
        """The web server's command line: `manage.py serve`, as `make run` or as the production web service."""
        argv = [sys.executable, "manage.py", "serve", "--host", LOOPBACK, "--port", str(self.port)]
        if self.web_processes is not None:
            argv += ["--processes", str(self.web_processes), "--no-access-log", "--no-worker"]
        return argv

    def manage(self, *args: str, timeout: float) -> None:
        """Run one management command (e.g. `shell -c <code>`) with the server's environment; output to the log."""
        if self._log_file is None:
            self._log_file = self.log_path.open("a")
        self._manage(*args, timeout=timeout)

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


# --- A production-like deployment: PostgreSQL, Redis, daphne, Celery workers and beats ---------------


def process_group_cpu_seconds(pgid: int) -> float:
    """CPU seconds (user + system, all threads, reaped children included) of every process in a process group."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / ticks


def processes_cpu_seconds(match: Any) -> float:
    """CPU seconds (user + system, reaped children included) of every process whose command line satisfies `match`.

    Processes that ended before the call are not counted: read it around a phase for long-lived processes
    (pooled PostgreSQL backends, redis-server).
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if not match(cmdline):
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / ticks


def process_group_members(pgid: int) -> list[int]:
    """The ids of the processes still in a process group."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, summed over cores, from /proc/stat."""
    values = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    ticks = os.sysconf("SC_CLK_TCK")
    return (sum(values[:8]) - idle) / ticks, sum(values[:8]) / ticks


class BackgroundProcess:
    """A long-running child (a Celery worker or beat) in its own process group, its output in a log file.

    `stop()` terminates the whole group (Celery's prefork children included), then kills what is left.
    """

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], log_path: Path):
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self._log_file = None

    @property
    def pid(self) -> int:
        """The process id (also its process group id)."""
        assert self.process is not None, f"start {self.name} first"
        return self.process.pid

    def start(self) -> BackgroundProcess:
        """Start the process in a new session, its output appended to the log."""
        self._log_file = self.log_path.open("a")
        self.process = subprocess.Popen(
            self.argv,
            cwd=REPO_DIR,
            env=self.env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def wait_for_log(self, needle: str, timeout: float) -> None:
        """Wait until `needle` appears in the log; BenchError if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log_text():
                return
            if self.process is not None and self.process.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.process.returncode}; log:\n{self.log_tail()}")
            time.sleep(0.2)
        raise BenchError(f"{self.name} did not log {needle!r} within {timeout:.0f} s; log:\n{self.log_tail()}")

    def signal_group(self, signum: int) -> None:
        """Send a signal to the whole process group (SIGSTOP/SIGCONT pause and resume it)."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by the whole process group."""
        return process_group_cpu_seconds(self.pid)

    def stop(self, timeout: float = 15) -> None:
        """Terminate the process group (SIGKILL after `timeout` seconds); idempotent."""
        if self.process is not None:
            self.signal_group(signal.SIGCONT)  # a paused group could not act on SIGTERM
            self.signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
            # Whatever survived (a stuck leader, orphaned prefork children) goes now. While any member is left
            # the group id cannot have been reused, so this reaches only our own processes.
            if self.process.poll() is None or process_group_members(self.process.pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_text(self) -> str:
        """The whole log so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the log."""
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(no log)"


@dataclass(frozen=True)
class WorkerConfig:
    """How the Celery workers of a deployment run."""

    workers: int = 2
    concurrency: int = 4
    pool: str = "prefork"  # or "threads"

    def describe(self) -> str:
        """`2 x prefork/4`."""
        return f"{self.workers} x {self.pool}/{self.concurrency}"


class ProductionDeployment:
    """The production layout of docker-compose.yml on loopback, started and torn down by a benchmark.

    A fresh PostgreSQL database and an emptied Redis database (its own index), `migrate`, the web server as
    `manage.py serve --processes <web_processes>` (`EMBEDDED_WORKER=false`), `workers.workers` Celery workers and
    `beats` Celery beats, every process in
    its own process group with its own log. Use as a context manager: on exit everything is stopped, the database
    dropped and the Redis database emptied, whatever happened.
    """

    def __init__(
        self,
        *,
        redis_db: int,
        workers: WorkerConfig,
        beats: int = 0,
        extra_env: dict[str, str] | None = None,
        worker_loglevel: str = "INFO",
        start_timeout: float = 180,
        web_processes: int = 2,
    ):
        self.workers_config = workers
        self.beat_count = beats
        self.worker_loglevel = worker_loglevel
        self.start_timeout = start_timeout
        self.services = ProductionServices(redis_url=f"redis://{LOOPBACK}:6379/{redis_db}", flush_redis=True)
        env = {
            "EMBEDDED_WORKER": "false",
            **(extra_env or {}),
        }
        self.server = ServerProcess(
            extra_env=env, services=self.services, start_timeout=start_timeout, web_processes=web_processes
        )
        self.workers: list[BackgroundProcess] = []
        self.beats: list[BackgroundProcess] = []
        self._stack = contextlib.ExitStack()

    @property
    def tmp(self) -> Path:
        """The deployment's temporary directory (logs, DATA_DIR, beat pid files)."""
        return self.server.tmp

    def _celery(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "claraverse", *args]

    def __enter__(self) -> ProductionDeployment:
        try:
            self._stack.enter_context(self.services)
            self._stack.enter_context(self.server)  # migrates, then serves
            config = self.workers_config
            for index in range(1, config.workers + 1):
                argv = self._celery(
                    "worker",
                    "--loglevel",
                    self.worker_loglevel,
                    "--pool",
                    config.pool,
                    "--concurrency",
                    str(config.concurrency),
                    "--hostname",
                    f"bench-worker{index}@%h",
                )
                worker = BackgroundProcess(
                    f"worker{index}", argv, env=self.server.env_vars, log_path=self.tmp / f"worker{index}.log"
                )
                self.workers.append(worker)
                self._stack.callback(worker.stop)
                worker.start()
            for index in range(1, self.beat_count + 1):
                argv = self._celery(
                    "beat",
                    "--loglevel",
                    "INFO",
                    "--pidfile",
                    str(self.tmp / f"beat{index}.pid"),
                    "--schedule",
                    str(self.tmp / f"beat{index}-schedule"),
                )
                beat_process = BackgroundProcess(
                    f"beat{index}", argv, env=self.server.env_vars, log_path=self.tmp / f"beat{index}.log"
                )
                self.beats.append(beat_process)
                self._stack.callback(beat_process.stop)
                beat_process.start()
            for worker in self.workers:
                worker.wait_for_log(" ready.", timeout=self.start_timeout)
            for beat_process in self.beats:
                beat_process.wait_for_log("beat: Starting...", timeout=self.start_timeout)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()  # beats, workers, web, then the database and Redis

    def pause_workers(self) -> None:
        """SIGSTOP every worker's process group: messages queue up in Redis meanwhile."""
        for worker in self.workers:
            worker.signal_group(signal.SIGSTOP)

    def resume_workers(self) -> None:
        """SIGCONT every worker's process group."""
        for worker in self.workers:
            worker.signal_group(signal.SIGCONT)

    def cpu_snapshot(self) -> dict[str, float]:
        """CPU seconds so far: web, workers (all groups), beats, this database's PostgreSQL backends, redis-server
        (shared with anyone else using it), this benchmark process, and the machine's busy and total seconds."""
        import resource

        busy, total = machine_cpu_seconds()
        backend = f" {self.services.database} "
        own = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "web": process_group_cpu_seconds(self.server.pid),
            "workers": sum(worker.cpu_seconds() for worker in self.workers),
            "beats": sum(beat_process.cpu_seconds() for beat_process in self.beats),
            "postgres": processes_cpu_seconds(lambda cmd: cmd.startswith("postgres: ") and backend in cmd),
            "redis": processes_cpu_seconds(lambda cmd: cmd.startswith("redis-server")),
            "client": own.ru_utime + own.ru_stime,
            "machine_busy": busy,
            "machine_total": total,
        }

    def shell(self, code: str, *, timeout: float) -> None:
        """Run Python code with `manage.py shell -c` under the deployment's settings (its output goes to the log)."""
        self.server.manage("shell", "-c", code, timeout=timeout)

    def logs_tail(self, lines: int = 30) -> str:
        """The last lines of every process's log, for a failure report."""
        parts = [f"--- web\n{self.server.log_tail(lines)}"]
        parts += [f"--- {process.name}\n{process.log_tail(lines)}" for process in self.workers + self.beats]
        return "\n".join(parts)


def cpu_usage(before: dict[str, float], after: dict[str, float], count: int) -> dict[str, float]:
    """CPU used between two `cpu_snapshot`s: seconds per role, milliseconds per item, and cores busy on average."""
    used = {name: after[name] - before[name] for name in before}
    wall_cores = used.pop("machine_total")
    machine = used.pop("machine_busy")
    cores = os.cpu_count() or 1
    elapsed = wall_cores / cores
    other = max(0.0, machine - sum(used.values()))  # the kernel, other PostgreSQL processes, other users
    result: dict[str, float] = {"elapsed_s": round(elapsed, 3), "machine_busy_fraction": round(machine / wall_cores, 3)}
    for name, seconds in [*used.items(), ("other", other), ("machine", machine)]:
        result[f"{name}_cpu_s"] = round(seconds, 3)
        result[f"{name}_cpu_ms_per_item"] = round(seconds * 1000 / max(1, count), 3)
    return result


def add_worker_arguments(parser: Any) -> None:
    """The worker options every production-like benchmark takes."""
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    # threads/8 drained the most on 2 cores: prefork adds parent<->child IPC and a process per slot (bench/README.md).
    parser.add_argument("--concurrency", type=int, default=8, help="--concurrency of each worker")
    parser.add_argument("--pool", choices=["prefork", "threads", "solo"], default="threads", help="worker pool")
    parser.add_argument("--worker-loglevel", default="INFO", help="workers' --loglevel (docker-compose uses INFO)")
    parser.add_argument("--web-processes", type=int, default=2, help="web processes (`serve --processes`)")


def install_sigterm_handler() -> None:
    """Turn SIGTERM into SystemExit so that context managers stop the deployment and drop the database."""

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


# --- Reporting ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One row of a benchmark's table: a measured value, and the target it is held against (if any)."""

    name: str
    value: float | int | str
    unit: str = ""
    target: float | None = None  # the value must stay below this (or compare as `comparison` says)
    comparison: str = "<"  # how the value must compare with the target: one of COMPARISONS

    @property
    def verdict(self) -> str:
        """`pass` or `miss` against the target; empty when the figure has none."""
        if self.target is None or not isinstance(self.value, int | float) or math.isnan(self.value):
            return ""
        return "pass" if COMPARISONS[self.comparison](self.value, self.target) else "miss"

    @property
    def target_text(self) -> str:
        """The target as printed, e.g. `< 5`, `>= 150`; empty without a target."""
        return f"{self.comparison} {self.target:g}" if self.target is not None else ""

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON."""
        return {
            "figure": self.name,
            "value": self.value,
            "unit": self.unit,
            "target": self.target_text or None,
            "verdict": self.verdict or None,
        }


COMPARISONS = {
    "<": lambda value, target: value < target,
    "<=": lambda value, target: value <= target,
    ">=": lambda value, target: value >= target,
    "==": lambda value, target: value == target,
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
        target = f"{figure.target_text} {figure.unit}".rstrip() if figure.target is not None else ""
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


def run_and_report(
    name: str,
    run: Callable[[], dict[str, Any]],
    figures_of: Callable[[dict[str, Any]], list[Figure]],
    *,
    config: dict[str, Any],
    title: Callable[[dict[str, Any]], str] | None = None,
) -> int:
    """A benchmark's `main`: run it, print its table (under `title(results)`), save it; 0 unless the run failed."""
    started = time.monotonic()
    try:
        results = run()
    except BenchError as exc:
        print(f"{name} benchmark failed: {exc}", file=sys.stderr)
        return 1
    results["wall_time_s"] = round(time.monotonic() - started, 1)
    figures = figures_of(results)
    print()
    if title is not None:
        print(title(results))
    print(format_table(figures))
    path = write_results(
        name,
        {
            "benchmark": name,
            "finished_at": utc_now(),
            "config": config,
            "machine": machine_info(),
            "figures": [figure.as_dict() for figure in figures],
            **results,
        },
    )
    with contextlib.suppress(ValueError):
        path = path.relative_to(REPO_DIR)
    print(f"\nsaved {path}")
    return 0


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
