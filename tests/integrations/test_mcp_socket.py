"""`/mcp/connect` through the real ASGI application: every JSON-RPC and MCP rule (CONTRACT §12)."""

import asyncio
import json
import time

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from accounts.quotas import overrides_set
from accounts.services import tokens_issue
from agents.models import Agent
from agents.services import agent_create
from claraverse.asgi import application
from claraverse.websocket import close_user_sockets
from executions.models import Execution
from integrations import mcp
from integrations.credentials import credential_create
from tests.executions.helpers import agent_with_workflow, edge, node
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_async_db_connections")]

INITIALIZE = {
    "protocolVersion": "2025-06-18",
    "capabilities": {},
    "clientInfo": {"name": "pytest", "version": "1"},
}
ECHO_NODES = [
    node("start", "trigger", trigger_type="manual"),
    node("shape", "transform", output={"greeting": "Hello {{ input.name }}"}),
    node("done", "output", value="{{ prev.greeting }}"),
]
ECHO_EDGES = [edge("start", "shape"), edge("shape", "done")]
SLOW_NODES = [
    node("start", "trigger", trigger_type="manual"),
    node("wait", "delay", seconds=60),
    node("done", "output", value="finished"),
]
SLOW_EDGES = [edge("start", "wait"), edge("wait", "done")]


@pytest.fixture
def token(user):
    return tokens_issue(user=user).access_token


async def open_socket(token, *, initialize=True):
    communicator = WebsocketCommunicator(application, f"/mcp/connect?token={token}", subprotocols=["mcp"])
    connected, subprotocol = await communicator.connect()
    assert connected and subprotocol == "mcp"
    if initialize:
        reply = await request(communicator, "initialize", INITIALIZE, request_id="init")
        assert reply["result"]["protocolVersion"] == "2025-06-18"
        await communicator.send_json_to({"jsonrpc": "2.0", "method": "notifications/initialized"})
    return communicator


async def request(communicator, method, params=None, request_id=1, timeout=10):
    message = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    await communicator.send_json_to(message)
    return await communicator.receive_json_from(timeout=timeout)


async def call(communicator, name, arguments=None, request_id=1, timeout=10):
    params = {"name": name} if arguments is None else {"name": name, "arguments": arguments}
    return await request(communicator, "tools/call", params, request_id=request_id, timeout=timeout)


async def assert_alive(communicator, request_id="alive"):
    """The socket still answers, and nothing else was queued before the answer."""
    assert await request(communicator, "ping", request_id=request_id) == {
        "jsonrpc": "2.0",
        "id": request_id,
        "result": {},
    }


async def list_all(communicator):
    names, cursor, pages = [], None, 0
    while True:
        reply = await request(communicator, "tools/list", {"cursor": cursor} if cursor else {}, request_id=f"l{pages}")
        result = reply["result"]
        names += [tool["name"] for tool in result["tools"]]
        pages += 1
        cursor = result.get("nextCursor")
        if cursor is None:
            return names, pages


def text_of(reply):
    content = reply["result"]["content"]
    assert len(content) == 1 and content[0]["type"] == "text"
    return content[0]["text"]


async def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await database_sync_to_async(predicate)()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


# Connection and handshake.


async def test_initialize_negotiates_the_version(token):
    communicator = await open_socket(token, initialize=False)
    # Before initialize: ping is answered, anything else is refused.
    await assert_alive(communicator)
    refused = await request(communicator, "tools/list", request_id=2)
    assert refused["error"]["code"] == -32600 and refused["id"] == 2
    reply = await request(communicator, "initialize", {**INITIALIZE, "protocolVersion": "1999-01-01"}, request_id=3)
    result = reply["result"]
    assert result["protocolVersion"] == mcp.LATEST_PROTOCOL_VERSION == "2025-11-25"
    assert result["serverInfo"]["name"] == "ClaraVerse" and result["serverInfo"]["version"]
    assert result["capabilities"] == {"tools": {"listChanged": True}}
    again = await request(communicator, "initialize", INITIALIZE, request_id=4)
    assert again["error"]["code"] == -32600
    await communicator.disconnect()


