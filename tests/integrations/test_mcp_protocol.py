"""The MCP protocol pieces of `integrations.mcp` on their own, without a socket or a database."""

import pytest

from integrations import mcp
from integrations.mcp import MCPSession, OfferedTool, RpcError


def tool(group, name):
    return OfferedTool(name=name, definition={"name": name}, sort_key=(group, name))


TOOLS = [tool(0, f"tool_{n:02d}") for n in range(7)] + [tool(1, f"agent_{n:02d}") for n in range(5)]


def test_parse_message_classifies():
    request = mcp.parse_message({"jsonrpc": "2.0", "id": "a", "method": "ping"})
    assert request == mcp.Message(method="ping", params={}, id="a") and not request.is_notification
    note = mcp.parse_message({"jsonrpc": "2.0", "method": "notifications/initialized", "params": None})
    assert note.is_notification and note.params == {}
    assert mcp.parse_message({"jsonrpc": "2.0", "id": 3, "result": {}}) is None
    assert mcp.parse_message({"jsonrpc": "2.0", "id": 3, "error": {"code": 1, "message": "x"}}) is None


@pytest.mark.parametrize(
    ("raw", "code", "request_id"),
    [
        ([], -32600, None),
        ({"jsonrpc": "2.0", "id": False, "method": "ping"}, -32600, None),
        ({"jsonrpc": 2.0, "id": 9, "method": "ping"}, -32600, 9),
        ({"jsonrpc": "2.0", "id": 9, "method": ""}, -32600, 9),
        ({"jsonrpc": "2.0", "id": 9, "method": "ping", "params": [1, 2]}, -32602, 9),
        ({"jsonrpc": "2.0", "id": 9, "method": "ping", "params": 3}, -32600, 9),
    ],
)
def test_parse_message_refuses(raw, code, request_id):
    with pytest.raises(RpcError) as refused:
        mcp.parse_message(raw)
    response = refused.value.response()
    assert response["error"]["code"] == code and response["id"] == request_id


def test_pages_follow_cursors_and_survive_changes_between_pages():
    first, cursor = mcp.tools_page(TOOLS, None, page_size=5)
    assert [t.name for t in first] == [f"tool_{n:02d}" for n in range(5)] and cursor
    second, cursor2 = mcp.tools_page(TOOLS, cursor, page_size=5)
    third, last = mcp.tools_page(TOOLS, cursor2, page_size=5)
    assert [t.name for t in first + second + third] == [t.name for t in TOOLS] and last is None
    # Removing a tool already listed does not shift the next page.
    shrunk = [t for t in TOOLS if t.name != "tool_01"]
    assert mcp.tools_page(shrunk, cursor, page_size=5)[0] == second
    assert mcp.tools_page(TOOLS, None, page_size=len(TOOLS))[1] is None


@pytest.mark.parametrize("cursor", ["", "!!!", "bm90IGpzb24", "WzEsMiwzXQ", "eyJhIjoxfQ", 7, None, "A" * 600])
def test_foreign_cursors_are_invalid_params(cursor):
    with pytest.raises(RpcError) as refused:
        mcp.decode_cursor(cursor)
    assert refused.value.code == -32602


def test_cursor_round_trip():
    assert mcp.decode_cursor(mcp.encode_cursor((1, "agent_x"))) == (1, "agent_x")


def test_agent_tool_description_is_bounded():
    assert mcp.agent_tool_description("Greeter", "") == (
        'Runs the ClaraVerse agent "Greeter". Pass the workflow input as `input`; the result is the execution output.'
    )
    assert len(mcp.agent_tool_description("x", "y" * 10_000)) == mcp.MAX_DESCRIPTION_CHARS


def test_as_text():
    assert mcp.as_text("plain") == "plain"
    assert mcp.as_text({"a": [1, "é"]}) == '{"a":[1,"é"]}'
    assert mcp.as_text(None) == "null"


async def test_a_session_answers_without_a_socket():
    sent = []

    async def send(message):
        sent.append(message)

    session = MCPSession(user=None, send=send, max_frame_bytes=100)
    await session.receive_frame('{"jsonrpc": "2.0", "id": 1, "method": "ping"}')
    await session.receive_frame("{not json")
    await session.receive_frame('{"jsonrpc": "2.0", "id": 2, "method": "ping", "params": {"pad": "' + "x" * 100 + '"}}')
    await session.receive_frame(None, b"\x00")
    await session.receive({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "x"}})
    await session.receive(
        {"jsonrpc": "2.0", "id": 4, "method": "initialize", "params": {"protocolVersion": "2025-03-26"}}
    )
    assert [m.get("result", m.get("error", {}).get("code")) for m in sent[:5]] == [{}, -32700, -32600, -32600, -32600]
    assert sent[5]["result"]["protocolVersion"] == "2025-03-26" and session.initialized
    await session.close()
    await session.receive({"jsonrpc": "2.0", "id": 5, "method": "ping"})
    assert len(sent) == 6  # nothing is sent once the connection is gone
