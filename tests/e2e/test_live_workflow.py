"""Issue 4 over a real server: an agent's workflow runs in the embedded worker and its events reach the
socket that started it and a second one that subscribes."""

import json
import time

import pytest
from websockets.sync.client import connect

from tests.support.live_server import start_live_server, stop_live_server

pytestmark = pytest.mark.timeout(120)


def node(node_id, node_type, **data):
    return {"id": node_id, "type": node_type, "position": {"x": 0, "y": 0}, "data": data}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = start_live_server(tmp_path_factory.mktemp("live-workflow"))
    yield server
    stop_live_server(server)


def frames_until_complete(socket, timeout=10.0):
    frames = []
    while True:
        frame = json.loads(socket.recv(timeout=timeout))
        frames.append(frame)
        if frame["type"] in {"execution_complete", "error"}:
            return frames


def test_execute_and_subscribe_over_a_real_server(live):
    status, registered = live.call(
        "POST", "/api/auth/register", {"email": "flow@example.com", "password": "a long flow passphrase"}
    )
    token = registered["access_token"]
    status, agent = live.call("POST", "/api/agents", {"name": "Live flow"}, token=token)
    assert status == 201
    nodes = [
        node("start", "trigger", trigger_type="manual"),
        node("check", "condition", left="{{ input.n }}", operator="gt", right="1"),
        node("big", "transform", output="big {{ input.n }}"),
        node("small", "transform", output="small {{ input.n }}"),
        node("wait", "delay", seconds=0.2),
        node("out", "output", value="{{ nodes.big or nodes.small }}"),
    ]
    edges = [
        {"source": "start", "target": "check"},
        {"source": "check", "target": "big", "source_handle": "true"},
        {"source": "check", "target": "small", "source_handle": "false"},
        {"source": "big", "target": "wait"},
        {"source": "small", "target": "wait"},
        {"source": "wait", "target": "out"},
    ]
    status, body = live.call(
        "PUT", f"/api/agents/{agent['id']}/workflow", {"nodes": nodes, "edges": edges}, token=token
    )
    assert status == 200, body

    with connect(f"{live.ws_url}/ws/workflow?token={token}") as socket:
        began = time.monotonic()
        socket.send(json.dumps({"type": "execute", "payload": {"agent_id": agent["id"], "input": {"n": 5}}}))
        frames = frames_until_complete(socket)
        elapsed = time.monotonic() - began
    assert frames[0]["type"] == "execution_start"
    execution_id = frames[0]["payload"]["execution_id"]
    final = frames[-1]["payload"]
    assert final["status"] == "completed" and final["output"] == "big 5", final
    statuses = {f["payload"]["node_id"]: f["payload"]["status"] for f in frames if f["type"] == "node_complete"}
    assert statuses["small"] == "skipped" and statuses["wait"] == "completed"
    # A liveness bound, not a benchmark: events stuck in the in-memory layer used to wait for a wake-up.
    assert elapsed < 5, f"events took {elapsed:.1f} s to arrive"

    status, stored = live.call("GET", f"/api/executions/{execution_id}", token=token)
    assert stored["status"] == "completed" and len(stored["node_results"]) == 6

    with connect(f"{live.ws_url}/ws/workflow?token={token}") as second:
        second.send(json.dumps({"type": "subscribe", "payload": {"execution_id": execution_id}}))
        replay = frames_until_complete(second)
    assert [f["type"] for f in replay] == [f["type"] for f in frames[1:]]


@pytest.mark.timeout(150)
def test_a_schedule_fires_in_the_running_server(live):
    status, registered = live.call(
        "POST", "/api/auth/register", {"email": "cron@example.com", "password": "a long cron passphrase"}
    )
    token = registered["access_token"]
    agent = live.call("POST", "/api/agents", {"name": "Every minute"}, token=token)[1]
    nodes = [node("start", "trigger", trigger_type="schedule"), node("out", "output", value="tick {{ input.n }}")]
    live.call(
        "PUT",
        f"/api/agents/{agent['id']}/workflow",
        {"nodes": nodes, "edges": [{"source": "start", "target": "out"}]},
        token=token,
    )
    status, schedule = live.call(
        "POST",
        f"/api/agents/{agent['id']}/schedule",
        {"cron": "* * * * *", "timezone": "Asia/Kolkata", "input": {"n": 7}},
        token=token,
    )
    assert status == 201, schedule
    deadline = time.monotonic() + 100
    executions = []
    while time.monotonic() < deadline and not executions:
        time.sleep(2)
        executions = live.call("GET", f"/api/agents/{agent['id']}/executions?trigger=schedule", token=token)[1][
            "executions"
        ]
    assert executions, f"no scheduled run within 100 s:\n{live.log()[-3000:]}"
    first = executions[-1]
    deadline = time.monotonic() + 20
    while first["status"] in {"pending", "running"} and time.monotonic() < deadline:
        time.sleep(0.5)
        first = live.call("GET", f"/api/executions/{first['id']}", token=token)[1]
    assert first["status"] == "completed" and first["output"] == "tick 7"
    assert live.call("GET", f"/api/agents/{agent['id']}/schedule", token=token)[1]["last_run_at"] is not None