async def test_a_supported_older_version_is_answered_as_asked(token):
    communicator = await open_socket(token, initialize=False)
    reply = await request(communicator, "initialize", {**INITIALIZE, "protocolVersion": "2024-11-05"})
    assert reply["result"]["protocolVersion"] == "2024-11-05"
    bad = await request(communicator, "initialize", {"protocolVersion": 5}, request_id=2)
    assert bad["error"]["code"] == -32600  # already initialized wins over the bad params
    await communicator.disconnect()

    communicator = await open_socket(token, initialize=False)
    bad = await request(communicator, "initialize", {"capabilities": {}}, request_id=2)
    assert bad["error"]["code"] == -32602
    await communicator.disconnect()


@pytest.mark.parametrize("query", ["?token=not-a-token", ""])
async def test_bad_or_missing_token_closes_with_4401_and_no_frame(query):
    communicator = WebsocketCommunicator(application, f"/mcp/connect{query}")
    connected, _ = await communicator.connect()
    assert connected  # accepted, then closed, as the other sockets do
    output = await communicator.receive_output(timeout=5)
    assert output["type"] == "websocket.close" and output["code"] == 4401
    assert output["reason"] == "UNAUTHORIZED"


async def test_rate_limited_connection_closes_with_4429(token, settings):
    settings.RATE_LIMIT_WEBSOCKET = 1
    first = await open_socket(token, initialize=False)
    second = WebsocketCommunicator(application, f"/mcp/connect?token={token}")
    connected, _ = await second.connect()
    assert connected
    output = await second.receive_output(timeout=5)
    assert output["type"] == "websocket.close" and output["code"] == 4429
    assert output["reason"].startswith("RATE_LIMIT retry_after=")
    await first.disconnect()


async def test_a_revoked_user_is_disconnected(token, user):
    communicator = await open_socket(token)
    await sync_to_async(close_user_sockets)(user.pk)
    output = await communicator.receive_output(timeout=5)
    assert output["type"] == "websocket.close" and output["code"] == 4401


# JSON-RPC rules: none of them closes the socket.


async def test_malformed_json_is_a_parse_error_and_the_socket_stays_open(token):
    communicator = await open_socket(token)
    await communicator.send_to(text_data='{"jsonrpc": "2.0", "method": ')
    reply = await communicator.receive_json_from(timeout=5)
    assert reply["id"] is None and reply["error"]["code"] == -32700
    await assert_alive(communicator)
    await communicator.send_to(bytes_data=b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}')
    assert (await communicator.receive_json_from(timeout=5))["error"]["code"] == -32600
    await assert_alive(communicator)
    await communicator.disconnect()


async def test_an_oversized_frame_is_refused_and_the_socket_stays_open(token, settings):
    settings.WEBSOCKET_MAX_FRAME_BYTES = 2000
    communicator = await open_socket(token)
    big = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "é" * 1500}})
    await communicator.send_to(text_data=big)
    reply = await communicator.receive_json_from(timeout=5)
    assert reply["id"] is None and reply["error"]["code"] == -32600 and reply["error"]["data"] == {"max_bytes": 2000}
    await assert_alive(communicator)
    await communicator.disconnect()


