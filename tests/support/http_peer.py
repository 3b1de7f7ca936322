"""A real HTTP server on loopback that records requests and answers with scripted responses.

    with HTTPPeer() as peer:
        peer.on("GET", "/search", Answer(json={"results": []}))
        peer.on("POST", "/hook", Answer(status=204), Answer(status=500))  # first call 204, then 500 from then on
        ...  # point the code under test at peer.url("/search")
        peer.requests[0].query["q"]

Answers are matched on the method and the path (without the query string). Each route plays its
answers in order and keeps repeating the last one; an unknown route answers 404. `delay` holds the
answer back (a slow server), `body_bytes` sends a large body without building it in the test. On
stop, every delayed answer is released at once so that the suite never waits on a sleeping handler.
"""

from __future__ import annotations

import json as jsonlib
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Answer:
    """One scripted response."""

    status: int = 200
    body: bytes | str = b""
    json: Any = None  # when set, sent as the body with Content-Type application/json
    content_type: str | None = None  # default: text/plain for a str body, none for bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before the status line is sent
    body_bytes: int = 0  # send this many bytes of b"x" (after `body`), streamed in chunks
    declare_length: bool = True  # False: no Content-Length, the body ends when the connection closes


@dataclass(frozen=True)
class RecordedRequest:
    """What the client sent."""

    method: str
    path: str  # without the query string
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def text(self) -> str:
        """The body as UTF-8 text."""
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON."""
        return jsonlib.loads(self.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: HTTPPeer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args):
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        recorded = RecordedRequest(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )
        owner = self.server.owner
        answer = owner.record_and_pick(recorded)
        self.close_connection = True
        try:
            if answer.delay and owner.stopping.wait(answer.delay):
                return
            self._send(answer)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test); nothing to answer

    def _send(self, answer: Answer) -> None:
        payload, content_type = _payload(answer)
        self.send_response(answer.status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if answer.declare_length:
            self.send_header("Content-Length", str(len(payload) + answer.body_bytes))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        self.wfile.write(payload)
        remaining = answer.body_bytes
        chunk = b"x" * 65536
        while remaining > 0 and not self.server.owner.stopping.is_set():
            piece = chunk[: min(remaining, len(chunk))]
            self.wfile.write(piece)
            remaining -= len(piece)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


def _payload(answer: Answer) -> tuple[bytes, str | None]:
    if answer.json is not None:
        return jsonlib.dumps(answer.json).encode(), answer.content_type or "application/json"
    if isinstance(answer.body, str):
        return answer.body.encode("utf-8"), answer.content_type or "text/plain; charset=utf-8"
    return answer.body, answer.content_type


class HTTPPeer:
    """A scripted HTTP server on 127.0.0.1 with a free port; use as a context manager or start()/stop()."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.stopping = threading.Event()
        self._routes: dict[tuple[str, str], deque[Answer]] = {}
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def on(self, method: str, path: str, *answers: Answer) -> HTTPPeer:
        """Script the answers to `method path` (played in order, the last one repeated)."""
        with self._lock:
            self._routes[(method.upper(), path)] = deque(answers or (Answer(),))
        return self

    def record_and_pick(self, request: RecordedRequest) -> Answer:
        """Record `request` and return the answer scripted for its route."""
        with self._lock:
            self.requests.append(request)
            queue = self._routes.get((request.method, request.path))
            if not queue:
                return Answer(status=404, body=f"no route for {request.method} {request.path}")
            return queue.popleft() if len(queue) > 1 else queue[0]

    @property
    def port(self) -> int:
        """The port the server listens on."""
        assert self._server is not None, "the peer is not started"
        return self._server.server_address[1]

    def url(self, path: str = "/") -> str:
        """An http URL on this peer."""
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> HTTPPeer:
        """Listen and serve in a background thread."""
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release delayed answers, stop serving and close the socket."""
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> HTTPPeer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
