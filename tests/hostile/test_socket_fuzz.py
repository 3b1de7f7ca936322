"""`/ws/chat` and `/ws/workflow` under a hostile client (CONTRACT §12).

Whatever arrives, the answer is one `error` frame with a contract code (VALIDATION_ERROR for bad
frames), never a close, a crash or a stack trace, and the socket still answers `ping` afterwards.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from rest_framework_simplejwt.tokens import AccessToken

from accounts.quotas import usage_today
from accounts.services import tokens_issue
from agents.services import agent_create
from chats.consumers import ChatConsumer
from claraverse.errors import ApplicationError
from claraverse.parsers import MAX_JSON_DEPTH
from executions.consumers import WorkflowConsumer
from executions.models import Execution
from executions.services import execution_create
from tests.hostile.sockets import (
    BAD_LISTS,
    BAD_NUMBERS,
    BAD_STRINGS,
    NOT_A_BOOLEAN,
    NOT_A_LIST,
    NOT_A_NUMBER,
    NOT_A_STRING,
    NOT_AN_OBJECT,
    FrameSocket,
    connect,
    deep_object,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("close_async_db_connections", "unthrottled"),
]

ROUTES = {"/ws/chat": ChatConsumer, "/ws/workflow": WorkflowConsumer}


@pytest.fixture
def token(user):
    return tokens_issue(user=user).access_token


def _frames_past_the_limits() -> dict[str, dict]:
    limit = settings.WEBSOCKET_MAX_FRAME_BYTES
    return {
        "oversized frame": {"text": json.dumps({"type": "ping", "payload": {"pad": "x" * limit}})},
        # Under the limit in characters, over it in UTF-8 bytes.
        "oversized in bytes": {"text": '{"type": "ping", "payload": {"p": "' + "€" * (limit // 3 + 8) + '"}}'},
        "nested past the depth limit": {"text": json.dumps({"type": "ping", "payload": deep_object(MAX_JSON_DEPTH)})},
        "10,000 nested arrays": {"text": "[" * 10_000 + "]" * 10_000},
        "10,000 nested objects": {"text": '{"a":' * 10_000 + "1" + "}" * 10_000},
    }


JUNK = {
    "not JSON": {"text": "not json"},
    "truncated JSON": {"text": '{"type": "ping"'},
    "empty text": {"text": ""},
    "binary": {"binary": b"\x00\x01\xff"},
    "binary JSON": {"binary": b'{"type": "ping", "payload": {}}'},
    "an array": {"text": "[]"},
    "an array of frames": {"text": '[{"type": "ping", "payload": {}}]'},
    "null": {"text": "null"},
    "a string": {"text": '"ping"'},
    "a number": {"text": "42"},
    "a huge number": {"text": "1" + "0" * 5000},
    "true": {"text": "true"},
    "NaN": {"text": '{"type": "ping", "payload": {"n": NaN}}'},
    "Infinity": {"text": '{"type": "ping", "payload": {"n": -Infinity}}'},
    "1e999": {"text": '{"type": "ping", "payload": {"n": 1e999}}'},
    "duplicate keys": {"text": '{"type": "ping", "type": "chat", "payload": {}}'},
    "a lone surrogate": {"text": '{"type": "\\ud800", "payload": {}}'},
    "a lone surrogate in a payload": {"text": '{"type": "chat", "payload": {"message": "\\udfff"}}'},
    "a NUL in a payload": {"text": '{"type": "chat", "payload": {"message": "a\\u0000b"}}'},
    "a NUL in a key": {"text": '{"type": "ping", "payload": {"\\u0000": 1}}'},
    "no type": {"frame": {"payload": {}}},
    "type null": {"frame": {"type": None, "payload": {}}},
    "type a number": {"frame": {"type": 1, "payload": {}}},
    "type a huge number": {"frame": {"type": 10**400, "payload": {}}},
    "type an object": {"frame": {"type": {"name": "ping"}, "payload": {}}},
    "type a list": {"frame": {"type": ["ping"], "payload": {}}},
    "type a boolean": {"frame": {"type": True, "payload": {}}},
    "type empty": {"frame": {"type": "", "payload": {}}},
    "unknown type": {"frame": {"type": "launch_missiles", "payload": {}}},
    "unknown type with NUL": {"frame": {"type": "ping\u0000", "payload": {}}},
    "unknown type, very long": {"frame": {"type": "x" * 100_000, "payload": {}}},
    "unknown type, unicode": {"frame": {"type": "pïng \U0001f600 \u202e", "payload": {}}},
}
WRONG_PAYLOADS = [[], [{}], "x", "", 0, 10**400, 1.5, True, None]

# The fields of each frame type, with a valid payload to spoil one field at a time.
FIELDS = {
    ("/ws/chat", "chat"): (
        {"message": "hi"},
        {
            "conversation_id": [*NOT_A_STRING, *BAD_STRINGS, "has spaces", "x" * 201, "é"],
            "message": [*NOT_A_STRING, *BAD_STRINGS, "   "],
            "model": [*NOT_A_STRING, *BAD_STRINGS],
            "agent_id": [*NOT_A_STRING, *BAD_STRINGS],
            "tools": [*NOT_A_LIST, *BAD_LISTS],
            "temperature": [*NOT_A_NUMBER, *BAD_NUMBERS],
            "stream": NOT_A_BOOLEAN,
        },
    ),
    ("/ws/chat", "stop"): ({"conversation_id": "c"}, {"conversation_id": [*NOT_A_STRING, *BAD_STRINGS]}),
    ("/ws/workflow", "execute"): (
        {"agent_id": "agent_x"},
        {"agent_id": [*NOT_A_STRING, *BAD_STRINGS], "input": NOT_AN_OBJECT},
    ),
    ("/ws/workflow", "subscribe"): ({"execution_id": "exec_x"}, {"execution_id": [*NOT_A_STRING, *BAD_STRINGS]}),
    ("/ws/workflow", "cancel"): ({"execution_id": "exec_x"}, {"execution_id": [*NOT_A_STRING, *BAD_STRINGS]}),
}


def test_every_frame_type_is_fuzzed():
    fuzzed = {(route, frame_type) for route, frame_type in FIELDS}
    handled = {(route, frame_type) for route, consumer in ROUTES.items() for frame_type in consumer.frame_handlers}
    assert handled - fuzzed == {(route, "ping") for route in ROUTES}


@pytest.mark.parametrize("route", ROUTES)
async def test_junk_frames_get_a_validation_error_and_the_socket_lives_on(token, route):
    socket = await connect(route, token)
    for name, raw in {**JUNK, **_frames_past_the_limits()}.items():
        payload = await socket.error_for(**raw)
        assert payload["code"] == "VALIDATION_ERROR", (name, payload)
        assert len(json.dumps(payload)) < 2000, (name, "the error repeats the junk")
    await socket.disconnect()


@pytest.mark.parametrize("route", ROUTES)
async def test_a_payload_of_the_wrong_type_is_refused_for_every_frame_type(token, route):
    socket = await connect(route, token)
    for frame_type in ROUTES[route].frame_handlers:
        for payload in WRONG_PAYLOADS:
            error = await socket.error_for({"type": frame_type, "payload": payload})
            assert error["code"] == "VALIDATION_ERROR", (frame_type, payload, error)
    await socket.disconnect()


@pytest.mark.parametrize(("route", "frame_type"), FIELDS)
async def test_each_field_of_the_wrong_type_or_shape_names_the_field(token, route, frame_type):
    valid, fields = FIELDS[(route, frame_type)]
    socket = await connect(route, token)
    assert (await socket.error_for({"type": frame_type, "payload": {}}))["code"] == "VALIDATION_ERROR"
    for field, values in fields.items():
        for value in values:
            frame = {"type": frame_type, "payload": {**valid, field: value}}
            error = await socket.error_for(frame)
            assert error["code"] == "VALIDATION_ERROR" and field in error.get("details", {}), (field, value, error)
    await socket.disconnect()


@pytest.mark.parametrize("route", ROUTES)
async def test_ids_of_nobody_and_of_another_user_are_not_found(user, other_user, route):
    other_agent = await database_sync_to_async(agent_create)(user=other_user, fields={"name": "theirs"})
    theirs = await database_sync_to_async(Execution.objects.create)(
        user=other_user, agent_id=other_agent.id, trigger="api"
    )
    socket = await connect(route, (await database_sync_to_async(tokens_issue)(user=user)).access_token)
    if route == "/ws/workflow":
        frames = [
            ("execute", {"agent_id": other_agent.id}),
            ("execute", {"agent_id": "agent_" + "A" * 22}),
            ("subscribe", {"execution_id": theirs.id}),
            ("cancel", {"execution_id": theirs.id}),
            ("subscribe", {"execution_id": "../../etc/passwd"}),
        ]
    else:
        frames = [("stop", {"conversation_id": "chat_theirs"})]
        # A chat's agent is looked up by the generation, after the frame was accepted: its error comes later.
        await socket.send({"type": "chat", "payload": {"message": "hi", "agent_id": other_agent.id}})
        error = await socket.receive()
        assert error["type"] == "error" and error["payload"]["code"] == "NOT_FOUND", error
        await socket.assert_alive()
    for frame_type, payload in frames:
        error = await socket.error_for({"type": frame_type, "payload": payload})
        assert error["code"] == "NOT_FOUND", (frame_type, payload, error)
    await socket.disconnect()
    assert (await database_sync_to_async(Execution.objects.get)(pk=theirs.id)).status == "pending"


@pytest.mark.parametrize("route", [*ROUTES, "/mcp/connect"])
async def test_bad_tokens_are_refused_with_4401(user, route):
    expired = AccessToken.for_user(user)
    expired.set_exp(lifetime=-timedelta(seconds=1))
    refresh = (await database_sync_to_async(tokens_issue)(user=user)).refresh_token
    for token in ["", "garbage", "a.b.c", str(expired), refresh, "%00", "x" * 10_000]:
        socket = await connect(route, token, socket_class=FrameSocket)
        output = await socket.communicator.receive_output(timeout=5)
        if route != "/mcp/connect":  # MCP sends no frame before the close (integrations/mcp_consumer.py)
            assert json.loads(output["text"])["payload"]["code"] == "UNAUTHORIZED", (token[:20], output)
            output = await socket.communicator.receive_output(timeout=5)
        assert output["type"] == "websocket.close" and output["code"] == 4401, (token[:20], output)
        await socket.disconnect()


async def test_a_refused_execution_input_uses_no_quota(user):
    # Sockets, triggers and schedules refuse a bad input before this; a sub-agent node's rendered
    # input reaches the service as it is, and a refusal must not cost a run of the day.
    agent = await database_sync_to_async(agent_create)(user=user, fields={"name": "a"})
    for bad_input in ([1, 2], "x", {"pad": "x" * 300_000}):
        with pytest.raises(ApplicationError) as refused:
            await database_sync_to_async(execution_create)(
                user=user, agent=agent, trigger="agent", input=bad_input, enqueue=False
            )
        assert refused.value.code == "VALIDATION_ERROR"
    assert (await database_sync_to_async(usage_today)(user))["executions"] == 0