@pytest.mark.parametrize(
    ("message", "code", "echoed_id"),
    [
        (5, -32600, None),
        ("ping", -32600, None),
        ({"id": 1, "method": "ping"}, -32600, 1),
        ({"jsonrpc": "1.0", "id": 1, "method": "ping"}, -32600, 1),
        ({"jsonrpc": "2.0", "id": 1, "method": 42}, -32600, 1),
        ({"jsonrpc": "2.0", "id": 1}, -32600, 1),
        ({"jsonrpc": "2.0", "id": True, "method": "ping"}, -32600, None),
        ({"jsonrpc": "2.0", "id": 1.5, "method": "ping"}, -32600, None),
        ({"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}, -32600, None),
        ({"jsonrpc": "2.0", "id": None, "method": "ping"}, -32600, None),
        ({"jsonrpc": "2.0", "id": "x", "method": "ping", "params": "oops"}, -32600, "x"),
        ({"jsonrpc": "2.0", "id": "x", "method": "ping", "params": [1]}, -32602, "x"),
        ({"jsonrpc": "2.0", "id": 7, "method": "resources/list"}, -32601, 7),
        ({"jsonrpc": "2.0", "id": 7, "method": "no/such/method", "params": {}}, -32601, 7),
    ],
)
async def test_invalid_requests(token, message, code, echoed_id):
    communicator = await open_socket(token)
    await communicator.send_json_to(message)
    reply = await communicator.receive_json_from(timeout=5)
    assert reply["jsonrpc"] == "2.0" and reply["error"]["code"] == code and reply["id"] == echoed_id
    assert isinstance(reply["error"]["message"], str) and reply["error"]["message"]
    await assert_alive(communicator)
    await communicator.disconnect()


async def test_notifications_and_responses_are_never_answered(token):
    communicator = await open_socket(token)
    for message in [
        {"jsonrpc": "2.0", "method": "notifications/unknown"},
        {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "calculate_math"}},  # a request sent without id
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99}},
        {"jsonrpc": "2.0", "id": 5, "result": {}},  # a response to a request we never sent
    ]:
        await communicator.send_json_to(message)
    await assert_alive(communicator)
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_batches(token):
    communicator = await open_socket(token)
    await communicator.send_json_to(
        [
            {"jsonrpc": "2.0", "id": "a", "method": "ping"},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            5,
            {"jsonrpc": "2.0", "id": "b", "method": "nope"},
            {
                "jsonrpc": "2.0",
                "id": "c",
                "method": "tools/call",
                "params": {"name": "calculate_math", "arguments": {"expression": "6*7"}},
            },
            {"jsonrpc": "2.0", "id": "d", "method": "tools/call", "params": {"arguments": {}}},
        ]
    )
    replies = await communicator.receive_json_from(timeout=10)
    assert isinstance(replies, list) and len(replies) == 5
    by_id = {reply["id"]: reply for reply in replies}
    assert by_id["a"]["result"] == {}
    assert by_id[None]["error"]["code"] == -32600
    assert by_id["b"]["error"]["code"] == -32601
    assert by_id["c"]["result"]["isError"] is False and "42" in text_of(by_id["c"])
    assert by_id["d"]["error"]["code"] == -32602

    # Only notifications: no answer at all.
    await communicator.send_json_to(
        [{"jsonrpc": "2.0", "method": "notifications/initialized"}, {"jsonrpc": "2.0", "method": "notifications/x"}]
    )
    await assert_alive(communicator)

    # An empty batch is one invalid request, answered with a single object.
    await communicator.send_json_to([])
    reply = await communicator.receive_json_from(timeout=5)
    assert reply == {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": reply["error"]["message"]}}

    await communicator.send_json_to(
        [{"jsonrpc": "2.0", "id": n, "method": "ping"} for n in range(mcp.MAX_BATCH_MESSAGES + 1)]
    )
    assert (await communicator.receive_json_from(timeout=5))["error"]["code"] == -32600
    await assert_alive(communicator)
    await communicator.disconnect()


# Tools.


async def test_tools_call_results_and_tool_errors(token):
    communicator = await open_socket(token)
    ok = await call(communicator, "calculate_math", {"expression": "6*7"})
    assert ok["id"] == 1 and ok["result"]["isError"] is False
    assert json.loads(text_of(ok))["result"] == 42

    # Failures of the tool itself and of its argument validation are results, not protocol errors.
    failed = await call(communicator, "calculate_math", {"expression": "1/0"}, request_id=2)
    assert failed["result"]["isError"] is True and "zero" in text_of(failed).lower()
    invalid = await call(communicator, "calculate_math", {"expression": 5, "extra": True}, request_id=3)
    assert invalid["result"]["isError"] is True and "Invalid arguments" in text_of(invalid)
    missing = await call(communicator, "calculate_math", request_id=4)
    assert missing["result"]["isError"] is True and "expression" in text_of(missing)
    await communicator.disconnect()


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"name": 5},
        {"name": ""},
        {"name": "calculate_math", "arguments": [1]},
        {"name": "calculate_math", "arguments": "6*7"},
        {"name": "no_such_tool"},
        {"name": "send_slack", "arguments": {"message": "hi"}},  # needs a Slack credential the user lacks
        {"name": "agent_doesNotExist12345678"},
    ],
)
async def test_tools_call_bad_params(token, params):
    communicator = await open_socket(token)
    reply = await request(communicator, "tools/call", params)
    assert reply["id"] == 1 and reply["error"]["code"] == -32602
    await assert_alive(communicator)
    await communicator.disconnect()


