"""The Model Context Protocol over JSON-RPC 2.0, as served on `/mcp/connect` (CONTRACT §12).

Everything here is independent of the socket: `MCPSession` is fed frames and sends replies through
a callback, so the protocol rules are testable without Channels. What the tools are:

- every registry tool the user can use (those needing no integration, plus those whose integration
  the user holds a credential for), named as in the registry;
- every agent of the user, named by its id (`agent_...`, already unique, stable across renames and
  always within MCP's `^[a-zA-Z0-9_-]{1,64}$`), taking `{"input": {...}}` as its execution input.

Tool failures (bad arguments, a failing tool or execution, an exhausted quota) are results with
`isError: true`; JSON-RPC errors are kept for protocol mistakes and never end the connection.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from jsonschema import Draft202012Validator

import claraverse
from claraverse.errors import ApplicationError
from claraverse.parsers import strict_json_loads
from workflows.engine import CancelToken

logger = logging.getLogger("claraverse.mcp")

JSONRPC_VERSION = "2.0"
# Oldest first; the last one is what we answer a client asking for a version we do not know.
PROTOCOL_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
LATEST_PROTOCOL_VERSION = PROTOCOL_VERSIONS[-1]
SERVER_NAME = "ClaraVerse"
SUBPROTOCOL = "mcp"

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

TOOLS_PAGE_SIZE = 50
# Calls beyond this many on one connection are refused (-32603) rather than queued, so that one
# client cannot pile up unbounded work; each call holds a thread until it ends.
MAX_CALLS_IN_FLIGHT = 8
MAX_BATCH_MESSAGES = 100
# How often an open connection re-reads its tool list to send `notifications/tools/list_changed`.
TOOLS_POLL_SECONDS = 5.0
# An execution output is stored unbounded; what goes back to the client (usually a model) is not.
AGENT_RESULT_MAX_BYTES = 256 * 1024
MAX_DESCRIPTION_CHARS = 1000
AGENT_TOOL_PREFIX = "agent_"
EXECUTION_META_KEY = "claraverse/execution_id"

INSTRUCTIONS = (
    "Tools of a ClaraVerse account: its built-in tools and integrations, and each of its agents as a tool "
    'named by the agent id (agent_...). An agent tool takes {"input": {...}}, runs the agent\'s workflow '
    "with that input and returns the execution output."
)

AGENT_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "input": {
            "type": "object",
            "description": "The execution input; the workflow reads it as {{ input.<field> }}.",
        }
    },
    "additionalProperties": False,
}
_agent_input_validator = Draft202012Validator(AGENT_INPUT_SCHEMA)

# Tool calls and agent runs last seconds to minutes, so they must not occupy the single thread that
# `database_sync_to_async` shares across the process; they get threads of their own.
_call_executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="mcp-call")

RequestId = str | int
Send = Callable[[Any], Awaitable[None]]


class RpcError(Exception):
    """A JSON-RPC error to answer with; `request_id` is set when it is known."""

    def __init__(self, code: int, message: str, data: Any = None, request_id: RequestId | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        self.request_id = request_id

    def response(self, request_id: RequestId | None = None) -> dict[str, Any]:
        """This error as a JSON-RPC response."""
        return error_response(
            request_id if request_id is not None else self.request_id, self.code, self.message, self.data
        )


def error_response(request_id: RequestId | None, code: int, message: str, data: Any = None) -> dict[str, Any]:
    """A JSON-RPC error response (`id` null when the request's id is unknown)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": JSONRPC_VERSION, "id": request_id, "error": error}


def result_response(request_id: RequestId, result: dict[str, Any]) -> dict[str, Any]:
    """A JSON-RPC success response."""
    return {"jsonrpc": JSONRPC_VERSION, "id": request_id, "result": result}


def notification(method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON-RPC notification from the server."""
    message: dict[str, Any] = {"jsonrpc": JSONRPC_VERSION, "method": method}
    if params is not None:
        message["params"] = params
    return message


def _valid_id(value: Any) -> bool:
    # MCP ids are strings or integers; bool is an int subclass in Python but not in JSON.
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _id_key(request_id: RequestId) -> str:
    # 1 and "1" are different ids.
    return f"{type(request_id).__name__}:{request_id}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Message:
    """One valid incoming request (with an id) or notification (without)."""

    method: str
    params: dict[str, Any]
    id: RequestId | None = None

    @property
    def is_notification(self) -> bool:
        return self.id is None


def parse_message(raw: Any) -> Message | None:
    """A request or notification, None for a response, RpcError (-32600, -32602) for anything else."""
    # Responses are dropped: we send no requests, so there is nothing for one to answer.
    if not isinstance(raw, dict):
        raise RpcError(INVALID_REQUEST, "A message must be a JSON object.")
    request_id = raw.get("id")
    known_id = request_id if _valid_id(request_id) else None
    if raw.get("jsonrpc") != JSONRPC_VERSION:
        raise RpcError(INVALID_REQUEST, 'Missing or wrong "jsonrpc": it must be "2.0".', request_id=known_id)
    if "method" not in raw and ("result" in raw or "error" in raw):
        return None
    if "id" in raw and not _valid_id(request_id):
        raise RpcError(INVALID_REQUEST, '"id" must be a string or an integer.')
    method = raw.get("method")
    if not isinstance(method, str) or not method:
        raise RpcError(INVALID_REQUEST, '"method" must be a non-empty string.', request_id=known_id)
    params = raw.get("params", {})
    if params is None:
        params = {}
    if isinstance(params, list):
        raise RpcError(INVALID_PARAMS, '"params" must be an object (MCP uses named parameters).', request_id=known_id)
    if not isinstance(params, dict):
        raise RpcError(INVALID_REQUEST, '"params" must be an object.', request_id=known_id)
    return Message(method=method, params=params, id=known_id)


# --- The tools of one user -------------------------------------------------------------------------


@dataclass(frozen=True)
class OfferedTool:
    """One tool as listed over MCP, with where a call to it goes."""

    name: str
    definition: dict[str, Any]
    # Registry tools list first (by name), then agents (by id); the key is what a cursor points at.
    sort_key: tuple[int, str]
    agent_id: str | None = None


def _registry_tool_definition(tool) -> dict[str, Any]:
    return {
        "name": tool.name,
        "title": tool.display_name,
        "description": tool.description,
        "inputSchema": tool.parameters,
    }


def agent_tool_description(name: str, description: str) -> str:
    """What a model reads about an agent tool."""
    text = f'Runs the ClaraVerse agent "{name}"'
    if description.strip():
        text += f": {description.strip()}"
    text = text.rstrip(".") + ". Pass the workflow input as `input`; the result is the execution output."
    return _clip(text, MAX_DESCRIPTION_CHARS)


def _agent_tool_definition(agent_id: str, name: str, description: str) -> dict[str, Any]:
    return {
        "name": agent_id,
        "title": name,
        "description": agent_tool_description(name, description),
        "inputSchema": AGENT_INPUT_SCHEMA,
    }


def held_integrations(user) -> set[str]:
    """The integrations the user holds at least one credential for."""
    from integrations.models import Credential

    return set(Credential.objects.filter(user=user).values_list("integration_id", flat=True).distinct())


def offered_tools(user) -> list[OfferedTool]:
    """Every tool the user can call over MCP, in listing order."""
    from agents.models import Agent
    from integrations.tools import tool_registry

    offered = [
        OfferedTool(name=tool.name, definition=_registry_tool_definition(tool), sort_key=(0, tool.name))
        for tool in tool_registry.available(held_integrations(user))
    ]
    agents = Agent.objects.filter(user=user).order_by("id").values_list("id", "name", "description")
    for agent_id, name, description in agents:
        # A registry tool of the same name would hide the agent; built-in names never start with agent_.
        if agent_id in tool_registry:
            logger.warning("agent %s is hidden from MCP by a registry tool of the same name", agent_id)
            continue
        offered.append(
            OfferedTool(
                name=agent_id,
                definition=_agent_tool_definition(agent_id, name, description),
                sort_key=(1, agent_id),
                agent_id=agent_id,
            )
        )
    return offered


def tools_fingerprint(tools: list[OfferedTool]) -> str:
    """A digest of what `tools/list` shows; it changes exactly when the client's view would."""
    encoded = json.dumps([tool.definition for tool in tools], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()


def user_tools_fingerprint(user) -> str:
    """The fingerprint of the user's current tool list."""
    return tools_fingerprint(offered_tools(user))


def encode_cursor(sort_key: tuple[int, str]) -> str:
    """An opaque cursor pointing after `sort_key`."""
    return base64.urlsafe_b64encode(json.dumps(list(sort_key)).encode()).decode().rstrip("=")


def decode_cursor(cursor: Any) -> tuple[int, str]:
    """The sort key a cursor points after; RpcError -32602 for anything we did not issue."""
    if not isinstance(cursor, str) or len(cursor) > 512:
        raise RpcError(INVALID_PARAMS, "Invalid cursor.")
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        raise RpcError(INVALID_PARAMS, "Invalid cursor.")
    if (
        not isinstance(decoded, list)
        or len(decoded) != 2
        or not isinstance(decoded[0], int)
        or not isinstance(decoded[1], str)
    ):
        raise RpcError(INVALID_PARAMS, "Invalid cursor.")
    return decoded[0], decoded[1]


def tools_page(
    tools: list[OfferedTool], cursor: str | None, page_size: int = TOOLS_PAGE_SIZE
) -> tuple[list[OfferedTool], str | None]:
    """One page of `tools` after `cursor`, and the cursor of the next page (None on the last one)."""
    # A position in the sort order, not an offset: tools added or removed between two pages
    # neither repeat nor hide the others.
    remaining = tools if cursor is None else [tool for tool in tools if tool.sort_key > decode_cursor(cursor)]
    page = remaining[:page_size]
    next_cursor = encode_cursor(page[-1].sort_key) if len(remaining) > page_size else None
    return page, next_cursor


# --- Running one call (in a worker thread) ---------------------------------------------------------


def text_result(text: str, *, is_error: bool = False, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """A CallToolResult with one text block."""
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": is_error}
    if meta:
        result["_meta"] = meta
    return result


def as_text(value: Any) -> str:
    """A result as text: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def call_tool(*, user, name: str, arguments: dict[str, Any], cancel_token: CancelToken) -> dict[str, Any]:
    """Run one `tools/call` for `user`; a CallToolResult, or RpcError -32602 for a tool they do not have."""
    from agents.models import Agent
    from integrations.credentials import tool_context_for
    from integrations.tools import ToolError, tool_registry

    tool = tool_registry.get(name)
    if tool is not None:
        if tool.requires_integration is not None and tool.requires_integration not in held_integrations(user):
            raise RpcError(
                INVALID_PARAMS,
                f"Unknown tool: {_clip(name, 64)} (it needs a '{tool.requires_integration}' credential).",
            )
        try:
            outcome = tool_registry.execute(name, arguments, tool_context_for(user=user))
        except ToolError as exc:
            return text_result(exc.message, is_error=True)
        if not outcome.success:
            return text_result(outcome.error or f"The tool '{name}' failed.", is_error=True)
        return text_result(as_text(outcome.result))

    agent = None
    if name.startswith(AGENT_TOOL_PREFIX):
        agent = Agent.objects.filter(user=user, pk=name).first()
    if agent is None:
        raise RpcError(INVALID_PARAMS, f"Unknown tool: {_clip(name, 64)}.")
    return run_agent(user=user, agent=agent, arguments=arguments, cancel_token=cancel_token)


def run_agent(*, user, agent, arguments: dict[str, Any], cancel_token: CancelToken) -> dict[str, Any]:
    """Create an `mcp` execution of the agent (counting the quota), run it here to the end, answer its output."""
    from executions.models import Execution, ExecutionStatus, ExecutionTrigger
    from executions.run import execute_execution
    from executions.services import execution_create
    from integrations.tools.registry import fit_result

    problems = sorted(_agent_input_validator.iter_errors(arguments), key=lambda error: error.json_path)
    if problems:
        listed = "; ".join(f"{error.json_path}: {_clip(error.message, 200)}" for error in problems)
        return text_result(f"Invalid arguments for agent tool '{agent.id}': {listed}", is_error=True)
    if cancel_token.is_cancelled():
        # Nobody waits for the answer any more; do not spend the quota on it.
        return text_result("Cancelled before it started.", is_error=True)
    try:
        execution = execution_create(
            user=user, agent=agent, trigger=ExecutionTrigger.MCP, input=arguments.get("input") or {}, enqueue=False
        )
    except ApplicationError as exc:
        return text_result(exc.message, is_error=True)
    meta = {EXECUTION_META_KEY: execution.id}
    finished = execute_execution(execution_id=execution.id, cancel_token=cancel_token)
    if finished is None:
        # Only a lost-message re-queue by the reaper can claim it first; that run then owns the result.
        finished = Execution.objects.get(pk=execution.id)
        return text_result(
            f"Execution {execution.id} is being run by a worker ({finished.status}); follow it over the REST API.",
            is_error=True,
            meta=meta,
        )
    if finished.status == ExecutionStatus.COMPLETED:
        output, _truncated = fit_result(finished.output, max_bytes=AGENT_RESULT_MAX_BYTES)
        return text_result(as_text(output), meta=meta)
    if finished.status == ExecutionStatus.CANCELLED:
        return text_result("The execution was cancelled.", is_error=True, meta=meta)
    return text_result(f"The execution failed: {finished.error or 'unknown error'}", is_error=True, meta=meta)


_call_in_thread = database_sync_to_async(call_tool, thread_sensitive=False, executor=_call_executor)


# --- One connection ------------------------------------------------------------------------------


@dataclass
class _Call:
    request_id: RequestId
    token: CancelToken = field(default_factory=CancelToken)
    cancelled: bool = False


class MCPSession:
    """One MCP connection of one user: its state, its calls in flight and the watch on its tool list."""

    def __init__(self, *, user, send: Send, max_frame_bytes: int):
        self.user = user
        self._send = send
        self.max_frame_bytes = max_frame_bytes
        self.protocol_version: str | None = None
        self.client_info: dict[str, Any] = {}
        self.client_ready = False  # notifications/initialized received
        self.closed = False
        self._calls: dict[str, _Call] = {}
        self._tasks: set[asyncio.Task] = set()
        self._watch_task: asyncio.Task | None = None
        # The tool list the client has seen or been told changed; None until its first tools/list.
        self._known_fingerprint: str | None = None

    @property
    def initialized(self) -> bool:
        return self.protocol_version is not None

    @property
    def calls_in_flight(self) -> int:
        return len(self._calls)

    async def send(self, message: Any) -> None:
        """Send one message or batch unless the connection is gone."""
        if not self.closed:
            await self._send(message)

    # Frames and batches.

    async def receive_frame(self, text: str | None, binary: bytes | None = None) -> None:
        """One WebSocket frame: size and JSON checks, then the message or batch in it."""
        if text is None:
            await self.send(error_response(None, INVALID_REQUEST, "Binary frames are not supported; send JSON text."))
            return
        if len(text) > self.max_frame_bytes or len(text.encode("utf-8", "surrogatepass")) > self.max_frame_bytes:
            await self.send(
                error_response(None, INVALID_REQUEST, "Frame too large.", {"max_bytes": self.max_frame_bytes})
            )
            return
        try:
            content = strict_json_loads(text)
        except ValueError as exc:
            await self.send(
                error_response(None, PARSE_ERROR, "Parse error: the frame is not valid JSON.", str(exc)[:200])
            )
            return
        await self.receive(content)

    async def receive(self, content: Any) -> None:
        """A parsed message or batch; replies are sent as they become ready."""
        if not isinstance(content, list):
            outcome = await self._handle(content)
            if isinstance(outcome, asyncio.Task):
                # A tool call: its own task answers when it ends, while this socket reads on.
                outcome.add_done_callback(self._send_when_done)
            elif outcome is not None:
                await self.send(outcome)
            return
        if not content:
            await self.send(error_response(None, INVALID_REQUEST, "An empty batch is not a request."))
            return
        if len(content) > MAX_BATCH_MESSAGES:
            await self.send(
                error_response(None, INVALID_REQUEST, f"A batch holds at most {MAX_BATCH_MESSAGES} messages.")
            )
            return
        outcomes = [await self._handle(item) for item in content]
        if any(isinstance(outcome, asyncio.Task) for outcome in outcomes):
            self._track(asyncio.create_task(self._answer_batch(outcomes)))
            return
        responses = [outcome for outcome in outcomes if outcome is not None]
        if responses:
            await self.send(responses)

    async def _answer_batch(self, outcomes: list) -> None:
        responses = []
        for outcome in outcomes:
            if isinstance(outcome, asyncio.Task):
                outcome = await outcome
            if outcome is not None:
                responses.append(outcome)
        if responses:
            await self.send(responses)

    def _send_when_done(self, task: asyncio.Task) -> None:
        if task.cancelled() or task.exception() is not None or task.result() is None:
            return
        self._track(asyncio.ensure_future(self.send(task.result())))

    def _track(self, task: asyncio.Task) -> asyncio.Task:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _handle(self, raw: Any) -> dict[str, Any] | asyncio.Task | None:
        """A response to send now, a task that will produce one, or None (notifications, responses)."""
        try:
            message = parse_message(raw)
        except RpcError as exc:
            return exc.response()
        if message is None:
            return None
        if message.is_notification:
            self._on_notification(message)
            return None
        try:
            return await self._on_request(message)
        except RpcError as exc:
            return exc.response(message.id)
        except Exception:
            logger.exception("MCP request %s failed", message.method)
            return error_response(message.id, INTERNAL_ERROR, "Internal error.")

    # Notifications.

    def _on_notification(self, message: Message) -> None:
        if message.method == "notifications/initialized":
            self.client_ready = True
        elif message.method == "notifications/cancelled":
            request_id = message.params.get("requestId")
            call = self._calls.get(_id_key(request_id)) if _valid_id(request_id) else None
            if call is not None:
                call.cancelled = True
                call.token.cancel()
        # Any other notification needs nothing from us; JSON-RPC forbids answering one.

    # Requests.

    async def _on_request(self, message: Message) -> dict[str, Any] | asyncio.Task:
        handler = {
            "initialize": self._initialize,
            "ping": self._ping,
            "tools/list": self._tools_list,
            "tools/call": self._tools_call,
        }.get(message.method)
        if handler is None:
            raise RpcError(METHOD_NOT_FOUND, f"Method not found: {_clip(message.method, 64)}.")
        if not self.initialized and message.method not in {"initialize", "ping"}:
            raise RpcError(INVALID_REQUEST, "The session is not initialized: send initialize first.")
        return await handler(message)

    async def _initialize(self, message: Message) -> dict[str, Any]:
        if self.initialized:
            raise RpcError(INVALID_REQUEST, "The session is already initialized.")
        requested = message.params.get("protocolVersion")
        if not isinstance(requested, str):
            raise RpcError(INVALID_PARAMS, '"protocolVersion" must be a string.')
        client_info = message.params.get("clientInfo")
        self.client_info = client_info if isinstance(client_info, dict) else {}
        self.protocol_version = requested if requested in PROTOCOL_VERSIONS else LATEST_PROTOCOL_VERSION
        return result_response(
            message.id,
            {
                "protocolVersion": self.protocol_version,
                "capabilities": {"tools": {"listChanged": True}},
                "serverInfo": {"name": SERVER_NAME, "version": claraverse.__version__},
                "instructions": INSTRUCTIONS,
            },
        )

    async def _ping(self, message: Message) -> dict[str, Any]:
        return result_response(message.id, {})

    async def _tools_list(self, message: Message) -> dict[str, Any]:
        cursor = message.params.get("cursor")
        if cursor is not None:
            decode_cursor(cursor)  # a bad cursor is refused before touching the database
        tools = await database_sync_to_async(offered_tools)(self.user)
        page, next_cursor = tools_page(tools, cursor)
        self._known_fingerprint = tools_fingerprint(tools)
        result: dict[str, Any] = {"tools": [tool.definition for tool in page]}
        if next_cursor is not None:
            result["nextCursor"] = next_cursor
        return result_response(message.id, result)

    async def _tools_call(self, message: Message) -> asyncio.Task:
        name = message.params.get("name")
        if not isinstance(name, str) or not name:
            raise RpcError(INVALID_PARAMS, '"name" must be a non-empty string.')
        arguments = message.params.get("arguments")
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise RpcError(INVALID_PARAMS, '"arguments" must be an object.')
        key = _id_key(message.id)
        if key in self._calls:
            raise RpcError(INVALID_REQUEST, "A request with this id is still in progress.")
        if len(self._calls) >= MAX_CALLS_IN_FLIGHT:
            raise RpcError(
                INTERNAL_ERROR,
                f"Too many tool calls in progress on this connection (at most {MAX_CALLS_IN_FLIGHT}); "
                "wait for one to finish.",
                {"max_in_flight": MAX_CALLS_IN_FLIGHT},
            )
        call = _Call(request_id=message.id)
        self._calls[key] = call
        return self._track(asyncio.create_task(self._run_call(key, call, name, arguments)))

    async def _run_call(self, key: str, call: _Call, name: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
        try:
            result = await _call_in_thread(user=self.user, name=name, arguments=arguments, cancel_token=call.token)
            response = result_response(call.request_id, result)
        except RpcError as exc:
            response = exc.response(call.request_id)
        except Exception:
            logger.exception("MCP call of %s failed", name)
            response = error_response(call.request_id, INTERNAL_ERROR, "Internal error.")
        finally:
            self._calls.pop(key, None)
        # MCP: a cancelled request gets no response at all.
        return None if call.cancelled or self.closed else response

    # The tool-list watch.

    async def check_tools_changed(self) -> bool:
        """Send `notifications/tools/list_changed` if the list moved since the client last saw it."""
        if self._known_fingerprint is None or self.closed:
            return False
        current = await database_sync_to_async(user_tools_fingerprint)(self.user)
        if current == self._known_fingerprint:
            return False
        self._known_fingerprint = current
        await self.send(notification("notifications/tools/list_changed"))
        return True

    def start_watch(self, interval: float | None = None) -> None:
        """Poll the tool list every `interval` seconds while the connection is open."""
        self._watch_task = asyncio.create_task(self._watch(interval or TOOLS_POLL_SECONDS))

    async def _watch(self, interval: float) -> None:
        while not self.closed:
            await asyncio.sleep(interval)
            try:
                await self.check_tools_changed()
            except Exception:
                logger.exception("MCP tool-list check failed")

    async def close(self) -> None:
        """The connection is gone: stop watching, cancel running agents, drop pending answers."""
        self.closed = True
        if self._watch_task is not None:
            self._watch_task.cancel()
        for call in self._calls.values():
            call.cancelled = True
            call.token.cancel()
