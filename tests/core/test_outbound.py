"""The guarded outbound client against real loopback servers (no internet, no patched HTTP client)."""

from __future__ import annotations

import gzip
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import urllib3.util.connection
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.core.exceptions import ImproperlyConfigured

from claraverse.errors import ApplicationError
from claraverse.outbound import (
    DestinationNotAllowed,
    InvalidOutboundRequest,
    OutboundConnectionError,
    OutboundError,
    OutboundTimeout,
    ResponseTooLarge,
    as_application_error,
    is_address_allowed,
    outbound_request,
    outbound_stream,
    system_resolver,
    validate_url,
)

# --- Loopback servers -----------------------------------------------------------------------------


@dataclass
class Hit:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


Route = Callable[["_Handler", Hit], None]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args):
        pass

    def _dispatch(self):
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        hit = Hit(
            method=self.command,
            path=self.path,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
        )
        owner.hits.append(hit)
        route = owner.routes.get(self.path.split("?", 1)[0])
        if route is None:
            reply(self, 404, b"not found")
        else:
            route(self, hit)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch


class _Server(ThreadingHTTPServer):
    owner: LoopbackServer

    def handle_error(self, request, client_address):
        pass  # clients hanging up on slow routes is what several tests do on purpose


class _Server6(_Server):
    address_family = socket.AF_INET6


class LoopbackServer:
    """A real HTTP(S) server on a loopback address, in a thread, recording every request it receives."""

    def __init__(self, routes: dict[str, Route], host: str, port: int, ssl_context: ssl.SSLContext | None):
        self.hits: list[Hit] = []
        self.routes = routes
        self.stop = threading.Event()
        self.httpd = (_Server6 if ":" in host else _Server)((host, port), _Handler)
        self.httpd.owner = self
        if ssl_context is not None:
            self.httpd.socket = ssl_context.wrap_socket(self.httpd.socket, server_side=True)
        self.host = host
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()

    def url(self, path: str = "/", *, host: str | None = None, scheme: str = "http") -> str:
        host = host or (f"[{self.host}]" if ":" in self.host else self.host)
        return f"{scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers: list[LoopbackServer] = []

    def start(routes, *, host="127.0.0.1", port=0, ssl_context=None) -> LoopbackServer:
        server = LoopbackServer(routes, host, port, ssl_context)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def serve_pair(serve, good_routes, bad_routes) -> tuple[LoopbackServer, LoopbackServer]:
    """A server on 127.0.0.2 and another on 127.0.0.1 with the same port, so only the address tells them apart."""
    for _ in range(20):
        good = serve(good_routes, host="127.0.0.2")
        try:
            bad = serve(bad_routes, host="127.0.0.1", port=good.port)
        except OSError:
            good.close()
            continue
        return good, bad
    pytest.skip("no port free on both 127.0.0.1 and 127.0.0.2")


def reply(handler: _Handler, status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    headers = dict(headers or {})
    headers.setdefault("Content-Length", str(len(body)))
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


def reply_json(handler: _Handler, payload, status: int = 200) -> None:
    reply(handler, status, json.dumps(payload).encode(), {"Content-Type": "application/json"})


def echo(handler: _Handler, hit: Hit) -> None:
    reply_json(handler, {"method": hit.method, "path": hit.path, "headers": hit.headers, "body": hit.body.decode()})


def redirect(location: str, status: int = 302) -> Route:
    return lambda handler, hit: reply(handler, status, headers={"Location": location})


def start_chunked(handler: _Handler, headers: dict[str, str] | None = None) -> None:
    handler.send_response(200)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()


def write_chunk(handler: _Handler, data: bytes) -> None:
    handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))


def end_chunks(handler: _Handler) -> None:
    handler.wfile.write(b"0\r\n\r\n")


