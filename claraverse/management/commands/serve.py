"""`manage.py serve`: daphne on PORT, plus the embedded Celery worker and beat when configured.

With `--processes N` (or `WEB_PROCESSES`) the command binds the port once and runs N daphne
processes that accept on that one socket: the kernel spreads connections over them, so one
host uses all its cores without a separate load balancer. Several processes need the Redis
channel layer (WebSocket events must reach whichever process holds the socket), so the embedded
mode always serves from one process.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

# A child that dies this soon after starting is crashing on start-up: restarting it would loop.
_MIN_CHILD_LIFETIME_S = 10.0
_STOP_GRACE_S = 15.0


def _skip_autobahn_debug_formatting() -> None:
    """Stop autobahn from colouring the arguments of a debug log line for every WebSocket frame it sends.

    `WebSocketProtocol.sendData` builds `hltype(...)`/`hlval(...)` (click-styled strings) for a
    `log.debug` call whether or not debug logging is on; profiling `bench.chat_ws` showed that as about
    an eighth of the server's CPU per streamed chunk. Plain strings keep the log lines readable.
    """
    from autobahn.websocket import protocol

    protocol.hltype = lambda obj: getattr(obj, "__qualname__", type(obj).__name__)
    protocol.hlval = lambda value, color=None, bold=None: value


def _skip_twisted_form_parsing() -> None:
    """Stop Twisted from parsing form bodies that daphne never reads.

    Twisted's `Request.requestReceived` parses every POST's Content-Type with the `email` package (about
    an eighth of a trigger's CPU in `bench.trigger`) and decodes url-encoded and multipart bodies into
    `request.args`, which daphne ignores: it hands the raw body to Django. Worse, a malformed multipart
    body made Twisted answer a bare 400 and drop the connection before Django could answer with the
    error envelope. Django parses the bodies it needs itself.
    """
    from daphne.http_protocol import WebRequest

    # Twisted sets the flag per request in `Request.__init__`; a property that ignores the assignment wins.
    WebRequest._parsePOSTFormSubmission = property(lambda request: False, lambda request, value: None)


class Command(BaseCommand):
    help = (
        "Serve HTTP and WebSockets with daphne. In the embedded mode (no REDIS_URL) the Celery "
        "worker and beat run inside this process; with REDIS_URL, --processes runs several web "
        "processes on one port."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3001")))
        parser.add_argument(
            "--processes",
            type=int,
            default=int(os.environ.get("WEB_PROCESSES", "1")),
            help="Web processes accepting on the port (needs REDIS_URL when above 1). Default: WEB_PROCESSES or 1.",
        )
        parser.add_argument("--no-worker", action="store_true", help="Do not run the embedded worker and beat.")
        parser.add_argument(
            "--no-access-log", action="store_true", help="Do not print a line per request (saves CPU under load)."
        )
        # Internal: a child of `--processes` serving on the socket its parent bound.
        parser.add_argument("--fd", type=int, default=None, help="Serve on this inherited listening socket.")

    def handle(self, *args, host, port, processes, no_worker, no_access_log, fd, **options):
        if processes < 1:
            raise CommandError("--processes must be at least 1.")
        if fd is not None or processes == 1:
            self._serve(host=host, port=port, fd=fd, no_worker=no_worker, access_log=not no_access_log)
            return
        if settings.CHANNEL_LAYERS["default"]["BACKEND"].endswith("InMemoryChannelLayer"):
            raise CommandError(
                "Several web processes need a shared channel layer: set REDIS_URL, or serve with --processes 1."
            )
        if settings.EMBEDDED_WORKER and not no_worker:
            raise CommandError("The embedded worker runs in one process: set EMBEDDED_WORKER=false or --no-worker.")
        self._supervise(host=host, port=port, processes=processes, access_log=not no_access_log)

    def _serve(self, *, host: str, port: int, fd: int | None, no_worker: bool, access_log: bool) -> None:
        from daphne.access import AccessLogGenerator
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server, twisted_loop

        from claraverse.asgi import application
        from claraverse.channel_layer import use_server_loop

        use_server_loop(twisted_loop)
        _skip_autobahn_debug_formatting()
        _skip_twisted_form_parsing()
        embedded = None
        if settings.EMBEDDED_WORKER and not no_worker and fd is None:
            from claraverse.embedded import EmbeddedCelery

            embedded = EmbeddedCelery(concurrency=settings.EMBEDDED_WORKER_CONCURRENCY)
            embedded.start()
        if fd is None:
            endpoints = build_endpoint_description_strings(host=host, port=port)
            self.stdout.write(f"ClaraVerse listening on http://{host}:{port} (Ctrl-C stops everything)")
        else:
            endpoints = build_endpoint_description_strings(file_descriptor=fd)
        server = Server(
            application=application,
            endpoints=endpoints,
            signal_handlers=True,
            action_logger=AccessLogGenerator(sys.stdout) if access_log else None,
            # Frames up to 4x our limit reach the consumer, which answers an `error` frame and stays
            # open; only absurd ones are cut off by the protocol layer.
            websocket_max_message_size=4 * settings.WEBSOCKET_MAX_FRAME_BYTES,
        )
        # Everything loaded so far lives as long as the process: moving it out of the collector's
        # generations keeps full collections (which pause every stream) short.
        gc.collect()
        gc.freeze()
        try:
            server.run()
        finally:
            if embedded is not None:
                embedded.stop()

    def _supervise(self, *, host: str, port: int, processes: int, access_log: bool) -> None:
        """Bind once, run `processes` children on the socket, restart one that dies, stop all on a signal."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host.strip("[]"), port))
        listener.listen(1024)
        listener.setblocking(False)  # Twisted adopts it as a non-blocking listening port
        fd = listener.fileno()
        argv = [sys.executable, sys.argv[0], "serve", "--fd", str(fd), "--no-worker"]
        if not access_log:
            argv.append("--no-access-log")

        def start_child() -> tuple[subprocess.Popen, float]:
            return subprocess.Popen(argv, pass_fds=(fd,)), time.monotonic()  # noqa: S603 - our own command

        stopping = False

        def request_stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        children = [start_child() for _ in range(processes)]
        self.stdout.write(
            f"ClaraVerse listening on http://{host}:{port} with {processes} web processes "
            f"(pids {', '.join(str(child.pid) for child, _ in children)}; Ctrl-C stops everything)"
        )
        exit_code = 0
        try:
            while not stopping:
                time.sleep(0.5)
                for index, (child, started) in enumerate(children):
                    code = child.poll()
                    if code is None or stopping:  # on Ctrl-C the children stop with us
                        continue
                    if time.monotonic() - started < _MIN_CHILD_LIFETIME_S:
                        self.stderr.write(f"Web process {child.pid} exited with {code} right after starting.")
                        exit_code = code or 1
                        stopping = True
                        break
                    self.stderr.write(f"Web process {child.pid} exited with {code}; starting another.")
                    children[index] = start_child()
        finally:
            for child, _ in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + _STOP_GRACE_S
            for child, _ in children:
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
            listener.close()
        if exit_code:
            sys.exit(exit_code)
