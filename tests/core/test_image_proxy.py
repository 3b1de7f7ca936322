"""`GET /api/proxy/image` (CONTRACT §14) against real loopback image servers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from tests.matrix import assert_envelope
from tests.uploads.files import gif_bytes, png_bytes

PNG = png_bytes()
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'

Route = Callable[[BaseHTTPRequestHandler], None]


def reply(handler: BaseHTTPRequestHandler, status: int, body: bytes = b"", headers: dict | None = None) -> None:
    handler.send_response(status)
    for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def serve(body: bytes, content_type: str, status: int = 200) -> Route:
    return lambda handler: reply(handler, status, body, {"Content-Type": content_type})


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # the proxy hangs up on answers over its size cap, on purpose


class ImageServer:
    """A loopback HTTP server answering GETs from `routes` and counting the requests each path gets."""

    def __init__(self, host: str):
        self.routes: dict[str, Route] = {}
        self.hits: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):
                pass

            def do_GET(self):
                owner.hits.append(self.path)
                route = owner.routes.get(self.path)
                if route is None:
                    reply(self, 404, b"no such image", {"Content-Type": "text/plain"})
                else:
                    route(self)

        self.httpd = _QuietServer((host, 0), Handler)
        self.host, self.port = host, self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def image_server(host: str = "127.0.0.1") -> Iterator[ImageServer]:
    server = ImageServer(host)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def server() -> Iterator[ImageServer]:
    with image_server() as running:
        yield running


def proxy(url: str | None, client: APIClient | None = None, **extra):
    path = "/api/proxy/image" if url is None else f"/api/proxy/image?url={quote(url, safe='')}"
    return (client or APIClient()).get(path, **extra)


@pytest.fixture
def private_allowed(settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True


@pytest.mark.usefixtures("private_allowed")
class TestFetch:
    def test_image_is_served_under_its_sniffed_type_with_safe_headers(self, server):
        # The server calls it a JPEG; the bytes are a PNG, and the bytes decide.
        server.routes["/pixel"] = serve(PNG, "image/jpeg")
        response = proxy(server.url("/pixel"))
        assert response.status_code == 200
        assert response.content == PNG
        assert response["Content-Type"] == "image/png"
        assert response["Cache-Control"] == "public, max-age=3600"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Content-Security-Policy"].startswith("default-src 'none'")

    def test_second_call_comes_from_the_cache(self, server):
        server.routes["/pixel.gif"] = serve(gif_bytes(), "image/gif")
        first, second = proxy(server.url("/pixel.gif")), proxy(server.url("/pixel.gif"))
        assert first.status_code == second.status_code == 200
        assert second.content == gif_bytes() and second["Content-Type"] == "image/gif"
        assert server.hits == ["/pixel.gif"]

    @override_settings(IMAGE_PROXY_CACHE_SECONDS=120)
    def test_cache_lifetime_setting(self, server):
        server.routes["/x.png"] = serve(PNG, "image/png")
        assert proxy(server.url("/x.png"))["Cache-Control"] == "public, max-age=120"

    def test_failures_are_not_cached(self, server):
        server.routes["/flaky.png"] = serve(b"boom", "text/plain", status=500)
        assert_envelope(proxy(server.url("/flaky.png")), 502, "PROVIDER_ERROR")
        server.routes["/flaky.png"] = serve(PNG, "image/png")
        assert proxy(server.url("/flaky.png")).status_code == 200
        assert server.hits == ["/flaky.png", "/flaky.png"]

    @pytest.mark.parametrize(
        "body,content_type",
        [
            (PNG, "text/html"),
            (PNG, ""),
            (b"<html><body>not an image</body></html>", "image/png"),
            (b"%PDF-1.7 a document", "image/png"),
            (SVG, "image/svg+xml"),
            (SVG, "image/svg+xml; charset=utf-8"),
        ],
        ids=["png-as-html", "no-type", "html-as-png", "pdf-as-png", "svg", "svg-charset"],
    )
    def test_non_images_are_415(self, server, body, content_type):
        server.routes["/thing"] = serve(body, content_type) if content_type else lambda h: reply(h, 200, body)
        assert_envelope(proxy(server.url("/thing")), 415, "UNSUPPORTED_MEDIA_TYPE")

    @override_settings(IMAGE_PROXY_MAX_BYTES=len(PNG) - 1)
    def test_too_large_is_refused(self, server):
        server.routes["/big.png"] = serve(PNG, "image/png")
        body = assert_envelope(proxy(server.url("/big.png")), 502, "PROVIDER_ERROR")
        assert body["details"] == {"max_bytes": len(PNG) - 1}

    @override_settings(IMAGE_PROXY_MAX_BYTES=len(PNG) - 1)
    def test_too_large_without_a_content_length(self, server):
        def chunked(handler):
            handler.send_response(200)
            handler.send_header("Content-Type", "image/png")
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.wfile.write(PNG)
            handler.close_connection = True

        server.routes["/stream.png"] = chunked
        assert_envelope(proxy(server.url("/stream.png")), 502, "PROVIDER_ERROR")

    @pytest.mark.parametrize("status", [500, 404, 403])
    def test_upstream_errors_are_502(self, server, status):
        server.routes["/x.png"] = serve(b"nope", "text/plain", status=status)
        body = assert_envelope(proxy(server.url("/x.png")), 502, "PROVIDER_ERROR")
        assert body["details"] == {"upstream_status": status}

    def test_unreachable_server_is_502(self):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        assert_envelope(proxy(f"http://127.0.0.1:{port}/x.png"), 502, "PROVIDER_ERROR")

    def test_redirects_between_allowed_hosts_are_followed(self, server):
        server.routes["/old.png"] = lambda handler: reply(handler, 302, headers={"Location": "/new.png"})
        server.routes["/new.png"] = serve(PNG, "image/png")
        assert proxy(server.url("/old.png")).content == PNG

    def test_accept_header_and_credentials_do_not_matter(self, server):
        server.routes["/x.png"] = serve(PNG, "image/png")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
        assert proxy(server.url("/x.png"), client, HTTP_ACCEPT="text/html").status_code == 200


class TestRefusedDestinations:
    @pytest.mark.parametrize(
        "url",
        [None, "", "ftp://example.com/x.png", "file:///etc/passwd", "javascript:alert(1)", "http://user:pw@x.com/"],
    )
    def test_missing_or_bad_urls_are_400(self, url):
        body = assert_envelope(proxy(url), 400, "VALIDATION_ERROR")
        assert "url" in body["details"]

    def test_too_long_url_is_400(self):
        assert_envelope(proxy("http://example.com/" + "a" * 2100), 400, "VALIDATION_ERROR")

    def test_loopback_is_refused_without_the_switch(self, server):
        server.routes["/x.png"] = serve(PNG, "image/png")
        assert_envelope(proxy(server.url("/x.png")), 400, "VALIDATION_ERROR")
        assert server.hits == []

    def test_cloud_metadata_is_refused(self):
        body = assert_envelope(proxy("http://169.254.169.254/latest"), 400, "VALIDATION_ERROR")
        assert "url" in body["details"]

    @override_settings(OUTBOUND_ALLOWED_NETWORKS=["127.0.0.2/32"])
    def test_allowed_host_redirecting_to_a_private_address_is_refused(self, server):
        server.routes["/secret.png"] = serve(PNG, "image/png")
        with image_server("127.0.0.2") as public:
            public.routes["/fine.png"] = serve(PNG, "image/png")
            public.routes["/sneaky.png"] = lambda h: reply(h, 302, headers={"Location": server.url("/secret.png")})
            assert proxy(public.url("/fine.png")).status_code == 200
            assert_envelope(proxy(public.url("/sneaky.png")), 400, "VALIDATION_ERROR")
            assert public.hits == ["/fine.png", "/sneaky.png"]
        assert server.hits == []


@pytest.mark.usefixtures("private_allowed")
class TestRateLimit:
    @override_settings(RATE_LIMIT_IMAGE_PROXY=2)
    def test_limited_per_client_ip(self, server):
        server.routes["/x.png"] = serve(PNG, "image/png")
        for _ in range(2):
            assert proxy(server.url("/x.png")).status_code == 200
        response = proxy(server.url("/x.png"))
        body = assert_envelope(response, 429, "RATE_LIMIT")
        assert body["details"]["retry_after"] == int(response["Retry-After"])
        assert proxy(server.url("/x.png"), APIClient(REMOTE_ADDR="10.9.8.7")).status_code == 200

    @override_settings(RATE_LIMIT_PUBLIC_READ=1, RATE_LIMIT_IMAGE_PROXY=5)
    def test_own_limit_replaces_the_public_read_limit(self, server):
        server.routes["/x.png"] = serve(PNG, "image/png")
        for _ in range(5):
            assert proxy(server.url("/x.png")).status_code == 200
        assert_envelope(proxy(server.url("/x.png")), 429, "RATE_LIMIT")