async def test_tools_list_offers_available_tools_and_own_agents_only(token, user):
    other = await database_sync_to_async(UserFactory)()
    theirs = await database_sync_to_async(agent_create)(user=other, fields={"name": "Not yours"})
    mine = await database_sync_to_async(agent_create)(
        user=user, fields={"name": "Greeter", "description": "Says hello to someone."}
    )
    communicator = await open_socket(token)
    reply = await request(communicator, "tools/list")
    tools = {tool["name"]: tool for tool in reply["result"]["tools"]}
    assert "nextCursor" not in reply["result"]
    assert "calculate_math" in tools and tools["calculate_math"]["inputSchema"]["type"] == "object"
    assert tools["calculate_math"]["inputSchema"]["required"] == ["expression"]
    assert "send_slack" not in tools  # needs a credential
    assert theirs.id not in tools
    agent_tool = tools[mine.id]
    assert agent_tool["title"] == "Greeter"
    assert "Greeter" in agent_tool["description"] and "Says hello" in agent_tool["description"]
    assert agent_tool["inputSchema"] == mcp.AGENT_INPUT_SCHEMA
    # Another user's agent cannot be called either.
    refused = await call(communicator, theirs.id, {"input": {}}, request_id=2)
    assert refused["error"]["code"] == -32602
    assert not await database_sync_to_async(Execution.objects.filter(agent_id=theirs.id).exists)()
    await communicator.disconnect()


async def test_tools_list_pagination(token, user):
    other = await database_sync_to_async(UserFactory)()

    def make_agents():
        Agent.objects.bulk_create([Agent(user=user, name=f"Agent {n}") for n in range(60)])
        Agent.objects.bulk_create([Agent(user=other, name=f"Theirs {n}") for n in range(5)])
        return set(Agent.objects.filter(user=user).values_list("id", flat=True)), set(
            Agent.objects.filter(user=other).values_list("id", flat=True)
        )

    mine, theirs = await database_sync_to_async(make_agents)()
    communicator = await open_socket(token)
    first = (await request(communicator, "tools/list"))["result"]
    assert len(first["tools"]) == mcp.TOOLS_PAGE_SIZE and isinstance(first["nextCursor"], str)
    names, pages = await list_all(communicator)
    assert pages == 2 and len(names) == len(set(names))
    assert mine <= set(names) and not theirs & set(names)
    assert "calculate_math" in names

    # The cursor is a position, not an offset: a tool removed before the next page hides no other.
    second_page_first = names[mcp.TOOLS_PAGE_SIZE]
    assert names[20] in mine
    await database_sync_to_async(Agent.objects.filter(pk=names[20]).delete)()
    cursor = first["nextCursor"]
    again = (await request(communicator, "tools/list", {"cursor": cursor}, request_id=9))["result"]
    assert again["tools"][0]["name"] == second_page_first

    for bad in ["not-a-cursor!", "", 5, "W10"]:
        reply = await request(communicator, "tools/list", {"cursor": bad}, request_id="bad")
        assert reply["error"]["code"] == -32602, bad
    await communicator.disconnect()


