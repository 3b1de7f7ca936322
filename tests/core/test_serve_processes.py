"""`manage.py serve --processes N`: several daphne processes on one port, supervised by the command."""

import os
import signal
import subprocess
import time
import urllib.request

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from tests.support.live_server import start_live_server, stop_live_server

IN_MEMORY_LAYER = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@override_settings(CHANNEL_LAYERS=IN_MEMORY_LAYER)
def test_several_processes_need_a_shared_channel_layer():
    with pytest.raises(CommandError, match="shared channel layer"):
        call_command("serve", "--processes", "2")


def test_processes_must_be_positive():
    with pytest.raises(CommandError, match="at least 1"):
        call_command("serve", "--processes", "0")


def children_of(pid: int) -> list[int]:
    output = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(line) for line in output.split()]


def health_status(url: str) -> int:
    with urllib.request.urlopen(url + "/health", timeout=10) as response:
        return response.status


@pytest.mark.timeout(90)
@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="several web processes need Redis")
def test_two_processes_serve_one_port_and_a_dead_one_is_replaced(tmp_path):
    server = start_live_server(
        tmp_path,
        serve_args=("--processes", "2", "--no-access-log"),
        REDIS_URL=os.environ["REDIS_URL"],
        EMBEDDED_WORKER="false",
    )
    serving_since = time.monotonic()  # the children started before this
    try:
        children = children_of(server.process.pid)
        assert len(children) == 2
        # Each request opens a new connection: the kernel hands them to either process.
        assert [health_status(server.http_url) for _ in range(20)] == [200] * 20
        status, registered = server.call(
            "POST", "/api/auth/register", {"email": "multi@example.com", "password": "a long multi passphrase"}
        )
        assert status == 201
        assert server.call("GET", "/api/auth/me", token=registered["access_token"])[0] == 200

        # A child that dies after running a while is replaced (one that dies at start-up stops the server).
        time.sleep(max(0.0, 10.5 - (time.monotonic() - serving_since)))
        os.kill(children[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = children_of(server.process.pid)
            if len(now) == 2 and children[0] not in now:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"no replacement child: {children_of(server.process.pid)}\n{server.log()}")
        time.sleep(3)  # the new child imports Django before it accepts; the other one serves meanwhile
        assert [health_status(server.http_url) for _ in range(10)] == [200] * 10
    finally:
        stop_live_server(server)
    assert children_of(server.process.pid) == []