class FakeResolver:
    """Answers from a table; a host with a list of answer lists gets the next list on each call (the last repeats)."""

    def __init__(self, table: dict[str, list]):
        self.table = table
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        answers = self.table[host]
        if answers and isinstance(answers[0], list):
            index = sum(1 for called, _ in self.calls if called == host) - 1
            return answers[min(index, len(answers) - 1)]
        return answers


@pytest.fixture(autouse=True)
def default_policy(settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = False
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    settings.OUTBOUND_MAX_REDIRECTS = 5
    return settings


@pytest.fixture
def no_connect(monkeypatch):
    """Fails the test if any socket connection is attempted."""
    attempts: list = []

    def refuse(address, *args, **kwargs):
        attempts.append(address)
        raise AssertionError(f"connection attempted to {address}")

    monkeypatch.setattr(urllib3.util.connection, "create_connection", refuse)
    return attempts


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# --- Address policy -------------------------------------------------------------------------------

REFUSED_ADDRESSES = [
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.0.1",
    "192.168.255.255",
    "169.254.169.254",  # cloud metadata
    "169.254.0.1",
    "100.64.0.1",  # shared address space
    "100.127.255.254",
    "0.0.0.0",
    "0.1.2.3",
    "224.0.0.1",
    "239.255.255.250",
    "255.255.255.255",
    "240.0.0.1",
    "198.18.0.1",
    "192.0.0.8",
    "192.0.2.1",
    "::1",
    "::",
    "fe80::1",
    "fe80::1%1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # IPv4-compatible
    "fc00::1",
    "fd12:3456:789a::1",
    "fec0::1",
    "ff02::1",
    "2002:7f00:1::1",  # 6to4 around 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 around 169.254.169.254
    "64:ff9b::a00:1",  # NAT64 around 10.0.0.1
    "64:ff9b:1::1",
    "2001::1",  # Teredo
    "2001:db8::1",
]

PUBLIC_ADDRESSES = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "100.63.255.255",
    "100.128.0.1",
    "172.32.0.1",
    "192.169.0.1",
    "11.0.0.1",
    "2606:4700:4700::1111",
    "2a00:1450:4001:82a::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
]


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
def test_a_host_resolving_to_a_non_public_address_is_refused_before_connecting(address, no_connect):
    resolver = FakeResolver({"svc.test": [address]})
    with pytest.raises(DestinationNotAllowed) as caught:
        outbound_request("GET", "http://svc.test/path", resolver=resolver)
    assert caught.value.message == "The host svc.test resolves to a private or reserved address, which is not allowed."
    assert resolver.calls == [("svc.test", 80)]
    assert no_connect == []


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
def test_non_public_addresses_are_not_allowed(address):
    assert is_address_allowed(address) is False
    assert is_address_allowed(address, allow_private=True) is True


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_public_addresses_are_allowed(address):
    assert is_address_allowed(address) is True


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.0.0.1:8000/admin",
        "http://[::1]:8080/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0:5432/",
        "https://10.1.2.3/",
        "http://[fe80::1%25lo]/",
    ],
)
def test_ip_literal_urls_are_checked_without_the_resolver(url, no_connect):
    resolver = FakeResolver({})
    with pytest.raises(DestinationNotAllowed, match="is private or reserved and not allowed"):
        outbound_request("GET", url, resolver=resolver)
    assert resolver.calls == []
    assert no_connect == []


def test_a_host_resolving_to_a_public_and_a_private_address_is_refused(no_connect):
    resolver = FakeResolver({"mixed.test": ["93.184.216.34", "10.0.0.7"]})
    with pytest.raises(DestinationNotAllowed, match="private or reserved"):
        outbound_request("POST", "https://mixed.test/hook", json={"a": 1}, resolver=resolver)
    assert resolver.calls == [("mixed.test", 443)]
    assert no_connect == []


