"""`/mcp/connect` under a hostile JSON-RPC client (CONTRACT §12).

Whatever arrives, the answer is a JSON-RPC error (-32700 parse, -32600 invalid request, -32601
unknown method, -32602 bad params) or a tool result with `isError: true`; never -32603, a close or a
crash, and the socket still answers `ping` afterwards.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.conf import settings

from accounts.services import tokens_issue
from agents.services import agent_create
from claraverse.parsers import MAX_JSON_DEPTH
from tests.hostile.sockets import BAD_STRINGS, NOT_A_STRING, NOT_AN_OBJECT, RpcSocket, connect, deep_object

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("close_async_db_connections", "unthrottled"),
]

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602
INITIALIZE = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "hostile", "version": "0"}}


@pytest.fixture
def token(user):
    return tokens_issue(user=user).access_token


async def open_mcp(token: str, *, initialize: bool = True) -> RpcSocket:
    socket = await connect("/mcp/connect", token, socket_class=RpcSocket, subprotocols=["mcp"])
    if initialize:
        replies = await socket.answers({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": INITIALIZE})
        assert replies[0]["result"]["protocolVersion"] == "2025-06-18", replies
        assert await socket.answers({"jsonrpc": "2.0", "method": "notifications/initialized"}) == []
    return socket


def request(method: str, params: Any = None, request_id: Any = 1, **extra) -> dict:
    message = {"jsonrpc": "2.0", "id": request_id, "method": method, **extra}
    if params is not None:
        message["params"] = params
    return message


def _junk() -> dict[str, tuple[dict, int]]:
    limit = settings.WEBSOCKET_MAX_FRAME_BYTES
    ping = '{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": %s}'
    return {
        "not JSON": ({"text": "not json"}, PARSE_ERROR),
        "truncated JSON": ({"text": '{"jsonrpc": "2.0", "method": '}, PARSE_ERROR),
        "empty text": ({"text": ""}, PARSE_ERROR),
        "NaN": ({"text": ping % '{"n": NaN}'}, PARSE_ERROR),
        "Infinity": ({"text": ping % '{"n": Infinity}'}, PARSE_ERROR),
        "1e999": ({"text": ping % '{"n": 1e999}'}, PARSE_ERROR),
        "an integer of 5000 digits": ({"text": ping % ('{"n": 1' + "0" * 5000 + "}")}, PARSE_ERROR),
        "duplicate keys": ({"text": '{"jsonrpc": "2.0", "id": 1, "method": "ping", "id": 2}'}, PARSE_ERROR),
        "a lone surrogate id": ({"text": '{"jsonrpc": "2.0", "id": "\\udc00", "method": "ping"}'}, PARSE_ERROR),
        "a lone surrogate method": ({"text": '{"jsonrpc": "2.0", "id": 1, "method": "\\ud800"}'}, PARSE_ERROR),
        "a NUL in a method": ({"text": '{"jsonrpc": "2.0", "id": 1, "method": "ping\\u0000"}'}, PARSE_ERROR),
        "a NUL in a tool name": (
            {"text": '{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "agent_\\u0000"}}'},
            PARSE_ERROR,
        ),
        "10,000 nested arrays": ({"text": "[" * 10_000 + "]" * 10_000}, PARSE_ERROR),
        "nested past the depth limit": ({"text": ping % json.dumps(deep_object(MAX_JSON_DEPTH))}, PARSE_ERROR),
        "oversized frame": ({"text": ping % json.dumps({"pad": "x" * limit})}, INVALID_REQUEST),
        "oversized in bytes": ({"text": ping % ('{"p": "' + "€" * (limit // 3 + 8) + '"}')}, INVALID_REQUEST),
        "binary": ({"binary": b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}'}, INVALID_REQUEST),
        "null": ({"text": "null"}, INVALID_REQUEST),
        "a number": ({"text": "42"}, INVALID_REQUEST),
        "a string": ({"text": '"ping"'}, INVALID_REQUEST),
        "true": ({"text": "true"}, INVALID_REQUEST),
        "an empty batch": ({"text": "[]"}, INVALID_REQUEST),
        "a batch of 101": ({"frame": [request("ping", request_id=n) for n in range(101)]}, INVALID_REQUEST),
        "an empty object": ({"frame": {}}, INVALID_REQUEST),
        "no jsonrpc": ({"frame": {"method": "ping"}}, INVALID_REQUEST),
        "jsonrpc a number": ({"frame": {"jsonrpc": 2.0, "method": "ping"}}, INVALID_REQUEST),
    }


async def test_junk_frames_get_json_rpc_errors_and_the_socket_lives_on(token):
    socket = await open_mcp(token)
    for name, (raw, code) in _junk().items():
        reply = await socket.error_for(**raw)
        assert reply["error"]["code"] == code and reply["id"] is None, (name, reply)
        assert len(json.dumps(reply)) < 2000, (name, "the error repeats the junk")
    await socket.disconnect()


async def test_ids_and_methods_of_every_wrong_type(token):
    socket = await open_mcp(token)
    for bad_id in [1.5, True, False, None, {}, {"a": 1}, [], [1]]:
        reply = await socket.error_for(request("ping", request_id=bad_id))
        assert reply["error"]["code"] == INVALID_REQUEST and reply["id"] is None, (bad_id, reply)
    for odd_id in ["", "x" * 10_000, "\U0001f600", 10**400, -(2**63), 0]:
        assert await socket.answers(request("ping", request_id=odd_id)) == [
            {"jsonrpc": "2.0", "id": odd_id, "result": {}}
        ]
    for bad_method in [42, 10**400, None, "", [], ["ping"], {}, True]:
        reply = await socket.error_for(request(bad_method, request_id=7))
        assert reply["error"]["code"] == INVALID_REQUEST and reply["id"] == 7, (bad_method, reply)
    for unknown in ["x" * 100_000, "ping ", "PING", "tools/", "tools/list/../call", "rpc.discover", "é"]:
        reply = await socket.error_for(request(unknown, request_id=8))
        assert reply["error"]["code"] == METHOD_NOT_FOUND and reply["id"] == 8, (unknown[:20], reply)
    await socket.disconnect()


@pytest.mark.parametrize("method", ["initialize", "ping", "tools/list", "tools/call"])
async def test_params_of_every_wrong_type(token, method):
    socket = await open_mcp(token)
    for params, code in [("x", INVALID_REQUEST), (5, INVALID_REQUEST), (True, INVALID_REQUEST), ([1], INVALID_PARAMS)]:
        reply = await socket.error_for(request(method, params, request_id="p"))
        assert reply["error"]["code"] == code and reply["id"] == "p", (params, reply)
    await socket.disconnect()


async def test_initialize_fields(token):
    socket = await open_mcp(token, initialize=False)
    for version in [*NOT_A_STRING, *BAD_STRINGS]:
        if version is None or isinstance(version, str):
            continue  # missing is refused below; any string is answered with the version we speak
        reply = await socket.error_for(request("initialize", {**INITIALIZE, "protocolVersion": version}))
        assert reply["error"]["code"] == INVALID_PARAMS, (version, reply)
    reply = await socket.error_for(request("initialize", {"capabilities": {}}))
    assert reply["error"]["code"] == INVALID_PARAMS
    # Before initialize, only ping is served.
    assert (await socket.error_for(request("tools/list")))["error"]["code"] == INVALID_REQUEST
    weird = {"protocolVersion": "\u202e" + "9" * 1000, "clientInfo": [1], "capabilities": 5}
    replies = await socket.answers(request("initialize", weird))
    assert replies[0]["result"]["protocolVersion"] == "2025-11-25", replies
    assert (await socket.error_for(request("initialize", INITIALIZE)))["error"]["code"] == INVALID_REQUEST
    await socket.disconnect()


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


async def test_tools_list_cursors(token):
    socket = await open_mcp(token)
    bad_cursors = [
        *[value for value in NOT_A_STRING if value is not None],
        *BAD_STRINGS,
        "not base64!",
        "x" * 600,
        _cursor({"a": 1}),
        _cursor([1, 2, 3]),
        _cursor(["0", "x"]),
        _cursor([1.5, "x"]),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        base64.urlsafe_b64encode(b"[" * 10_000).decode(),
    ]
    for cursor in bad_cursors:
        reply = await socket.error_for(request("tools/list", {"cursor": cursor}))
        assert reply["error"]["code"] == INVALID_PARAMS, (repr(cursor)[:40], reply)
    await socket.disconnect()


async def call(socket: RpcSocket, name: Any, arguments: Any = None, *, omit_arguments: bool = False) -> dict:
    """A tools/call and its answer (tool calls run on their own, so the answer is matched by id)."""
    call_id = f"call-{id(arguments)}-{name!r:.20}"
    params = {"name": name} if omit_arguments else {"name": name, "arguments": arguments}
    await socket.send(request("tools/call", params, request_id=call_id))
    while True:
        reply = await socket.receive(timeout=10)
        if isinstance(reply, dict) and reply.get("id") == call_id:
            return reply
        assert reply.get("method") == "notifications/tools/list_changed", reply


async def test_tools_call_name_and_arguments(user, token):
    await database_sync_to_async(agent_create)(user=user, fields={"name": "mine"})
    socket = await open_mcp(token)
    for name in [*NOT_A_STRING, ""]:
        reply = await call(socket, name, {})
        assert reply["error"]["code"] == INVALID_PARAMS, (name, reply)
    for name in ["x" * 100_000, "agent_" + "A" * 22, "../calculate_math", "calculate_math ", "send_slack", "agent_é"]:
        reply = await call(socket, name, {})
        assert reply["error"]["code"] == INVALID_PARAMS, (name[:30], reply)
        assert len(reply["error"]["message"]) < 200
    for arguments in NOT_AN_OBJECT:
        if arguments is None:
            continue  # null arguments mean none
        reply = await call(socket, "calculate_math", arguments)
        assert reply["error"]["code"] == INVALID_PARAMS, (arguments, reply)
    await socket.assert_alive()
    await socket.disconnect()


# Wrong values for an argument by the JSON Schema type it declares.
WRONG_BY_SCHEMA_TYPE = {
    "string": [5, 10**400, 1.5, True, None, {}, [], ["x"]],
    "integer": ["5", 1.5, True, None, {}, [], "x" * 10_000],
    "number": ["5", True, None, {}, []],
    "boolean": ["true", 1, 0, None, {}, []],
    "array": ["x", 5, True, None, {}],
    "object": ["x", 5, True, None, [], [{}]],
}


async def test_every_tool_refuses_arguments_of_the_wrong_type(user, token):
    await database_sync_to_async(agent_create)(user=user, fields={"name": "mine"})
    socket = await open_mcp(token)
    tools = (await socket.answers(request("tools/list")))[0]["result"]["tools"]
    assert any(tool["name"].startswith("agent_") for tool in tools) and len(tools) >= 5
    tried = 0
    for tool in tools:
        for argument, schema in tool["inputSchema"].get("properties", {}).items():
            for value in WRONG_BY_SCHEMA_TYPE.get(schema.get("type"), []):
                reply = await call(socket, tool["name"], {argument: value})
                assert "result" in reply, (tool["name"], argument, value, reply)
                result = reply["result"]
                assert result["isError"] is True, (tool["name"], argument, value, result)
                assert result["content"][0]["type"] == "text" and result["content"][0]["text"]
                tried += 1
        reply = await call(socket, tool["name"], {"": None, "\u202e": 10**400, "x" * 1000: [[[[]]]]})
        assert reply.get("result", {}).get("isError") is True or reply["error"]["code"] == INVALID_PARAMS, reply
    assert tried >= 20
    await socket.assert_alive()
    await socket.disconnect()


async def test_notifications_with_junk_are_never_answered(token):
    socket = await open_mcp(token)
    for params in [None, {}, {"requestId": {}}, {"requestId": None}, {"requestId": 10**400}, {"x": [1] * 1000}]:
        message = {"jsonrpc": "2.0", "method": "notifications/cancelled"}
        if params is not None:
            message["params"] = params
        assert await socket.answers(message) == [], params
    for method in ["notifications/initialized", "notifications/" + "x" * 10_000, "notifications/\U0001f600"]:
        assert await socket.answers({"jsonrpc": "2.0", "method": method, "params": {"junk": [None]}}) == []
    # Responses to requests the server never sent are dropped.
    for response in [{"jsonrpc": "2.0", "id": 1, "result": 5}, {"jsonrpc": "2.0", "id": None, "error": "x"}]:
        assert await socket.answers(response) == [], response
    await socket.disconnect()


async def test_a_batch_of_junk_is_answered_item_by_item(token):
    socket = await open_mcp(token)
    batch = [5, None, "x", [], {}, request("ping", request_id=1.5), request("nope", request_id="n"), request("ping")]
    replies = await socket.answers(batch)
    assert len(replies) == 1 and isinstance(replies[0], list), replies
    codes = [reply.get("error", {}).get("code") for reply in replies[0]]
    assert codes == [INVALID_REQUEST] * 6 + [METHOD_NOT_FOUND, None], replies
    assert replies[0][-1] == {"jsonrpc": "2.0", "id": 1, "result": {}}
    await socket.disconnect()
