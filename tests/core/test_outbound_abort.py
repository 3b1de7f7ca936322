"""OutboundStream.abort against a real loopback server: a read blocked in another thread ends at once."""

from __future__ import annotations

import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from claraverse.outbound import OutboundAborted, OutboundError, outbound_stream


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        server: _Server = self.server  # type: ignore[assignment]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for _ in range(server.chunks_before_hang):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(b"data: tick\n\n"), b"data: tick\n\n"))
        # Then silence, until the client hangs up (what abort must cause) or the test ends.
        while not server.closing.is_set():
            readable, _, _ = select.select([self.connection], [], [], 0.02)
            if readable and not self.connection.recv(1, socket.MSG_PEEK):
                server.client_gone.set()
                return


class _Server(ThreadingHTTPServer):
    chunks_before_hang = 0

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.closing = threading.Event()
        self.client_gone = threading.Event()

    def handle_error(self, request, client_address):
        pass


@pytest.fixture
def hanging_server(settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield server
    server.closing.set()
    server.shutdown()
    server.server_close()


def _url(server: _Server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/sse"


def test_abort_from_another_thread_ends_a_blocked_read_at_once(hanging_server):
    hanging_server.chunks_before_hang = 1
    lines: list[str] = []
    with outbound_stream("GET", _url(hanging_server), timeout=(2, 10)) as stream:
        timer = threading.Timer(0.2, stream.abort)
        started = time.monotonic()
        timer.start()
        with pytest.raises(OutboundAborted) as caught:
            lines.extend(stream.iter_lines())
        elapsed = time.monotonic() - started
    assert lines[0] == "data: tick"
    assert elapsed < 1.0  # the read timeout is 10 s: only the abort can have ended the read
    assert isinstance(caught.value, OutboundError)
    assert caught.value.message == "The outbound request was aborted."
    assert hanging_server.client_gone.wait(1.0)


def test_abort_before_reading_makes_reading_raise(hanging_server):
    with outbound_stream("GET", _url(hanging_server), timeout=(2, 10)) as stream:
        stream.abort()
        started = time.monotonic()
        with pytest.raises(OutboundAborted):
            stream.read()
        with pytest.raises(OutboundAborted):
            next(stream.iter_bytes())
    assert time.monotonic() - started < 1.0
    assert hanging_server.client_gone.wait(1.0)


def test_without_abort_the_hanging_read_times_out(hanging_server):
    # The same server without abort: proves the tests above end because of it, not because the server stops.
    with (
        pytest.raises(OutboundError) as caught,
        outbound_stream("GET", _url(hanging_server), timeout=(2, 0.3)) as stream,
    ):
        stream.read()
    assert not isinstance(caught.value, OutboundAborted)


def test_abort_after_the_call_ended_is_harmless(hanging_server):
    with outbound_stream("GET", _url(hanging_server), timeout=(2, 10)) as stream:
        pass
    stream.abort()
    stream.abort()
