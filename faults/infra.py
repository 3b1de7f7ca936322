"""The machinery of the fault scenarios: a throwaway PostgreSQL cluster and Redis server, and the app against them.

Nothing here touches the machine's shared PostgreSQL (5432) or Redis (6379): the cluster is made with `initdb` in a
temporary directory and both servers listen on free loopback ports. Every process is a child of this one, started
with `setpriv --pdeathsig` where available so that even a killed `python -m faults` leaves nothing running, and
stopped explicitly on every way out (normal end, failure, Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (  # the benchmarks' process runner, loopback helpers and environment rules
    _HTTP,
    HIGH_RATE_LIMIT,
    INHERITED_ENV,
    LOOPBACK,
    REPO_DIR,
    BackgroundProcess,
    BenchError,
    free_port,
    fresh_encryption_key,
)
from bench.trigger import FINISHED

# Short recovery settings: what production does in minutes happens here in seconds.
RECOVERY_ENV = {
    "EXECUTION_HEARTBEAT_SECONDS": "1",
    "EXECUTION_STALE_SECONDS": "6",
    "EXECUTION_REQUEUE_SECONDS": "8",
    "EXECUTION_REAPER_INTERVAL_SECONDS": "2",
}
# The longest a worker loss or a lost queue message may take to be noticed, with some slack for 2 busy cores.
RECOVERY_BOUND_SECONDS = 6 + 8 + 2 + 10


class FaultError(Exception):
    """A scenario's check failed (the verdict's reason), or its set-up did."""


# --- Small helpers ------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.2, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy (returned); FaultError after `timeout` seconds.

    Exceptions raised by the predicate count as "not yet" (a service may be down meanwhile).
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            suffix = f" (last error: {last_error!r})" if last_error else ""
            raise FaultError(f"{what} not reached within {timeout:.0f} s{suffix}")
        time.sleep(interval)


def http_call(
    method: str,
    url: str,
    body: Any = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, Any, float]:
    """One JSON request: (status, parsed body or None, seconds taken). Status 0 means no answer (refused, timeout)."""
    data = None if body is None else json.dumps(body).encode()
    all_headers = {"Accept": "application/json", **(headers or {})}
    if data is not None:
        all_headers["Content-Type"] = "application/json"
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    began = time.monotonic()
    try:
        with _HTTP.open(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        return 0, {"transport_error": repr(exc)}, time.monotonic() - began
    elapsed = time.monotonic() - began
    try:
        return status, (json.loads(raw) if raw else None), elapsed
    except ValueError:
        return status, {"raw": raw[:300].decode(errors="replace")}, elapsed


def expect(method: str, url: str, body: Any = None, *, token: str | None = None, status: int = 200, **kw: Any) -> Any:
    """A JSON request that must answer `status`; its body. FaultError otherwise."""
    got, payload, _ = http_call(method, url, body, token=token, **kw)
    if got != status:
        raise FaultError(f"{method} {url} answered {got}, expected {status}: {str(payload)[:300]}")
    return payload


def _setpriv() -> str | None:
    return shutil.which("setpriv")


def guarded_argv(argv: list[str], *, death_signal: str = "KILL", user: str | None = None) -> list[str]:
    """`argv` run through setpriv: killed with `death_signal` when this process dies, optionally as `user`."""
    setpriv = _setpriv()
    if setpriv is None:
        if user is not None:
            raise FaultError("setpriv (util-linux) is needed to run PostgreSQL as a non-root user")
        return argv
    prefix = [setpriv, "--pdeathsig", death_signal]
    if user is not None:
        entry = pwd.getpwnam(user)
        prefix += [f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"]
    return [*prefix, "--", *argv]


def _stop_popen(process: subprocess.Popen | None, signum: int, timeout: float) -> None:
    """Send `signum` to a child, wait for it, SIGKILL it if it lingers."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signum)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(timeout=10)


# --- PostgreSQL -----------------------------------------------------------------------------------


def postgres_bindir() -> Path:
    """The directory of `initdb` and `postgres`: FAULTS_PG_BINDIR, else the newest /usr/lib/postgresql/*/bin."""
    configured = os.environ.get("FAULTS_PG_BINDIR")
    if configured:
        return Path(configured)
    candidates = glob.glob("/usr/lib/postgresql/*/bin/postgres")

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.split("/")[-3]))

    if candidates:
        return Path(max(candidates, key=version)).parent
    found = shutil.which("postgres") or shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise FaultError("no PostgreSQL server binaries found (apt-get install postgresql, or set FAULTS_PG_BINDIR)")


