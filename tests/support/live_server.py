"""A real server process (`manage.py serve`: daphne plus the embedded worker) for end-to-end tests."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin-passphrase-" + secrets.token_hex(4)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class LiveServer:
    """A running server: its base URLs and the process."""

    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def call(self, method: str, path: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
        """One JSON request; answers (status, parsed body or {})."""
        request = urllib.request.Request(
            self.http_url + path, method=method, data=json.dumps(body).encode() if body is not None else None
        )
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else {}
        except urllib.error.HTTPError as error:
            raw = error.read()
            return error.code, json.loads(raw) if raw else {}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def server_environment(data_dir: Path, **overrides: str) -> dict[str, str]:
    """The embedded default with fresh keys, this test's data directory and no developer .env."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DATABASE_", "REDIS_", "CELERY_"))}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(40),
        ENCRYPTION_KEYS=base64.urlsafe_b64encode(os.urandom(32)).decode(),
        ENV_FILE="",
        DATA_DIR=str(data_dir),
        DJANGO_SUPERUSER_PASSWORD=ADMIN_PASSWORD,
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


def start_live_server(
    data_dir: Path, *, timeout: float = 60.0, serve_args: tuple[str, ...] = (), **overrides: str
) -> LiveServer:
    """Migrate, create the admin and serve on a free port (`manage.py serve` plus `serve_args`); returns once
    /health answers."""
    env = server_environment(data_dir, **overrides)
    manage = [sys.executable, str(PROJECT_ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, check=True, cwd=PROJECT_ROOT)
    subprocess.run(
        [*manage, "createsuperuser", "--noinput", "--email", ADMIN_EMAIL],
        env=env,
        check=True,
        cwd=PROJECT_ROOT,
        capture_output=True,
    )
    port = free_port()
    log_path = data_dir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*manage, "serve", "--port", str(port), *serve_args],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = LiveServer(port=port, process=process, log_path=log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        try:
            if server.call("GET", "/health")[0] == 200:
                return server
        except OSError:
            pass
        time.sleep(0.2)
    stop_live_server(server)
    raise RuntimeError(f"server did not answer /health in {timeout} s:\n{server.log()}")


def stop_live_server(server: LiveServer) -> None:
    """Ctrl-C the whole process group, as a user would, then make sure it is gone."""
    try:
        os.killpg(server.process.pid, signal.SIGINT)
        server.process.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=5)