@pytest.mark.parametrize("url", ["http://localhost/", "http://2130706433/", "http://0x7f.1/"])
def test_the_system_resolver_is_checked_too(url, no_connect):
    with pytest.raises(DestinationNotAllowed):
        outbound_request("GET", url)
    assert no_connect == []


def test_system_resolver_returns_addresses():
    assert "127.0.0.1" in system_resolver("localhost", 80)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "Only http and https URLs are allowed."),
        ("ftp://example.com/file", "Only http and https URLs are allowed."),
        ("gopher://example.com:70/_stats", "Only http and https URLs are allowed."),
        ("dict://example.com:11211/stats", "Only http and https URLs are allowed."),
        ("javascript:alert(1)", "Only http and https URLs are allowed."),
        ("example.com/no-scheme", "Only http and https URLs are allowed."),
        ("http:///no-host", "The URL has no host."),
        ("http://example.com:99999/", "The URL is malformed."),
        ("http://user:secret@example.com/", "URLs with credentials in them are not allowed; send them in a header."),
        ("http://user@example.com/", "URLs with credentials in them are not allowed; send them in a header."),
    ],
)
def test_bad_urls_are_refused(url, message, no_connect):
    resolver = FakeResolver({"example.com": ["93.184.216.34"]})
    with pytest.raises(DestinationNotAllowed) as caught:
        outbound_request("GET", url, resolver=resolver)
    assert caught.value.message == message
    assert resolver.calls == []
    assert no_connect == []


def test_bad_methods_and_headers_are_invalid_requests(no_connect):
    resolver = FakeResolver({"example.com": ["93.184.216.34"]})
    with pytest.raises(InvalidOutboundRequest, match="method"):
        outbound_request("TRACE", "http://example.com/", resolver=resolver)
    with pytest.raises(InvalidOutboundRequest, match="header") as caught:
        outbound_request("GET", "http://example.com/", headers={"X-Bad": "a\r\nInjected: 1"}, resolver=resolver)
    assert not isinstance(caught.value, DestinationNotAllowed)
    assert no_connect == []


def test_validate_url_checks_without_connecting(no_connect):
    resolver = FakeResolver({"public.test": ["93.184.216.34"], "private.test": ["192.168.1.10"]})
    validate_url("https://public.test/hook", resolver=resolver)
    with pytest.raises(DestinationNotAllowed):
        validate_url("https://private.test/hook", resolver=resolver)
    validate_url("https://private.test/hook", resolver=resolver, allow_private=True)
    with pytest.raises(DestinationNotAllowed):
        validate_url("ftp://public.test/", resolver=resolver)
    assert no_connect == []


def test_resolution_failures_are_connection_errors(no_connect):
    def failing(host, port):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(OutboundConnectionError, match=r"Could not resolve the host nowhere\.test"):
        outbound_request("GET", "http://nowhere.test/", resolver=failing)
    with pytest.raises(OutboundConnectionError, match="Could not resolve"):
        outbound_request("GET", "http://empty.test/", resolver=FakeResolver({"empty.test": []}))
    assert no_connect == []


