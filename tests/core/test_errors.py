"""Every error path answers the CONTRACT §1 envelope."""

import logging

import pytest
from django.test import override_settings

from tests.matrix import assert_envelope

pytestmark = pytest.mark.django_db


def test_unknown_api_route(api_client):
    assert_envelope(api_client.get("/api/definitely/not/here"), 404, "NOT_FOUND")
    assert_envelope(api_client.post("/api/nope", {}, format="json"), 404, "NOT_FOUND")


def test_unknown_route_outside_api(api_client):
    assert_envelope(api_client.get("/not-here"), 404, "NOT_FOUND")


def test_method_not_allowed_on_drf_view(api_client):
    body = assert_envelope(api_client.delete("/api/auth/login"), 405, "METHOD_NOT_ALLOWED")
    assert "DELETE" in body["error"]


def test_method_not_allowed_on_plain_view(api_client):
    with override_settings(ROOT_URLCONF="tests.support.urls"):
        response = api_client.post("/api/test/get-only")
    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert response["Allow"] == "GET"


@pytest.mark.parametrize(
    "raw", [b"{bad json", b"[1, 2", b'{"email": "a@b.c", }', b"\xff\xfe not utf-8", b""], ids=lambda raw: repr(raw)[:20]
)
def test_malformed_json(api_client, raw):
    response = api_client.generic("POST", "/api/auth/login", raw, content_type="application/json")
    body = assert_envelope(response, 400, "VALIDATION_ERROR")
    # An empty body parses as no fields, so the missing fields are named instead.
    assert body["details"]["email" if raw == b"" else "body"]


def test_deeply_nested_json_is_a_400(api_client):
    raw = b"[" * 100_000 + b"]" * 100_000
    with override_settings(ROOT_URLCONF="tests.support.urls"):
        response = api_client.generic("POST", "/api/test/echo", raw, content_type="application/json")
    assert_envelope(response, 400, "VALIDATION_ERROR")


def test_json_body_must_be_an_object_for_serializers(api_client):
    response = api_client.generic("POST", "/api/auth/login", b"[1,2,3]", content_type="application/json")
    assert_envelope(response, 400, "VALIDATION_ERROR")


def test_unsupported_content_type(api_client):
    response = api_client.generic(
        "POST", "/api/auth/login", b"email=a", content_type="application/x-www-form-urlencoded"
    )
    assert_envelope(response, 415, "UNSUPPORTED_MEDIA_TYPE")


def test_oversized_body(api_client):
    with override_settings(ROOT_URLCONF="tests.support.urls", DATA_UPLOAD_MAX_MEMORY_SIZE=1000):
        response = api_client.generic(
            "POST", "/api/test/echo", b'{"a": "' + b"x" * 2000 + b'"}', content_type="application/json"
        )
    body = assert_envelope(response, 413, "PAYLOAD_TOO_LARGE")
    assert body["details"] == {"max_bytes": 1000}


@pytest.mark.parametrize("path", ["/api/test/explode", "/api/test/explode-plain"])
def test_uncaught_exception_is_a_500_with_request_id_and_no_trace(api_client, path, caplog):
    with override_settings(ROOT_URLCONF="tests.support.urls"), caplog.at_level(logging.ERROR):
        response = api_client.get(path, HTTP_X_REQUEST_ID="req-test-12345")
    body = assert_envelope(response, 500, "INTERNAL_ERROR")
    assert body["details"] == {"request_id": "req-test-12345"}
    assert response["X-Request-ID"] == "req-test-12345"
    assert b"secret internal detail" not in response.content and b"Traceback" not in response.content
    assert any("secret internal detail" in str(record.exc_info) for record in caplog.records if record.exc_info)


def test_uncaught_exception_in_debug_still_has_no_trace(api_client):
    with override_settings(ROOT_URLCONF="tests.support.urls", DEBUG=True):
        response = api_client.get("/api/test/explode-plain")
    assert_envelope(response, 500, "INTERNAL_ERROR")
    assert b"secret internal detail" not in response.content


def test_request_id_is_generated_and_client_ids_are_sanitised(api_client):
    first = api_client.get("/health")
    assert len(first["X-Request-ID"]) == 16
    hostile = api_client.get("/health", HTTP_X_REQUEST_ID="bad id\nwith newline")
    assert hostile["X-Request-ID"] != "bad id\nwith newline" and len(hostile["X-Request-ID"]) == 16


def test_request_id_reaches_log_lines(caplog):
    from claraverse.logging import RequestIdFilter, current_request_id

    token = current_request_id.set("abc123abc123")
    try:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
        RequestIdFilter().filter(record)
    finally:
        current_request_id.reset(token)
    assert record.request_id == "abc123abc123"


def test_database_down_is_a_503(api_client, user, monkeypatch):
    from django.db import OperationalError
    from django.db.backends.base.base import BaseDatabaseWrapper

    from tests.conftest import client_for

    client = client_for(user)

    def refuse(self):
        raise OperationalError("connection refused")

    monkeypatch.setattr(BaseDatabaseWrapper, "ensure_connection", refuse)
    body = assert_envelope(client.get("/api/auth/me"), 503, "SERVICE_UNAVAILABLE")
    assert "request_id" in body["details"]


def test_cors_allows_configured_origins_only(api_client):
    with override_settings(CORS_ALLOWED_ORIGINS=["https://app.example.com"]):
        allowed = api_client.options(
            "/api/auth/login", HTTP_ORIGIN="https://app.example.com", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
        )
        refused = api_client.options(
            "/api/auth/login", HTTP_ORIGIN="https://evil.example.com", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
        )
    assert allowed["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Access-Control-Allow-Origin" not in refused
