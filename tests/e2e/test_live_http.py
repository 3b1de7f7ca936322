"""HTTP details that only a real daphne server shows: bodies Twisted itself used to parse and refuse."""

import json
import urllib.error
import urllib.request

import pytest

from tests.support.live_server import start_live_server, stop_live_server

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = start_live_server(tmp_path_factory.mktemp("live-http"))
    yield server
    stop_live_server(server)


def post_raw(live, path, body: bytes, content_type: str, token: str | None = None) -> tuple[int, str, bytes]:
    request = urllib.request.Request(live.http_url + path, data=body, method="POST")
    request.add_header("Content-Type", content_type)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def test_a_malformed_multipart_body_gets_the_error_envelope(live):
    status, registered = live.call(
        "POST", "/api/auth/register", {"email": "multipart@example.com", "password": "a long multipart passphrase"}
    )
    assert status == 201
    # No boundary: Twisted used to answer this itself with a bare 400 and a dropped connection.
    body = b'--xyz\r\nContent-Disposition: form-data; name="file"\r\n\r\ndata\r\n--xyz--\r\n'
    status, content_type, raw = post_raw(live, "/api/upload", body, "multipart/form-data", registered["access_token"])
    assert status == 400 and content_type.startswith("application/json")
    assert json.loads(raw)["code"] == "VALIDATION_ERROR"


def test_a_form_body_on_a_json_endpoint_is_refused_with_the_envelope(live):
    status, content_type, raw = post_raw(
        live, "/api/auth/login", b"email=a%40b.c&password=x", "application/x-www-form-urlencoded"
    )
    assert status == 415 and content_type.startswith("application/json")
    assert json.loads(raw)["code"] == "UNSUPPORTED_MEDIA_TYPE"