def test_an_invalid_allowed_network_setting_is_a_configuration_error(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["10.0.0.0/8", "not-a-network"]
    with pytest.raises(ImproperlyConfigured, match="not-a-network"):
        is_address_allowed("10.1.1.1")


# --- Requests against loopback servers ------------------------------------------------------------


def test_get_with_params_and_json_response(serve, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    server = serve({"/echo": echo})
    response = outbound_request(
        "GET", server.url("/echo"), params={"q": "a b", "n": 2}, headers={"X-Trace": "t-1", "X-Dropped": None}
    )
    assert response.status_code == 200
    assert response.is_success
    body = response.json()
    assert body["method"] == "GET"
    assert body["path"] == "/echo?q=a+b&n=2"
    assert body["headers"]["x-trace"] == "t-1"
    assert "x-dropped" not in body["headers"]
    assert body["headers"]["host"] == f"127.0.0.1:{server.port}"
    assert body["headers"]["user-agent"] == "ClaraVerse"
    assert response.headers["content-type"] == response.headers["CONTENT-TYPE"] == "application/json"
    assert response.url == server.url("/echo?q=a+b&n=2")
    assert response.elapsed_ms >= 0
    assert len(server.hits) == 1


def test_post_json(serve, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    server = serve({"/echo": echo})
    response = outbound_request("POST", server.url("/echo"), json={"name": "Clara", "tags": ["a", "é"]})
    body = response.json()
    assert body["method"] == "POST"
    assert body["headers"]["content-type"] == "application/json"
    assert json.loads(body["body"]) == {"name": "Clara", "tags": ["a", "é"]}
    assert server.hits[0].method == "POST"


def test_text_uses_the_declared_charset(serve, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    latin_type = {"Content-Type": "text/plain; charset=ISO-8859-1"}
    server = serve(
        {
            "/latin": lambda handler, hit: reply(handler, 200, "café".encode("latin-1"), latin_type),
            "/plain": lambda handler, hit: reply(handler, 200, "naïve".encode()),
        }
    )
    assert outbound_request("GET", server.url("/latin")).text == "café"
    assert outbound_request("GET", server.url("/plain")).text == "naïve"


def test_non_2xx_answers_are_returned_not_raised(serve, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    server = serve({"/fail": lambda handler, hit: reply_json(handler, {"error": "nope"}, status=503)})
    response = outbound_request("GET", server.url("/fail"))
    assert response.status_code == 503
    assert not response.is_success
    assert response.json() == {"error": "nope"}


def test_gzip_bodies_are_decoded(serve, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    payload = gzip.compress(json.dumps({"ok": True}).encode())
    route = lambda handler, hit: reply(handler, 200, payload, {"Content-Encoding": "gzip"})  # noqa: E731
    server = serve({"/gz": route})
    assert outbound_request("GET", server.url("/gz")).json() == {"ok": True}


def test_per_call_allow_private_overrides_the_setting(serve, settings):
    server = serve({"/echo": echo})
    assert outbound_request("GET", server.url("/echo"), allow_private=True).status_code == 200
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    with pytest.raises(DestinationNotAllowed):
        outbound_request("GET", server.url("/echo"), allow_private=False)
    assert len(server.hits) == 1


def test_allowed_networks_admit_only_the_listed_private_ranges(serve, settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.2/32"]
    allowed = serve({"/echo": echo}, host="127.0.0.2")
    refused = serve({"/echo": echo}, host="127.0.0.1")
    assert outbound_request("GET", allowed.url("/echo")).status_code == 200
    with pytest.raises(DestinationNotAllowed):
        outbound_request("GET", refused.url("/echo"))
    resolver = FakeResolver({"mapped.test": ["::ffff:127.0.0.2"]})
    assert outbound_request("GET", allowed.url("/echo", host="mapped.test"), resolver=resolver).status_code == 200
    assert len(allowed.hits) == 2
    assert refused.hits == []


def test_dns_rebinding_cannot_switch_the_address(serve, settings, monkeypatch):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.2/32"]
    good, bad = serve_pair(
        serve,
        {"/who": lambda handler, hit: reply_json(handler, {"server": "good", "host": hit.headers["host"]})},
        {"/who": lambda handler, hit: reply_json(handler, {"server": "bad"})},
    )
    resolver = FakeResolver({"rebind.test": [["127.0.0.2"], ["127.0.0.1"]]})
    # Any lookup the client might make on its own gets the rebound answer, as the attacker's DNS would give it.
    real_getaddrinfo = socket.getaddrinfo

    def rebound_getaddrinfo(host, *args, **kwargs):
        return real_getaddrinfo("127.0.0.1" if host == "rebind.test" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebound_getaddrinfo)
    response = outbound_request("GET", f"http://rebind.test:{good.port}/who", resolver=resolver)
    assert response.json() == {"server": "good", "host": f"rebind.test:{good.port}"}
    assert len(good.hits) == 1
    assert bad.hits == []
    assert resolver.calls == [("rebind.test", good.port)]


def test_the_next_checked_address_is_tried_when_one_is_unreachable(serve, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    server = serve({"/echo": echo}, host="127.0.0.2")
    resolver = FakeResolver({"multi.test": ["127.0.0.3", "127.0.0.2"]})  # nothing listens on 127.0.0.3
    response = outbound_request("GET", server.url("/echo", host="multi.test"), resolver=resolver)
    assert response.status_code == 200
    assert resolver.calls == [("multi.test", server.port)]


def test_ipv6_destinations_are_pinned_too(serve, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    try:
        server = serve({"/echo": echo}, host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    assert outbound_request("GET", server.url("/echo")).json()["headers"]["host"] == f"[::1]:{server.port}"
    resolver = FakeResolver({"six.test": ["::1"]})
    response = outbound_request("GET", server.url("/echo", host="six.test"), resolver=resolver)
    assert response.json()["headers"]["host"] == f"six.test:{server.port}"
    assert len(server.hits) == 2


def test_a_server_hanging_up_is_a_connection_error(serve, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True

    def hang_up(handler, hit):
        handler.close_connection = True

    server = serve({"/bye": hang_up})
    with pytest.raises(OutboundConnectionError, match="broke before an answer arrived"):
        outbound_request("GET", server.url("/bye"))


def test_an_unreachable_destination_is_a_connection_error(settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    with pytest.raises(OutboundConnectionError, match=r"Could not connect to 127\.0\.0\.1"):
        outbound_request("GET", f"http://127.0.0.1:{free_port()}/")


def test_logs_name_the_host_but_never_the_path_query_or_headers(serve, settings, caplog):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    server = serve({"/echo": echo})
    caplog.set_level(logging.INFO, logger="claraverse.outbound")
    outbound_request("GET", server.url("/echo?token=sup3rs3cret"), headers={"Authorization": "Bearer hush-hush"})
    assert f"outbound GET 127.0.0.1:{server.port} -> 200" in caplog.text
    for secret in ("sup3rs3cret", "hush-hush", "/echo"):
        assert secret not in caplog.text


# --- Redirects ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "method", "body"),
    [(301, "GET", ""), (302, "GET", ""), (303, "GET", ""), (307, "POST", '{"n": 1}'), (308, "POST", '{"n": 1}')],
)
def test_redirects_are_followed_with_the_usual_method_rules(serve, settings, status, method, body):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    server = serve({"/start": redirect("/echo", status), "/echo": echo})
    response = outbound_request("POST", server.url("/start"), json={"n": 1})
    echoed = response.json()
    assert (echoed["method"], echoed["body"]) == (method, body)
    assert response.url == server.url("/echo")
    assert [hit.path for hit in server.hits] == ["/start", "/echo"]


@pytest.mark.parametrize("by_name", [False, True], ids=["ip-literal", "hostname"])
def test_a_redirect_to_a_private_address_is_refused(serve, settings, by_name):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.2/32"]
    private = serve({"/secret": lambda handler, hit: reply(handler, 200, b"internal")}, host="127.0.0.1")
    target = private.url("/secret", host="internal.test" if by_name else None)
    public = serve({"/go": redirect(target)}, host="127.0.0.2")
    resolver = FakeResolver({"public.test": ["127.0.0.2"], "internal.test": ["127.0.0.1"]})
    with pytest.raises(DestinationNotAllowed, match="private or reserved"):
        outbound_request("GET", public.url("/go", host="public.test"), resolver=resolver)
    assert len(public.hits) == 1
    assert private.hits == []


def test_a_redirect_to_another_scheme_is_refused(serve, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    server = serve({"/go": redirect("file:///etc/passwd")})
    with pytest.raises(DestinationNotAllowed, match="Only http and https"):
        outbound_request("GET", server.url("/go"))


def test_too_many_redirects(serve, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    settings.OUTBOUND_MAX_REDIRECTS = 2
    server = serve({"/loop": redirect("/loop"), "/r1": redirect("/r2"), "/r2": redirect("/echo"), "/echo": echo})
    with pytest.raises(DestinationNotAllowed, match=r"Too many redirects \(more than 2\)"):
        outbound_request("GET", server.url("/loop"))
    assert len(server.hits) == 3
    assert outbound_request("GET", server.url("/r1")).status_code == 200  # exactly the limit is fine


def test_redirects_can_be_left_unfollowed(serve, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    server = serve({"/go": redirect("/echo")})
    response = outbound_request("GET", server.url("/go"), allow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == "/echo"
    assert len(server.hits) == 1


def test_credentials_do_not_follow_a_redirect_to_another_origin(serve, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    other = serve({"/echo": echo}, host="127.0.0.1")
    origin = serve({"/away": redirect(other.url("/echo")), "/here": redirect("/echo"), "/echo": echo}, host="127.0.0.2")
    secrets = {"Authorization": "Bearer t", "X-Api-Key": "k", "Cookie": "s=1", "X-Other": "kept"}
    away = outbound_request("GET", origin.url("/away"), headers=secrets).json()["headers"]
    assert "authorization" not in away and "x-api-key" not in away and "cookie" not in away
    assert away["x-other"] == "kept"
    assert away["host"] == f"127.0.0.1:{other.port}"
    here = outbound_request("GET", origin.url("/here"), headers=secrets).json()["headers"]
    assert here["authorization"] == "Bearer t"


# --- Size cap -------------------------------------------------------------------------------------


def test_a_declared_length_over_the_cap_is_refused(serve, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    server = serve({"/big": lambda handler, hit: reply(handler, 200, b"x" * 1000)})
    with pytest.raises(ResponseTooLarge) as caught:
        outbound_request("GET", server.url("/big"), max_bytes=100)
    assert caught.value.max_bytes == 100
    assert caught.value.message == "The response is larger than the limit of 100 bytes."


def _chunked(pieces: list[bytes]) -> Route:
    def route(handler, hit):
        start_chunked(handler)
        for piece in pieces:
            write_chunk(handler, piece)
        end_chunks(handler)

    return route


def test_a_body_without_length_is_cut_at_the_cap(serve, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    server = serve({"/chunks": _chunked([b"y" * 50] * 5), "/exact": _chunked([b"z" * 50] * 2)})
    with pytest.raises(ResponseTooLarge):
        outbound_request("GET", server.url("/chunks"), max_bytes=120)
    assert outbound_request("GET", server.url("/exact"), max_bytes=100).content == b"z" * 100


def test_the_cap_defaults_to_the_setting(serve, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    settings.OUTBOUND_MAX_RESPONSE_BYTES = 64
    server = serve({"/chunks": _chunked([b"y" * 50] * 2)})
    with pytest.raises(ResponseTooLarge, match="64 bytes"):
        outbound_request("GET", server.url("/chunks"))


def test_the_cap_counts_decompressed_bytes(serve, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    bomb = gzip.compress(b"\0" * 2_000_000)
    assert len(bomb) < 10_000
    server = serve({"/bomb": lambda handler, hit: reply(handler, 200, bomb, {"Content-Encoding": "gzip"})})
    with pytest.raises(ResponseTooLarge):
        outbound_request("GET", server.url("/bomb"), max_bytes=100_000)


# --- Timeouts -------------------------------------------------------------------------------------


def test_a_server_that_does_not_answer_hits_the_read_timeout(serve, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True

    def sleepy(handler, hit):
        handler.server.owner.stop.wait(3)
        reply(handler, 200, b"late")

    server = serve({"/sleepy": sleepy})
    started = time.monotonic()
    with pytest.raises(OutboundTimeout) as caught:
        outbound_request("GET", server.url("/sleepy"), timeout=(1, 0.3))
    assert caught.value.message == f"127.0.0.1:{server.port} did not answer within 0.3 s."
    assert time.monotonic() - started < 1.5


def _drip_body(handler, hit):
    handler.send_response(200)
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    while not handler.server.owner.stop.wait(0.05):
        handler.wfile.write(b".")


def _drip_headers(handler, hit):
    handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
    while not handler.server.owner.stop.wait(0.05):
        handler.wfile.write(b"X-Drip: .\r\n")


@pytest.mark.parametrize("route", [_drip_body, _drip_headers], ids=["body", "headers"])
def test_a_slow_drip_hits_the_overall_deadline(serve, settings, route):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    server = serve({"/drip": route})
    started = time.monotonic()
    with pytest.raises(OutboundTimeout) as caught:
        outbound_request("GET", server.url("/drip"), timeout=(1, 0.5), total_timeout=0.6)
    elapsed = time.monotonic() - started
    assert caught.value.message == f"The request to 127.0.0.1:{server.port} did not complete within 0.6 s."
    assert 0.55 < elapsed < 1.5


def test_the_overall_deadline_defaults_to_connect_plus_read(serve, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    settings.OUTBOUND_CONNECT_TIMEOUT_SECONDS = 0.2
    settings.OUTBOUND_READ_TIMEOUT_SECONDS = 0.3
    server = serve({"/drip": _drip_body})
    started = time.monotonic()
    with pytest.raises(OutboundTimeout, match=r"did not complete within 0\.5 s"):
        outbound_request("GET", server.url("/drip"))
    assert time.monotonic() - started < 1.2


# --- Streaming ------------------------------------------------------------------------------------


def _incremental(framing: str, first_line_read: threading.Event, waited: list[bool]) -> Route:
    def route(handler, hit):
        if framing == "chunked":
            start_chunked(handler, {"Content-Type": "text/event-stream"})
            send = lambda data: write_chunk(handler, data)  # noqa: E731
        else:  # no length at all: the body ends when the connection closes
            handler.send_response(200)
            handler.send_header("Content-Type", "text/event-stream")
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.close_connection = True
            send = handler.wfile.write
        send(b"data: one\n\n")
        # The rest is only sent once the client has seen the first line, proving lines arrive as they are sent.
        waited.append(first_line_read.wait(2))
        send(b"data: two\r\n\r\n")
        send(b"data: three\rtail")
        if framing == "chunked":
            end_chunks(handler)

    return route


@pytest.mark.parametrize("framing", ["chunked", "close-delimited"])
def test_stream_yields_lines_as_they_arrive(serve, settings, framing):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    first_line_read, waited = threading.Event(), []
    server = serve({"/sse": _incremental(framing, first_line_read, waited)})
    lines = []
    with outbound_stream("POST", server.url("/sse"), json={"stream": True}) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"] == "text/event-stream"
        for line in stream.iter_lines():
            lines.append(line)
            if line == "data: one":
                first_line_read.set()
    assert lines == ["data: one", "", "data: two", "", "data: three", "tail"]
    assert waited == [True]
    assert stream.bytes_received == len(b"data: one\n\ndata: two\r\n\r\ndata: three\rtail")


def test_stream_line_breaks_split_across_chunks(serve, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    pieces = [b"data: a\r", b"\n", b"data: \xc3", b"\xa9\n", b"\r", b"\n", b"last"]
    server = serve({"/sse": _chunked(pieces)})
    with outbound_stream("GET", server.url("/sse")) as stream:
        assert list(stream.iter_lines()) == ["data: a", "data: é", "", "last"]


def test_stream_size_cap(serve, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    server = serve({"/sse": _chunked([b"data: " + b"x" * 20 + b"\n"] * 10)})
    received = []
    with pytest.raises(ResponseTooLarge), outbound_stream("GET", server.url("/sse"), max_bytes=100) as stream:
        received.extend(stream.iter_bytes())
    assert 0 < sum(map(len, received)) <= 100


def test_stream_deadline(serve, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True

    def endless(handler, hit):
        start_chunked(handler, {"Content-Type": "text/event-stream"})
        while not handler.server.owner.stop.wait(0.05):
            write_chunk(handler, b"data: tick\n\n")

    server = serve({"/sse": endless})
    lines = []
    started = time.monotonic()
    with (
        pytest.raises(OutboundTimeout, match=r"did not complete within 0\.5 s"),
        outbound_stream("GET", server.url("/sse"), timeout=(1, 1), total_timeout=0.5) as stream,
    ):
        lines.extend(stream.iter_lines())
    assert "data: tick" in lines
    assert time.monotonic() - started < 1.5


def test_stream_error_answers_can_be_read(serve, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    server = serve({"/v1/chat": lambda handler, hit: reply_json(handler, {"error": "bad model"}, status=400)})
    with outbound_stream("POST", server.url("/v1/chat"), json={}) as stream:
        assert stream.status_code == 400
        assert not stream.is_success
        assert json.loads(stream.read()) == {"error": "bad model"}


def test_stream_refusal_happens_before_connecting(no_connect):
    resolver = FakeResolver({"llm.test": ["10.0.0.5"]})
    with pytest.raises(DestinationNotAllowed), outbound_stream("POST", "http://llm.test/v1", resolver=resolver):
        pytest.fail("the stream must not open")
    assert no_connect == []


# --- TLS through a pinned address -----------------------------------------------------------------


def _tls_files(tmp_path, hostname: str) -> tuple[str, str, str]:
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ClaraVerse test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(leaf_cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(ca_path), str(cert_path), str(key_path)


def test_tls_verifies_the_hostname_while_connecting_to_the_pinned_address(serve, settings, tmp_path):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.2/32"]
    ca_path, cert_path, key_path = _tls_files(tmp_path, "secure.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server_names: list[str | None] = []
    context.sni_callback = lambda sslobj, name, ctx: server_names.append(name)
    server = serve({"/echo": echo}, host="127.0.0.2", ssl_context=context)
    resolver = FakeResolver({"secure.test": ["127.0.0.2"], "other.test": ["127.0.0.2"]})

    def fetch(host: str, **kwargs):
        return outbound_request("GET", server.url("/echo", host=host, scheme="https"), resolver=resolver, **kwargs)

    response = fetch("secure.test", verify=ca_path)
    assert response.json()["headers"]["host"] == f"secure.test:{server.port}"
    assert server_names == ["secure.test"]

    with pytest.raises(OutboundConnectionError, match=r"TLS connection to other\.test"):
        fetch("other.test", verify=ca_path)
    with pytest.raises(OutboundConnectionError, match=r"TLS connection to secure\.test"):
        fetch("secure.test")  # the system CA bundle does not trust the test CA
    assert len(server.hits) == 1


# --- Error mapping --------------------------------------------------------------------------------


def test_errors_map_to_the_api_envelope():
    refused = as_application_error(DestinationNotAllowed("Only http and https URLs are allowed."), field="url")
    assert isinstance(refused, ApplicationError)
    assert (refused.code, refused.status) == ("VALIDATION_ERROR", 400)
    assert refused.details == {"url": ["Only http and https URLs are allowed."]}
    too_large = as_application_error(ResponseTooLarge(100))
    assert (too_large.code, too_large.status, too_large.details) == ("PROVIDER_ERROR", 502, {"max_bytes": 100})
    for error in (OutboundTimeout(), OutboundConnectionError(), OutboundError()):
        mapped = as_application_error(error)
        assert (mapped.code, mapped.status, mapped.message) == ("PROVIDER_ERROR", 502, error.message)
