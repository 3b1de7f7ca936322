"""Issue 3's "done when", over a real daphne server: an admin registers a provider and a model
through the API, a user chats over /ws/chat, with tools, stop, a bad token and an unknown model."""

import json
import time

import pytest
from websockets.sync.client import connect

from tests.support.live_server import ADMIN_EMAIL, ADMIN_PASSWORD, start_live_server, stop_live_server
from tests.support.llm_server import Reply

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = start_live_server(tmp_path_factory.mktemp("live"))
    yield server
    stop_live_server(server)
    assert server.process.returncode is not None


def receive_until_done(socket, timeout=10.0) -> list[dict]:
    frames = []
    while True:
        frame = json.loads(socket.recv(timeout=timeout))
        frames.append(frame)
        if frame["type"] == "error" or (frame["type"] == "stream" and frame["payload"].get("done")):
            return frames


def test_admin_sets_up_a_model_and_a_user_chats(live, llm_server):
    status, body = live.call("POST", "/api/auth/login", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert status == 200 and body["user"]["role"] == "admin"
    admin = body["access_token"]
    status, provider = live.call(
        "POST",
        "/api/admin/providers",
        {
            "name": "loopback",
            "type": "openai_compatible",
            "base_url": llm_server.base_url("/v1"),
            "api_key": "sk-live-secret-abcdefghijklmnop",
        },
        token=admin,
    )
    assert status == 201 and "sk-live-secret" not in json.dumps(provider)
    status, _model = live.call(
        "POST", "/api/admin/models", {"id": "loop/model:1", "provider_id": provider["id"]}, token=admin
    )
    assert status == 201
    assert [m["id"] for m in live.call("GET", "/api/models")[1]["models"]] == ["loop/model:1"]

    status, registered = live.call(
        "POST", "/api/auth/register", {"email": "chatter@example.com", "password": "a long chat passphrase"}
    )
    assert status == 201
    token = registered["access_token"]

    llm_server.enqueue(
        # 50 ms apart, each chunk is its own frame (chunks that queue up behind a busy socket are merged).
        Reply(text="Hello there, friend.", chunks=4, chunk_interval=0.05, prompt_tokens=9, completion_tokens=5),
        Reply(tool_calls=[("calculate_math", {"expression": "12*12"})]),
        Reply(text="It is 144.", chunks=2),
        Reply(text="long " * 200, chunks=200, chunk_interval=0.02),
    )
    with connect(f"{live.ws_url}/ws/chat?token={token}") as socket:
        socket.send(
            json.dumps(
                {"type": "chat", "payload": {"conversation_id": "c1", "message": "Hi!", "model": "loop/model:1"}}
            )
        )
        frames = receive_until_done(socket)
        assert len(frames) == 5 and all(f["type"] == "stream" for f in frames)
        assert "".join(f["payload"]["content"] for f in frames) == "Hello there, friend."
        assert frames[-1]["payload"]["usage"] == {"prompt_tokens": 9, "completion_tokens": 5}

        socket.send(
            json.dumps(
                {
                    "type": "chat",
                    "payload": {
                        "conversation_id": "c1",
                        "message": "12*12?",
                        "model": "loop/model:1",
                        "tools": ["calculate_math"],
                    },
                }
            )
        )
        frames = receive_until_done(socket)
        assert [f["type"] for f in frames[:2]] == ["tool_call", "tool_result"]
        assert frames[1]["payload"]["result"] == {"expression": "12*12", "result": 144}
        assert "".join(f["payload"]["content"] for f in frames[2:]) == "It is 144."

        socket.send(
            json.dumps(
                {"type": "chat", "payload": {"conversation_id": "c2", "message": "Go on", "model": "loop/model:1"}}
            )
        )
        assert json.loads(socket.recv(timeout=10))["payload"]["done"] is False
        socket.send(json.dumps({"type": "stop", "payload": {"conversation_id": "c2"}}))
        final = receive_until_done(socket)[-1]["payload"]
        assert final["done"] is True and final["stopped"] is True

        socket.send(
            json.dumps({"type": "chat", "payload": {"conversation_id": "c3", "message": "x", "model": "missing/model"}})
        )
        error = json.loads(socket.recv(timeout=10))
        assert error["type"] == "error" and error["payload"]["code"] == "NOT_FOUND"
        socket.send(json.dumps({"type": "ping", "payload": {}}))
        assert json.loads(socket.recv(timeout=5))["type"] == "pong"

    assert "sk-live-secret" not in live.log()


def test_bad_token_gets_4401(live):
    with connect(f"{live.ws_url}/ws/chat?token=not-a-token") as socket:
        frame = json.loads(socket.recv(timeout=5))
        assert frame["payload"]["code"] == "UNAUTHORIZED"
        with pytest.raises(Exception) as closed:
            socket.recv(timeout=5)
    assert getattr(closed.value, "rcvd", None) is not None and closed.value.rcvd.code == 4401


def test_a_client_leaving_mid_answer_stops_it_quietly(live, llm_server):
    admin = live.call("POST", "/api/auth/login", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})[1]["access_token"]
    provider = live.call(
        "POST",
        "/api/admin/providers",
        {"name": "leaving", "type": "openai_compatible", "base_url": llm_server.base_url("/v1")},
        token=admin,
    )[1]
    assert (
        live.call("POST", "/api/admin/models", {"id": "leave/model:1", "provider_id": provider["id"]}, token=admin)[0]
        == 201
    )
    token = live.call(
        "POST", "/api/auth/register", {"email": "leaver@example.com", "password": "a long leaving passphrase"}
    )[1]["access_token"]
    llm_server.enqueue(Reply(text="word " * 100, chunks=100, chunk_interval=0.02))
    with connect(f"{live.ws_url}/ws/chat?token={token}") as socket:
        socket.send(
            json.dumps(
                {"type": "chat", "payload": {"conversation_id": "gone", "message": "Hi", "model": "leave/model:1"}}
            )
        )
        assert json.loads(socket.recv(timeout=10))["type"] == "stream"
    # The socket is closed mid-answer: the generation stops and its last frames are not sent to a closed socket.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        history = live.call("GET", "/api/chats/gone", token=token)
        if history[0] == 200:
            break
        time.sleep(0.2)
    assert history[0] == 200  # what was generated before the client left is saved
    time.sleep(0.5)
    assert "Task exception was never retrieved" not in live.log()
    assert "Attempt to send on a closed protocol" not in live.log()