async def test_list_changed_when_agents_or_credentials_change(token, user, monkeypatch):
    monkeypatch.setattr(mcp, "TOOLS_POLL_SECONDS", 0.05)
    communicator = await open_socket(token)
    # Before the first tools/list the client has no list to be told about.
    await database_sync_to_async(agent_create)(user=user, fields={"name": "Early"})
    assert await communicator.receive_nothing(timeout=0.3)
    names, _ = await list_all(communicator)
    assert await communicator.receive_nothing(timeout=0.3)

    agent = await database_sync_to_async(agent_create)(user=user, fields={"name": "New one"})
    changed = await communicator.receive_json_from(timeout=5)
    assert changed == {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
    assert await communicator.receive_nothing(timeout=0.3)  # once per change, not once per poll
    names, _ = await list_all(communicator)
    assert agent.id in names and "send_webhook" not in names

    await database_sync_to_async(credential_create)(
        user=user, integration_id="webhook", name="hook", values={"url": "https://example.com/hook"}
    )
    assert (await communicator.receive_json_from(timeout=5))["method"] == "notifications/tools/list_changed"
    names, _ = await list_all(communicator)
    assert "send_webhook" in names

    # Another user's changes are not this user's list.
    other = await database_sync_to_async(UserFactory)()
    await database_sync_to_async(agent_create)(user=other, fields={"name": "Elsewhere"})
    assert await communicator.receive_nothing(timeout=0.3)

    await database_sync_to_async(Agent.objects.filter(pk=agent.id).update)(name="Renamed")
    assert (await communicator.receive_json_from(timeout=5))["method"] == "notifications/tools/list_changed"
    await communicator.disconnect()


# Agents as tools.


async def test_calling_an_agent_runs_an_mcp_execution(token, user):
    agent = await database_sync_to_async(agent_with_workflow)(user, ECHO_NODES, ECHO_EDGES, name="Echo")
    communicator = await open_socket(token)
    reply = await call(communicator, agent.id, {"input": {"name": "Ada"}})
    assert reply["result"]["isError"] is False and text_of(reply) == "Hello Ada"
    execution_id = reply["result"]["_meta"]["claraverse/execution_id"]
    execution = await database_sync_to_async(Execution.objects.get)(pk=execution_id)
    assert execution.trigger == "mcp" and execution.status == "completed" and execution.input == {"name": "Ada"}
    assert execution.user_id == user.pk

    # An object output comes back as JSON text.
    json_agent = await database_sync_to_async(agent_with_workflow)(
        user, [node("start", "trigger"), node("done", "output", value={"n": 1, "s": "x"})], [edge("start", "done")]
    )
    reply = await call(communicator, json_agent.id, {}, request_id=2)
    assert json.loads(text_of(reply)) == {"n": 1, "s": "x"}

    invalid = await call(communicator, agent.id, {"input": "Ada"}, request_id=3)
    assert invalid["result"]["isError"] is True and "Invalid arguments" in text_of(invalid)
    extra = await call(communicator, agent.id, {"name": "Ada"}, request_id=4)
    assert extra["result"]["isError"] is True
    await communicator.disconnect()


async def test_a_failed_execution_is_a_tool_error(token, user):
    nodes = [node("start", "trigger"), node("boom", "tool", tool="calculate_math", arguments={"expression": "1/0"})]
    agent = await database_sync_to_async(agent_with_workflow)(user, nodes, [edge("start", "boom")])
    communicator = await open_socket(token)
    reply = await call(communicator, agent.id, {"input": {}})
    assert reply["result"]["isError"] is True and "failed" in text_of(reply) and "boom" in text_of(reply)
    await communicator.disconnect()


async def test_quota_exceeded_is_a_tool_error(token, user):
    agent = await database_sync_to_async(agent_with_workflow)(user, ECHO_NODES, ECHO_EDGES)
    await database_sync_to_async(overrides_set)(user=user, values={"executions_per_day": 1})
    communicator = await open_socket(token)
    first = await call(communicator, agent.id, {"input": {"name": "A"}})
    assert first["result"]["isError"] is False
    second = await call(communicator, agent.id, {"input": {"name": "B"}}, request_id=2)
    assert second["result"]["isError"] is True and "quota" in text_of(second).lower()
    assert await database_sync_to_async(Execution.objects.filter(user=user).count)() == 1
    await communicator.disconnect()


async def test_cancelling_an_agent_call(token, user):
    agent = await database_sync_to_async(agent_with_workflow)(user, SLOW_NODES, SLOW_EDGES, name="Slow")
    communicator = await open_socket(token)
    await communicator.send_json_to(
        {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": agent.id, "arguments": {}}}
    )
    execution = await wait_for(lambda: Execution.objects.filter(agent_id=agent.id, status="running").first())
    assert execution.trigger == "mcp"

    # While the agent runs, other calls on the same socket are answered (calls run concurrently).
    quick = await call(communicator, "calculate_math", {"expression": "2+2"}, request_id=8)
    assert "4" in text_of(quick)
    # A second call under an id still in flight is refused.
    duplicate = await call(communicator, "calculate_math", {"expression": "1"}, request_id=7)
    assert duplicate["error"]["code"] == -32600

    began = time.monotonic()
    await communicator.send_json_to(
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7, "reason": "changed my mind"}}
    )
    await wait_for(lambda: Execution.objects.filter(pk=execution.pk, status="cancelled").exists())
    assert time.monotonic() - began < 10  # the 60 s delay did not run out
    # No response ever arrives for the cancelled id.
    await assert_alive(communicator)
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()