class PostgresCluster:
    """A PostgreSQL cluster of its own: `initdb` in a temp directory, trust auth, a free loopback port.

    As root the server runs as the `postgres` user (PostgreSQL refuses root) through setpriv. `stop("fast")` is
    `pg_ctl stop -m fast` (SIGINT to the postmaster), `start()` brings it back on the same port and data.
    """

    def __init__(self, root: Path):
        self.root = root / "postgres"
        self.data = self.root / "data"
        self.port = free_port()
        self.bindir = postgres_bindir()
        self.user = self._server_user()
        self.log_path = self.root / "postgres.log"
        self.process: subprocess.Popen | None = None
        self._log = None

    @staticmethod
    def _server_user() -> str | None:
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                pwd.getpwnam(name)
                return name
        raise FaultError("running as root needs a `postgres` (or `nobody`) user to run PostgreSQL as")

    @property
    def admin_url(self) -> str:
        """The maintenance database, as the `postgres` superuser."""
        return self.url("postgres")

    def url(self, database: str) -> str:
        """A libpq URL of one database of this cluster."""
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/{database}"

    def init(self) -> PostgresCluster:
        """initdb into a fresh directory (owned by the server's user)."""
        self.root.mkdir(parents=True)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        argv = [str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust"]
        argv += ["-E", "UTF8", "--no-locale", "--no-sync"]
        result = subprocess.run(
            guarded_argv(argv, user=self.user),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise FaultError(f"initdb failed ({result.returncode}): {result.stderr[-800:]}")
        return self

    def start(self, timeout: float = 30) -> None:
        """Start the postmaster (a child of this process) and wait until it accepts connections."""
        if self.process is not None and self.process.poll() is None:
            return
        argv = [
            str(self.bindir / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-k",
            str(self.root),
            "-c",
            f"listen_addresses={LOOPBACK}",
            "-c",
            "max_connections=300",
            "-c",
            "shared_buffers=32MB",
            # A throwaway cluster: durability is not what is tested, speed on 2 shared cores is welcome.
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]
        self._log = self.log_path.open("a")
        # SIGQUIT on our death: an immediate shutdown that also ends every backend.
        self.process = subprocess.Popen(
            guarded_argv(argv, death_signal="QUIT", user=self.user),
            cwd=self.root,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self._accepts, timeout=timeout, what=f"PostgreSQL on port {self.port} accepting connections")

    def _accepts(self) -> bool:
        import psycopg

        if self.process is not None and self.process.poll() is not None:
            raise FaultError(f"postgres exited with {self.process.returncode}: {self.log_tail()}")
        with psycopg.connect(self.admin_url, connect_timeout=2, autocommit=True) as conn:
            conn.execute("SELECT 1")
        return True

    def stop(self, mode: str = "fast", timeout: float = 30) -> float:
        """Shut down like `pg_ctl stop -m <mode>` (smart, fast or immediate); seconds it took."""
        signum = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode]
        began = time.monotonic()
        _stop_popen(self.process, signum, timeout)
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return time.monotonic() - began

    def connect(self, database: str) -> Any:
        """An autocommit psycopg connection to one database (the scenario's own reads)."""
        import psycopg

        return psycopg.connect(self.url(database), autocommit=True, connect_timeout=3)

    def create_database(self, name: str, template: str | None = None) -> None:
        """CREATE DATABASE, optionally as a copy of `template`."""
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            suffix = f' TEMPLATE "{template}"' if template else ""
            conn.execute(f'CREATE DATABASE "{name}"{suffix}')

    def drop_database(self, name: str) -> None:
        """DROP DATABASE ... WITH (FORCE); errors ignored (the cluster goes away anyway)."""
        import psycopg

        with (
            contextlib.suppress(Exception),
            psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn,
        ):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# --- Redis ----------------------------------------------------------------------------------------


class RedisServer:
    """A redis-server of its own on a free loopback port, without persistence.

    Without persistence a restart loses everything (queued and unacknowledged Celery messages, channel-layer groups,
    cache): the worst case, which the deployment must survive. With `appendonly yes`, as docs/operations.md
    recommends, a restart loses at most the last second, a subset of what is tested here.
    """

    def __init__(self, root: Path):
        self.dir = root / "redis"
        self.port = free_port()
        self.log_path = self.dir / "redis.log"
        self.process: subprocess.Popen | None = None
        self._log = None

    def url(self, db: int = 0) -> str:
        """`redis://127.0.0.1:<port>/<db>`."""
        return f"redis://{LOOPBACK}:{self.port}/{db}"

    def start(self, timeout: float = 15) -> None:
        """Start redis-server and wait for PONG."""
        if self.process is not None and self.process.poll() is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("redis-server")
        if binary is None:
            raise FaultError("redis-server not found (apt-get install redis-server)")
        argv = [binary, "--port", str(self.port), "--bind", LOOPBACK, "--dir", str(self.dir)]
        argv += ["--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", ""]
        self._log = self.log_path.open("a")
        self.process = subprocess.Popen(
            guarded_argv(argv), cwd=self.dir, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        wait_until(self.ping, timeout=timeout, what=f"Redis on port {self.port} answering PING")

    def ping(self) -> bool:
        """Whether the server answers PING (raw RESP over a socket: no client library state involved)."""
        with socket.create_connection((LOOPBACK, self.port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def command(self, *args: str) -> bytes:
        """Send one command, return the raw reply (enough for FLUSHALL)."""
        with socket.create_connection((LOOPBACK, self.port), timeout=3) as sock:
            parts = [f"*{len(args)}\r\n".encode()]
            for arg in args:
                parts.append(f"${len(arg.encode())}\r\n{arg}\r\n".encode())
            sock.sendall(b"".join(parts))
            return sock.recv(4096)

    def kill(self) -> None:
        """SIGKILL: no goodbye to clients, nothing saved."""
        _stop_popen(self.process, signal.SIGKILL, 10)
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        """Stop (SIGTERM, then SIGKILL)."""
        _stop_popen(self.process, signal.SIGTERM, 10)
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None


# --- Shared services for a whole run ----------------------------------------------------------------


class Services:
    """One PostgreSQL cluster and one Redis server for all the scenarios of a run, plus a migrated template database.

    Each scenario gets a fresh database copied from the template (`CREATE DATABASE ... TEMPLATE`), which saves
    migrating four times on two cores, and an emptied Redis.
    """

    TEMPLATE = "faults_template"

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="claraverse-faults-"))
        os.chmod(self.root, 0o755)  # the postgres user must reach its directory inside
        self.postgres = PostgresCluster(self.root)
        self.redis = RedisServer(self.root)
        self._migrated = False

    def __enter__(self) -> Services:
        try:
            self.postgres.init()
            self.postgres.start()
            self.redis.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        with contextlib.suppress(Exception):
            self.redis.stop()
        with contextlib.suppress(Exception):
            self.postgres.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def ensure_template(self, env: dict[str, str]) -> None:
        """Migrate the template database once."""
        if self._migrated:
            return
        self.postgres.create_database(self.TEMPLATE)
        migrate_env = {**env, "DATABASE_URL": self.postgres.url(self.TEMPLATE)}
        result = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=REPO_DIR,
            env=migrate_env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            raise FaultError(f"migrate failed: {(result.stdout + result.stderr)[-1500:]}")
        self._migrated = True

    def ensure_running(self) -> None:
        """Bring PostgreSQL and Redis back if a previous scenario left either stopped."""
        self.postgres.start()
        self.redis.start()


# --- The application -----------------------------------------------------------------------------------


class ManagedProcess(BackgroundProcess):
    """bench.common's process-group runner, run through setpriv so that it dies with us (even on SIGKILL)."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], log_path: Path):
        super().__init__(name, guarded_argv(argv), env=env, log_path=log_path)

    def running(self) -> bool:
        """Whether the process is still alive."""
        return self.process is not None and self.process.poll() is None

    def wait_for_log(self, needle: str, timeout: float) -> None:
        """Wait until `needle` appears in the log; FaultError if the process exits or time runs out."""
        try:
            super().wait_for_log(needle, timeout)
        except BenchError as exc:
            raise FaultError(str(exc)) from None


class Deployment:
    """daphne + Celery workers + one beat against a fresh database of `services`, with short recovery settings.

    The production layout of docker-compose.yml on loopback: plain `daphne claraverse.asgi:application`, `celery
    worker --pool threads`, `celery beat`, every process in its own process group with its own log. Use as a
    context manager: everything is stopped on exit and the database dropped.
    """

    def __init__(
        self,
        services: Services,
        name: str,
        *,
        workers: int = 1,
        concurrency: int = 4,
        beat: bool = True,
        web_processes: int = 1,
        extra_env: dict[str, str] | None = None,
    ):
        self.services = services
        self.name = name
        self.database = f"faults_{name.replace('-', '_')}_{secrets.token_hex(3)}"
        self.concurrency = concurrency
        self.worker_count = workers
        self.with_beat = beat
        self.ports = [free_port() for _ in range(web_processes)]  # one daphne each, as behind a load balancer
        self.port = self.ports[0]
        self.tmp = Path(tempfile.mkdtemp(prefix=f"claraverse-faults-{name}-"))
        self.admin_email = "faults-admin@example.com"
        self.admin_password = secrets.token_urlsafe(18)
        self.env = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
        self.env.update(
            DJANGO_SETTINGS_MODULE="claraverse.settings.base",
            ENV_FILE="",
            DEBUG="false",
            SECRET_KEY=secrets.token_urlsafe(50),
            ENCRYPTION_KEYS=fresh_encryption_key(),
            DATA_DIR=str(self.tmp / "data"),
            ALLOWED_HOSTS=f"{LOOPBACK},localhost",
            DATABASE_URL=services.postgres.url(self.database),
            REDIS_URL=services.redis.url(0),
            EMBEDDED_WORKER="false",
            RATE_LIMIT_GLOBAL_API=HIGH_RATE_LIMIT,
            RATE_LIMIT_PUBLIC_READ=HIGH_RATE_LIMIT,
            RATE_LIMIT_AUTHENTICATED=HIGH_RATE_LIMIT,
            RATE_LIMIT_WEBSOCKET=HIGH_RATE_LIMIT,
            RATE_LIMIT_IMAGE_PROXY=HIGH_RATE_LIMIT,
            QUOTA_FREE_EXECUTIONS_PER_DAY="10000000",
            QUOTA_FREE_MESSAGES_PER_DAY="10000000",
            OUTBOUND_ALLOWED_NETWORKS="127.0.0.0/8",  # the loopback peers that play LLM, API and receiver
            DJANGO_SUPERUSER_PASSWORD=self.admin_password,
            PYTHONUNBUFFERED="1",
            **RECOVERY_ENV,
        )
        self.env.update(extra_env or {})
        self.webs: list[ManagedProcess] = []
        self.workers: list[ManagedProcess] = []
        self.beat: ManagedProcess | None = None
        self._worker_serial = 0
        self._stack = contextlib.ExitStack()

    @property
    def base_url(self) -> str:
        """The web server's `http://127.0.0.1:<port>`."""
        return f"http://{LOOPBACK}:{self.port}"

    def url(self, path: str, web: int = 0) -> str:
        """An absolute URL on the (first, or `web`-th) web server."""
        return f"http://{LOOPBACK}:{self.ports[web]}{path}"

    def ws_url(self, path: str, token: str) -> str:
        """`ws://127.0.0.1:<port><path>?token=<token>`."""
        return f"ws://{LOOPBACK}:{self.port}{path}?token={token}"

    def __enter__(self) -> Deployment:
        self._stack.callback(shutil.rmtree, self.tmp, True)
        self._stack.callback(self._keep_logs)  # runs once every process has stopped, before the removal
        try:
            self.services.ensure_running()
            self.services.ensure_template(self.env)
            self.services.postgres.create_database(self.database, template=Services.TEMPLATE)
            self._stack.callback(self.services.postgres.drop_database, self.database)
            self.services.redis.command("FLUSHALL")
            self._manage("createsuperuser", "--noinput", "--email", self.admin_email)
            for index, port in enumerate(self.ports):
                argv = [sys.executable, "-m", "daphne", "-b", LOOPBACK, "-p", str(port), "claraverse.asgi:application"]
                self.webs.append(self._process(f"web{index + 1}" if index else "web", argv))
            for _ in range(self.worker_count):
                self.start_worker(wait=False)
            if self.with_beat:
                self.beat = self._celery(
                    "beat",
                    [
                        "beat",
                        "--loglevel",
                        "INFO",
                        "--pidfile",
                        str(self.tmp / "beat.pid"),
                        "--schedule",
                        str(self.tmp / "beat-schedule"),
                    ],
                )
            self.wait_healthy(timeout=60)
            for worker in self.workers:
                worker.wait_for_log(" ready.", timeout=60)
            if self.beat is not None:
                self.beat.wait_for_log("beat: Starting...", timeout=60)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def _keep_logs(self) -> None:
        """Copy the processes' logs to $FAULTS_LOGS_DIR/<scenario>/, when set (the temp directory goes away)."""
        target = os.environ.get("FAULTS_LOGS_DIR")
        if not target:
            return
        destination = Path(target) / self.name
        destination.mkdir(parents=True, exist_ok=True)
        for process in self.processes():
            with contextlib.suppress(OSError):
                shutil.copyfile(process.log_path, destination / process.log_path.name)

    def _manage(self, *args: str) -> None:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO_DIR,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise FaultError(f"manage.py {args[0]} failed: {(result.stdout + result.stderr)[-1500:]}")

    def _process(self, name: str, argv: list[str]) -> ManagedProcess:
        process = ManagedProcess(name, argv, env=self.env, log_path=self.tmp / f"{name}.log")
        self._stack.callback(process.stop)
        return process.start()

    def _celery(self, name: str, args: list[str]) -> ManagedProcess:
        return self._process(name, [sys.executable, "-m", "celery", "-A", "claraverse", *args])

    def wait_healthy(self, timeout: float) -> None:
        """Poll GET /health until it answers 200 `healthy`."""

        def healthy() -> bool:
            for web in self.webs:
                if not web.running():
                    raise FaultError(f"daphne exited; log:\n{web.log_tail()}")
            for index in range(len(self.ports)):
                status, payload, _ = http_call("GET", self.url("/health", index), timeout=5)
                if not (status == 200 and isinstance(payload, dict) and payload.get("status") == "healthy"):
                    return False
            return True

        try:
            wait_until(healthy, timeout=timeout, what="GET /health answering healthy")
        except FaultError as exc:
            raise FaultError(f"{exc}\n{self.logs_tail()}") from None

    def start_worker(self, *, wait: bool = True) -> ManagedProcess:
        """Start one more Celery worker (threads pool) and (by default) wait until it is ready."""
        self._worker_serial += 1
        name = f"worker{self._worker_serial}"
        worker = self._celery(
            name,
            [
                "worker",
                "--loglevel",
                "INFO",
                "--pool",
                "threads",
                "--concurrency",
                str(self.concurrency),
                "--hostname",
                f"faults-{name}@%h",
            ],
        )
        self.workers.append(worker)
        if wait:
            worker.wait_for_log(" ready.", timeout=60)
        return worker

    def kill_worker(self, worker: ManagedProcess) -> None:
        """SIGKILL the worker's whole process group: no clean shutdown, no message given back."""
        worker.signal_group(signal.SIGKILL)
        assert worker.process is not None
        worker.process.wait(timeout=10)

    def db(self) -> Any:
        """An autocommit psycopg connection to the deployment's database."""
        return self.services.postgres.connect(self.database)

    def execution_rows(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """id -> {status, error, created_at, started_at, completed_at} straight from the database."""
        with self.db() as conn:
            rows = conn.execute(
                "SELECT id, status, error, created_at, started_at, completed_at FROM executions_execution"
                " WHERE id = ANY(%s)",
                (ids,),
            ).fetchall()
        names = ("id", "status", "error", "created_at", "started_at", "completed_at")
        return {row[0]: dict(zip(names, row, strict=True)) for row in rows}

    def wait_finished(self, ids: list[str], *, timeout: float) -> dict[str, dict[str, Any]]:
        """Wait until every execution in `ids` has a final status; their rows. FaultError naming the stuck ones."""
        deadline = time.monotonic() + timeout
        rows: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                rows = self.execution_rows(ids)
                if len(rows) == len(ids) and all(row["status"] in FINISHED for row in rows.values()):
                    return rows
            time.sleep(0.3)
        stuck = {i: (rows.get(i) or {}).get("status", "missing") for i in ids}
        stuck = {i: s for i, s in stuck.items() if s not in FINISHED}
        raise FaultError(f"{len(stuck)} of {len(ids)} executions did not end within {timeout:.0f} s: {stuck}")

    def dead_processes(self) -> list[str]:
        """The names of processes that are no longer running (none should die of a fault)."""
        return [process.name for process in self.processes() if not process.running()]

    def processes(self) -> list[ManagedProcess]:
        """Every process started so far."""
        return [p for p in [*self.webs, *self.workers, self.beat] if p is not None]

    def logs_tail(self, lines: int = 15) -> str:
        """The end of every process's log, for a failure report."""
        return "\n".join(f"--- {p.name}\n{p.log_tail(lines)}" for p in self.processes())

    def logs_grep(self, pattern: str) -> list[str]:
        """Log lines of every process matching a regular expression."""
        regex = re.compile(pattern)
        return [
            f"{p.name}: {line}" for p in self.processes() for line in p.log_text().splitlines() if regex.search(line)
        ]

    # --- Set-up through the API ---

    def login(self, email: str, password: str) -> str:
        """An access token for these credentials."""
        body = {"email": email, "password": password}
        return expect("POST", self.url("/api/auth/login"), body)["access_token"]

    def admin_token(self) -> str:
        """An access token of the admin made at start."""
        return self.login(self.admin_email, self.admin_password)

    def register(self, email: str) -> str:
        """A new user's access token."""
        body = {"email": email, "password": secrets.token_urlsafe(18), "name": "Faults"}
        return expect("POST", self.url("/api/auth/register"), body, status=201)["access_token"]

    def add_model(self, admin_token: str, *, base_url: str, model_id: str) -> None:
        """An OpenAI-compatible provider at `base_url` with one streaming model."""
        provider = expect(
            "POST",
            self.url("/api/admin/providers"),
            {"name": "faults", "type": "openai_compatible", "base_url": base_url},
            token=admin_token,
            status=201,
        )
        expect(
            "POST",
            self.url("/api/admin/models"),
            {"id": model_id, "provider_id": provider["id"], "name": model_id, "supports_streaming": True},
            token=admin_token,
            status=201,
        )

    def create_agent(self, token: str, name: str, workflow: dict[str, Any]) -> str:
        """An agent with `workflow`; its id."""
        agent = expect("POST", self.url("/api/agents"), {"name": name}, token=token, status=201)
        expect("PUT", self.url(f"/api/agents/{agent['id']}/workflow"), workflow, token=token)
        return agent["id"]

    def create_key(self, token: str, agent_ids: list[str]) -> str:
        """An API key with the trigger scope; the raw key."""
        body = {"name": "faults", "scopes": ["trigger"], "agent_ids": agent_ids}
        return expect("POST", self.url("/api/keys"), body, token=token, status=201)["key"]

    def trigger(self, key: str, agent_id: str, body: dict[str, Any] | None = None, timeout: float = 30) -> tuple:
        """POST /api/trigger/:agentId: (status, payload, seconds)."""
        url = self.url(f"/api/trigger/{agent_id}")
        return http_call("POST", url, body or {"input": {}}, headers={"X-API-Key": key}, timeout=timeout)

    def trigger_ok(self, key: str, agent_id: str, body: dict[str, Any] | None = None) -> str:
        """A trigger that must be accepted; the execution id."""
        status, payload, _ = self.trigger(key, agent_id, body)
        if status != 202 or not isinstance(payload, dict) or not payload.get("execution_id"):
            raise FaultError(f"trigger answered {status}: {str(payload)[:300]}")
        return payload["execution_id"]


def node(node_id: str, node_type: str, **data: Any) -> dict[str, Any]:
    """One workflow node."""
    return {"id": node_id, "type": node_type, "position": {"x": 0, "y": 0}, "data": data}


def chain(*nodes: dict[str, Any]) -> dict[str, Any]:
    """A workflow whose nodes run one after another."""
    edges = [{"source": a["id"], "target": b["id"]} for a, b in itertools.pairwise(nodes)]
    return {"nodes": list(nodes), "edges": edges}


FAST_WORKFLOW = chain(
    node("start", "trigger", trigger_type="api"),
    node("shape", "transform", output={"n": "{{ input.n }}"}),
    node("out", "output", value="done {{ nodes.shape.n }}"),
)


def delay_workflow(seconds: float) -> dict[str, Any]:
    """trigger -> delay(seconds) -> output: an execution that stays running for a while, without any peer."""
    return chain(
        node("start", "trigger", trigger_type="api"),
        node("wait", "delay", seconds=seconds),
        node("out", "output", value="waited"),
    )


# --- Loopback peers ---------------------------------------------------------------------------------


class RawPeer:
    """A TCP server on loopback whose connections are handed to `behaviour(sock, stopping)` in threads.

    For misbehaving receivers: one that accepts and never answers, one that drips a byte at a time. Every
    connection is recorded (`connections`: wall-clock accept time and the request head it sent) and closed on stop,
    so no thread outlives the scenario.
    """

    def __init__(self, behaviour: Callable[[socket.socket, threading.Event], None]):
        self.behaviour = behaviour
        self.stopping = threading.Event()
        self.connections: list[PeerConnection] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((LOOPBACK, 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, name="raw-peer", daemon=True)

    def url(self, path: str = "/") -> str:
        """`http://127.0.0.1:<port><path>`."""
        return f"http://{LOOPBACK}:{self.port}{path}"

    def __enter__(self) -> RawPeer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
        self._thread.join(5)

    def _accept_loop(self) -> None:
        self._listener.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connection = PeerConnection(accepted_at=time.time())
            with self._lock:
                self.connections.append(connection)
                self._sockets.append(sock)
            threading.Thread(target=self._serve, args=(sock, connection), daemon=True).start()

    def _serve(self, sock: socket.socket, connection: PeerConnection) -> None:
        with contextlib.suppress(OSError):
            sock.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                head += chunk
            connection.head = head.decode("latin-1")
            self.behaviour(sock, self.stopping)

    def deliveries(self) -> dict[str, float]:
        """`X-ClaraVerse-Delivery` (execution id:attempt) -> when its connection was accepted (Unix time)."""
        found = {}
        for connection in list(self.connections):
            match = re.search(r"(?im)^x-claraverse-delivery:\s*(\S+)", connection.head)
            if match:
                found[match.group(1)] = connection.accepted_at
        return found


@dataclass
class PeerConnection:
    """One connection a RawPeer accepted."""

    accepted_at: float  # time.time()
    head: str = ""  # the request line and headers


def never_answer(sock: socket.socket, stopping: threading.Event) -> None:
    """Say nothing, holding the connection open until the client gives up."""
    sock.settimeout(0.5)
    while not stopping.is_set():
        try:
            if not sock.recv(65536):
                return  # the client gave up
        except TimeoutError:
            continue


def drip_feed(sock: socket.socket, stopping: threading.Event) -> None:
    """Answer 200 with a declared body (below the 64 KiB cap on webhook answers), one byte every 0.5 s.

    Every single read succeeds, so only an overall deadline ends the call.
    """
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 20000\r\n\r\n")
    while not stopping.wait(0.5):
        sock.sendall(b".")


# --- Verdicts ---------------------------------------------------------------------------------------------


class Verdict:
    """What one scenario found: the checks that failed (its reason to FAIL) and the figures it measured."""

    def __init__(self, name: str):
        self.name = name
        self.failures: list[str] = []
        self.figures: dict[str, str] = {}
        self.started = time.monotonic()

    def check(self, condition: Any, failure: str) -> bool:
        """Record `failure` unless `condition` holds; whether it held."""
        if not condition:
            self.failures.append(failure)
        return bool(condition)

    def figure(self, name: str, value: float | int | str, unit: str = "s") -> None:
        """Note a measured value for the summary (seconds by default)."""
        self.figures[name] = f"{value:.1f}{unit}" if isinstance(value, float) else f"{value}{unit}"

    @property
    def passed(self) -> bool:
        """No check failed."""
        return not self.failures

    def summary(self) -> str:
        """The figures, `name=value` separated by commas."""
        return ", ".join(f"{name}={value}" for name, value in self.figures.items())
