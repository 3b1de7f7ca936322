"""A real HTTP server speaking the OpenAI chat completions and Anthropic Messages APIs, scripted per test.

    server = LLMServer().start()
    server.enqueue(Reply(text="Hello world", chunks=3), Reply(status=429, retry_after=1))
    ...  # point a Provider at server.base_url("/v1") (OpenAI) or server.base_url() (Anthropic)
    server.requests[0].body["messages"]
    server.stop()

Routes (matched on the end of the path, so any base path works): `POST .../chat/completions` (OpenAI, streamed
as SSE when the body says `stream: true`), `POST .../messages` (Anthropic, likewise), `GET .../models` (Anthropic's
shape when the request carries `anthropic-version`, else OpenAI's). Each chat request takes the next queued
`Reply`, or `default_reply` when the queue is empty. Every request is recorded in `server.requests`.
"""

from __future__ import annotations

import json
import math
import select
import socket
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass(frozen=True)
class Reply:
    """One scripted answer: text and/or tool calls, or an error status, with optional timing misbehaviour."""

    text: str = ""
    chunks: int = 3  # how many streamed pieces the text is cut into
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    argument_pieces: int = 3  # how many deltas each tool call's JSON arguments are cut into
    interleave_tool_calls: bool = False  # alternate argument pieces between calls instead of one call after another
    status: int = 200
    retry_after: float | None = None  # sent as the Retry-After header with an error status
    error_message: str = "scripted failure"
    error_code: str | None = None  # OpenAI's error.code (e.g. "insufficient_quota"); default: the status
    finish_reason: str | None = None  # default: "tool_calls"/"tool_use" with calls, else "stop"/"end_turn"
    prompt_tokens: int = 12
    completion_tokens: int = 5
    include_usage: bool = True  # OpenAI streams also need the client to ask for it (stream_options)
    delay_before_headers: float = 0.0
    delay_before_first_chunk: float = 0.0  # headers are sent first
    chunk_interval: float = 0.0
    hang: bool = False  # send the headers, then nothing until the client leaves
    drop_after_chunks: int | None = None  # cut the connection after this many events (no proper end)
    stream_error: str | None = None  # send an in-stream error event with this type after the text


