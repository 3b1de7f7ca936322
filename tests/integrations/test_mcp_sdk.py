"""`/mcp/connect` with the official MCP Python SDK client over a real daphne server (CONTRACT §12)."""

import asyncio

import mcp.types as types
import pytest
from mcp import ClientSession
from mcp.client.websocket import websocket_client
from mcp.shared.exceptions import McpError
from mcp.shared.version import SUPPORTED_PROTOCOL_VERSIONS

from tests.executions.helpers import edge, node
from tests.support.live_server import start_live_server, stop_live_server

pytestmark = [
    pytest.mark.timeout(120),
    # The SDK deprecates its WebSocket transport (never part of the MCP specification); it is what this route speaks.
    pytest.mark.filterwarnings("ignore:The WebSocket client transport is deprecated:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = start_live_server(tmp_path_factory.mktemp("live-mcp"))
    yield server
    stop_live_server(server)


def register(live, email):
    status, body = live.call("POST", "/api/auth/register", {"email": email, "password": "a long mcp passphrase"})
    assert status == 201, body
    return body["access_token"]


def create_agent(live, token, name, description=""):
    status, agent = live.call("POST", "/api/agents", {"name": name, "description": description}, token=token)
    assert status == 201, agent
    nodes = [
        node("start", "trigger", trigger_type="manual"),
        node("shape", "transform", output={"greeting": "Hello {{ input.name }}"}),
        node("done", "output", value="{{ prev.greeting }}"),
    ]
    status, body = live.call(
        "PUT",
        f"/api/agents/{agent['id']}/workflow",
        {"nodes": nodes, "edges": [edge("start", "shape"), edge("shape", "done")]},
        token=token,
    )
    assert status == 200, body
    return agent


async def test_the_official_sdk_client_lists_and_calls_tools_and_agents(live):
    token = register(live, "mcp-user@example.com")
    greeter = create_agent(live, token, "Greeter", "Greets someone by name.")
    other_token = register(live, "mcp-other@example.com")
    hidden = create_agent(live, other_token, "Someone else's")

    notifications: list = []

    async def on_message(message) -> None:
        if isinstance(message, types.ServerNotification):
            notifications.append(message.root)

    async with (
        websocket_client(f"{live.ws_url}/mcp/connect?token={token}") as (read, write),
        ClientSession(read, write, message_handler=on_message) as session,
    ):
        initialized = await session.initialize()
        assert initialized.protocolVersion in SUPPORTED_PROTOCOL_VERSIONS
        assert initialized.protocolVersion == types.LATEST_PROTOCOL_VERSION
        assert initialized.serverInfo.name == "ClaraVerse"
        assert initialized.capabilities.tools is not None and initialized.capabilities.tools.listChanged is True
        await session.send_ping()

        listed = await session.list_tools()
        tools = {tool.name: tool for tool in listed.tools}
        assert "calculate_math" in tools and greeter["id"] in tools and hidden["id"] not in tools
        assert tools[greeter["id"]].title == "Greeter" and "Greets someone" in tools[greeter["id"]].description
        assert tools["calculate_math"].inputSchema["properties"]["expression"]["type"] == "string"

        result = await session.call_tool("calculate_math", {"expression": "6*7"})
        assert result.isError is False and "42" in result.content[0].text

        result = await session.call_tool(greeter["id"], {"input": {"name": "Ada"}})
        assert result.isError is False and result.content[0].text == "Hello Ada"

        result = await session.call_tool("calculate_math", {"expression": "1/0"})
        assert result.isError is True and "zero" in result.content[0].text.lower()

        with pytest.raises(McpError) as refused:
            await session.call_tool(hidden["id"], {"input": {}})
        assert refused.value.error.code == types.INVALID_PARAMS

        # A new agent while connected: the server says the list changed (it polls every few seconds).
        added = await asyncio.to_thread(create_agent, live, token, "Added later")
        for _ in range(150):
            if any(isinstance(n, types.ToolListChangedNotification) for n in notifications):
                break
            await asyncio.sleep(0.1)
        assert any(isinstance(n, types.ToolListChangedNotification) for n in notifications)
        assert added["id"] in {tool.name for tool in (await session.list_tools()).tools}

    status, executions = live.call("GET", "/api/executions", token=token)
    assert status == 200
    triggers = {execution["trigger"] for execution in executions["executions"]}
    assert triggers == {"mcp"}


async def test_a_bad_token_is_closed_with_4401(live):
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async with connect(f"{live.ws_url}/mcp/connect?token=nope", subprotocols=["mcp"]) as socket:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), timeout=10)
    assert closed.value.rcvd.code == 4401