async def test_calls_in_flight_are_bounded(token, user, monkeypatch):
    monkeypatch.setattr(mcp, "MAX_CALLS_IN_FLIGHT", 1)
    agent = await database_sync_to_async(agent_with_workflow)(user, SLOW_NODES, SLOW_EDGES)
    communicator = await open_socket(token)
    await communicator.send_json_to(
        {"jsonrpc": "2.0", "id": "slow", "method": "tools/call", "params": {"name": agent.id, "arguments": {}}}
    )
    execution = await wait_for(lambda: Execution.objects.filter(agent_id=agent.id, status="running").first())
    refused = await call(communicator, "calculate_math", {"expression": "1"}, request_id=2)
    assert refused["error"]["code"] == -32603 and refused["error"]["data"] == {"max_in_flight": 1}
    await communicator.send_json_to(
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "slow"}}
    )
    await wait_for(lambda: Execution.objects.filter(pk=execution.pk, status="cancelled").exists())
    # The slot is free again once the cancelled run has ended.
    ok = await call(communicator, "calculate_math", {"expression": "1+1"}, request_id=3)
    assert "2" in text_of(ok)
    await communicator.disconnect()


async def test_disconnecting_cancels_running_agents(token, user):
    agent = await database_sync_to_async(agent_with_workflow)(user, SLOW_NODES, SLOW_EDGES)
    communicator = await open_socket(token)
    await communicator.send_json_to(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": agent.id, "arguments": {}}}
    )
    execution = await wait_for(lambda: Execution.objects.filter(agent_id=agent.id, status="running").first())
    await communicator.disconnect()
    await wait_for(lambda: Execution.objects.filter(pk=execution.pk, status="cancelled").exists())