@dataclass(frozen=True)
class RecordedRequest:
    """What the client sent: method, path (with query), lower-case headers and the JSON body (None if not JSON)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw_body: bytes


DEFAULT_MODELS = [
    {"id": "gpt-test-large", "display_name": "GPT Test Large"},
    {"id": "gpt-test-small", "display_name": "GPT Test Small"},
]


class _ClientGone(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def _dispatch(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {name.lower(): value for name, value in self.headers.items()}
        owner.record(RecordedRequest(self.command, self.path, headers, body, raw))
        route = self.path.split("?", 1)[0].rstrip("/")
        try:
            if self.command == "GET" and route.endswith("/models"):
                self._models("anthropic-version" in headers)
            elif self.command == "POST" and route.endswith("/chat/completions"):
                self._chat(_OpenAIWriter(body or {}), owner.next_reply())
            elif self.command == "POST" and route.endswith("/messages"):
                self._chat(_AnthropicWriter(body or {}), owner.next_reply())
            else:
                self._json(404, {"error": {"message": f"no route for {self.command} {route}"}})
        except (_ClientGone, BrokenPipeError, ConnectionResetError):
            owner.client_gone.set()
        finally:
            self.close_connection = True

    # --- plumbing ---

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _wait(self, seconds: float) -> None:
        """Sleep, but return early (raising) when the client hangs up or the server stops."""
        owner = self.server.owner
        remaining = seconds
        while remaining > 0 and not owner.closing.is_set():
            step = min(remaining, 0.02)
            readable, _, _ = select.select([self.connection], [], [], step)
            if readable and not self.connection.recv(1, socket.MSG_PEEK):
                raise _ClientGone()
            remaining -= step

    def _hang(self) -> None:
        while not self.server.owner.closing.is_set():
            self._wait(0.1)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    # --- routes ---

    def _models(self, anthropic: bool) -> None:
        models = self.server.owner.models
        status = self.server.owner.models_status
        if status >= 400:
            self._json(status, {"error": {"message": "scripted model list failure", "type": "test_error"}})
            return
        if anthropic:
            data = [{"type": "model", "id": m["id"], "display_name": m["display_name"]} for m in models]
            self._json(200, {"data": data, "has_more": False, "first_id": None, "last_id": None})
        else:
            data = [{"id": m["id"], "object": "model", "created": 0, "owned_by": "test"} for m in models]
            self._json(200, {"object": "list", "data": data})

    def _chat(self, writer: _Writer, reply: Reply) -> None:
        if reply.delay_before_headers:
            self._wait(reply.delay_before_headers)
        if reply.status >= 400:
            headers = {"Retry-After": f"{reply.retry_after:g}"} if reply.retry_after is not None else {}
            self._json(reply.status, writer.error_body(reply), headers)
            return
        if not writer.streaming:
            if reply.hang:
                self._hang()
            self._wait(reply.delay_before_first_chunk)
            self._json(200, writer.whole(reply))
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()
        if reply.hang:
            self._hang()
            return
        self._wait(reply.delay_before_first_chunk)
        for index, event in enumerate(writer.events(reply)):
            if reply.drop_after_chunks is not None and index >= reply.drop_after_chunks:
                return  # no terminating chunk: the client sees the connection break
            if index and reply.chunk_interval:
                self._wait(reply.chunk_interval)
            self._chunk(event)
        self._chunk(b"")


class _HTTPServer(ThreadingHTTPServer):
    owner: LLMServer
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # clients leaving mid-answer is what the stop tests do on purpose


def _split(text: str, pieces: int) -> list[str]:
    if not text:
        return []
    size = max(1, math.ceil(len(text) / max(1, pieces)))
    return [text[start : start + size] for start in range(0, len(text), size)]


class _Writer:
    streaming: bool

    def __init__(self, body: dict[str, Any]):
        self.body = body
        self.streaming = bool(body.get("stream"))

    def error_body(self, reply: Reply) -> dict[str, Any]:
        raise NotImplementedError

    def whole(self, reply: Reply) -> dict[str, Any]:
        raise NotImplementedError

    def events(self, reply: Reply) -> Iterator[bytes]:
        raise NotImplementedError

    @staticmethod
    def _argument_pieces(reply: Reply) -> list[list[str]]:
        return [_split(json.dumps(arguments), reply.argument_pieces) for _, arguments in reply.tool_calls]

    @staticmethod
    def _piece_order(reply: Reply, pieces: list[list[str]]) -> list[tuple[int, int]]:
        """(call index, piece index) in the order they are sent."""
        if not reply.interleave_tool_calls:
            return [(call, piece) for call, parts in enumerate(pieces) for piece in range(len(parts))]
        longest = max((len(parts) for parts in pieces), default=0)
        return [(call, piece) for piece in range(longest) for call in range(len(pieces)) if piece < len(pieces[call])]


class _OpenAIWriter(_Writer):
    def _data(self, payload: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        return self._data(
            {
                "id": "chatcmpl-test",
                "object": "chat.completion.chunk",
                "model": self.body.get("model"),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }
        )

    def _finish(self, reply: Reply) -> str:
        return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")

    def _usage(self, reply: Reply) -> dict[str, int]:
        total = reply.prompt_tokens + reply.completion_tokens
        return {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": total,
        }

    def error_body(self, reply: Reply) -> dict[str, Any]:
        code = reply.error_code or str(reply.status)
        return {"error": {"message": reply.error_message, "type": "test_error", "code": code}}

    def whole(self, reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
                for i, (name, args) in enumerate(reply.tool_calls)
            ]
        payload: dict[str, Any] = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": self.body.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": self._finish(reply)}],
        }
        if reply.include_usage:
            payload["usage"] = self._usage(reply)
        return payload

    def events(self, reply: Reply) -> Iterator[bytes]:
        yield self._chunk({"role": "assistant", "content": ""})
        for piece in _split(reply.text, reply.chunks):
            yield self._chunk({"content": piece})
        if reply.stream_error:
            yield self._data({"error": {"message": reply.error_message, "type": reply.stream_error}})
            return
        pieces = self._argument_pieces(reply)
        started: set[int] = set()
        for call, piece in self._piece_order(reply, pieces):
            if call not in started:
                started.add(call)
                yield self._tool_start(call, reply.tool_calls[call][0])
            yield self._chunk({"tool_calls": [{"index": call, "function": {"arguments": pieces[call][piece]}}]})
        yield self._chunk({}, self._finish(reply))
        if reply.include_usage and (self.body.get("stream_options") or {}).get("include_usage"):
            yield self._data({"id": "chatcmpl-test", "choices": [], "usage": self._usage(reply)})
        yield b"data: [DONE]\n\n"

    def _tool_start(self, index: int, name: str) -> bytes:
        call = {"index": index, "id": f"call_{index}", "type": "function", "function": {"name": name, "arguments": ""}}
        return self._chunk({"tool_calls": [call]})


class _AnthropicWriter(_Writer):
    def _event(self, payload: dict[str, Any]) -> bytes:
        return f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n".encode()

    def _stop_reason(self, reply: Reply) -> str:
        return reply.finish_reason or ("tool_use" if reply.tool_calls else "end_turn")

    def error_body(self, reply: Reply) -> dict[str, Any]:
        return {"type": "error", "error": {"type": "test_error", "message": reply.error_message}}

    def whole(self, reply: Reply) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if reply.text:
            content.append({"type": "text", "text": reply.text})
        for i, (name, args) in enumerate(reply.tool_calls):
            content.append({"type": "tool_use", "id": f"toolu_{i}", "name": name, "input": args})
        usage = {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens}
        return {
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "model": self.body.get("model"),
            "content": content,
            "stop_reason": self._stop_reason(reply),
            "usage": usage if reply.include_usage else {},
        }

    def events(self, reply: Reply) -> Iterator[bytes]:
        usage = {"input_tokens": reply.prompt_tokens, "output_tokens": 1} if reply.include_usage else {}
        message = {
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": self.body.get("model"),
        }
        yield self._event({"type": "message_start", "message": {**message, "stop_reason": None, "usage": usage}})
        yield self._event({"type": "ping"})
        block = 0
        if reply.text:
            yield self._event(
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
            )
            for piece in _split(reply.text, reply.chunks):
                yield self._event(
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
                )
            yield self._event({"type": "content_block_stop", "index": 0})
            block = 1
        if reply.stream_error:
            yield self._event({"type": "error", "error": {"type": reply.stream_error, "message": reply.error_message}})
            return
        pieces = self._argument_pieces(reply)
        open_blocks: set[int] = set()
        for call, piece in self._piece_order(reply, pieces):
            if call not in open_blocks:
                open_blocks.add(call)
                tool = {"type": "tool_use", "id": f"toolu_{call}", "name": reply.tool_calls[call][0], "input": {}}
                yield self._event({"type": "content_block_start", "index": block + call, "content_block": tool})
            delta = {"type": "input_json_delta", "partial_json": pieces[call][piece]}
            yield self._event({"type": "content_block_delta", "index": block + call, "delta": delta})
            if piece == len(pieces[call]) - 1:
                yield self._event({"type": "content_block_stop", "index": block + call})
        end_usage = {"output_tokens": reply.completion_tokens} if reply.include_usage else {}
        yield self._event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": self._stop_reason(reply), "stop_sequence": None},
                "usage": end_usage,
            }
        )
        yield self._event({"type": "message_stop"})


class LLMServer:
    """A loopback OpenAI + Anthropic compatible server on an ephemeral port, answering scripted replies."""

    def __init__(self, default_reply: Reply | None = None):
        self.default_reply = default_reply or Reply(text="Hello from the test server.")
        self.models: list[dict[str, str]] = list(DEFAULT_MODELS)
        self.models_status = 200  # an error status makes the model list fail
        self.requests: list[RecordedRequest] = []
        self.closing = threading.Event()
        self.client_gone = threading.Event()  # set when a client hung up while a reply was being sent
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port the server listens on (only once started)."""
        assert self._httpd is not None, "start() the server first"
        return self._httpd.server_address[1]

    def base_url(self, path: str = "") -> str:
        """`http://127.0.0.1:<port>` followed by `path` (e.g. "/v1")."""
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> LLMServer:
        """Listen on 127.0.0.1, port 0, serving from a daemon thread."""
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release hanging replies and close the listening socket."""
        self.closing.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def enqueue(self, *replies: Reply) -> None:
        """Queue replies for the next chat requests, in order."""
        with self._lock:
            self._queue.extend(replies)

    def next_reply(self) -> Reply:
        """The next queued reply, or the default one."""
        with self._lock:
            return self._queue.popleft() if self._queue else self.default_reply

    def record(self, request: RecordedRequest) -> None:
        """Keep a request for the test's assertions."""
        with self._lock:
            self.requests.append(request)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """The recorded chat requests (not model listings)."""
        return [r for r in self.requests if r.method == "POST"]

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@pytest.fixture
def llm_server() -> Iterator[LLMServer]:
    """A started LLMServer, stopped after the test."""
    with LLMServer() as server:
        yield server


# --- Rows pointing at the server ---------------------------------------------------------------


def create_provider(server: LLMServer | None, provider_type: str = "openai", *, api_key: str = "", **fields: Any):
    """A Provider row whose base URL is the server's, as an admin would type it for the type, key encrypted."""
    from integrations.models import Provider
    from integrations.provider_keys import encrypt_provider_key

    if "base_url" not in fields:
        fields["base_url"] = server.base_url("/v1" if provider_type in {"openai", "openai_compatible"} else "")
    fields.setdefault("name", f"{provider_type}-{Provider.objects.count() + 1}")
    encrypted = encrypt_provider_key(api_key)
    return Provider.objects.create(type=provider_type, api_key_encrypted=encrypted, **fields)


def create_model(provider: Any, model_id: str = "test/model:latest", **fields: Any):
    """An LLMModel row of `provider`; its provider-side `name` defaults to "provider-model-name"."""
    from integrations.models import LLMModel

    fields.setdefault("name", "provider-model-name")
    return LLMModel.objects.create(id=model_id, provider=provider, **fields)
