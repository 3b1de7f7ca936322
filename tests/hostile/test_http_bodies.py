"""Hostile request bodies over HTTP: malformed, oversized, deep, strange numbers, huge strings (CONTRACT §1).

Every answer is the error envelope with a 4xx, never a 500: the JSON write routes come from the URL
resolver, so a new endpoint is attacked without anyone listing it.
"""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from apikeys.services import key_create
from claraverse.parsers import MAX_JSON_DEPTH, JsonBodyParser
from integrations.services import model_create, provider_create
from tests.conftest import client_for
from tests.factories import UserFactory
from tests.hostile.routes import PUBLIC, api_routes
from tests.matrix import assert_envelope

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("unthrottled")]

# Routes that take no body: they ignore one, so a malformed body is not theirs to refuse. Several call
# out (a credential test, a provider's model list, a benchmark), which the sweep has no reason to set off.
BODYLESS = {
    ("api/agents/<str:agent_id>/workflow/restore/<int:version>", "POST"),
    ("api/executions/<str:execution_id>/cancel", "POST"),
    ("api/memories/<str:memory_id>/archive", "POST"),
    ("api/memories/<str:memory_id>/unarchive", "POST"),
    ("api/credentials/<str:credential_id>/test", "POST"),
    ("api/keys/<str:key_id>/revoke", "POST"),
    ("api/admin/providers/<str:provider_id>/toggle", "PUT"),
    ("api/admin/providers/<str:provider_id>/models/import", "POST"),
    ("api/admin/models/<path:model_id>/test/connection", "POST"),
    ("api/admin/models/<path:model_id>/benchmark", "POST"),
}
WRITE_METHODS = {"POST", "PUT", "PATCH"}


def json_write_routes():
    """Every POST/PUT/PATCH route whose body is JSON."""
    return [
        route
        for route in api_routes()
        if route.method in WRITE_METHODS
        and any(issubclass(parser, JsonBodyParser) for parser in route.view.parser_classes)
    ]


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


MALFORMED = {
    "truncated": b'{"name": "x"',
    "not json": b"name=x",
    "trailing garbage": b'{"name": "x"} {}',
    "single quotes": b"{'name': 'x'}",
    "10,000 nested arrays": deep(10_000).encode(),
    "nested past the depth limit": f'{{"name": "x", "input": {deep(MAX_JSON_DEPTH + 5)}}}'.encode(),
    "NaN": b'{"name": "x", "input": {"n": NaN}}',
    "Infinity": b'{"name": "x", "input": {"n": Infinity}}',
    "-Infinity": b'{"name": "x", "input": {"n": -Infinity}}',
    "1e999": b'{"name": "x", "input": {"n": 1e999}}',
    "an integer of 5000 digits": b'{"name": "x", "input": {"n": 1' + b"0" * 5000 + b"}}",
    "duplicate keys": b'{"name": "x", "name": "y"}',
    "invalid UTF-8": b'{"name": "\xff\xfe"}',
    "a lone surrogate": b'{"name": "\\ud800"}',
    "a NUL": b'{"name": "a\\u0000b"}',
    "a raw control character": b'{"name": "a\x01b"}',
    "nested 900 levels deep": f'{{"name": "x", "input": {deep(900)}}}'.encode(),
    "a top-level array": b'[{"name": "x"}]',
    "a top-level string": b'"name"',
    "a top-level number": b"42",
    "a top-level null": b"null",
    "a top-level true": b"true",
}
WRONG_CONTENT_TYPES = {
    "text/plain": b'{"name": "x"}',
    "application/x-www-form-urlencoded": b"name=x",
    "application/xml": b"<name>x</name>",
    "multipart/form-data; boundary=xyz": b'--xyz\r\nContent-Disposition: form-data; name="name"\r\n\r\nx\r\n'
    b"--xyz--\r\n",
    "application/octet-stream": b'{"name": "x"}',
}


@pytest.fixture
def callers(owned, user):
    """The path parameters of every route, and a client allowed through each route's authentication."""
    admin = UserFactory(role="admin")
    provider = provider_create(name="sweep", type="openai_compatible", base_url="http://127.0.0.1:9/v1")
    model = model_create(provider=provider, fields={"id": "sweep/model:latest"})
    _key, raw_key, _secret = key_create(user=user, name="sweep", scopes=["trigger", "upload"], agent_ids=[])
    values = {**owned, "user_id": user.pk, "provider_id": provider.pk, "model_id": model.pk}
    key_client = APIClient()
    key_client.credentials(HTTP_X_API_KEY=raw_key)
    return values, {"admin": client_for(admin), "key": key_client, "user": client_for(user)}


def _send_raw(callers, route, body: bytes, content_type: str):
    values, clients = callers
    client = clients["admin" if route.is_admin else "key" if route.takes_api_key else "user"]
    return getattr(client, route.method.lower())(route.path(values), data=body, content_type=content_type)


def test_the_sweep_finds_the_json_routes():
    keys = {route.key for route in json_write_routes()}
    assert keys >= BODYLESS, sorted(BODYLESS - keys)  # no stale exception
    assert {("api/agents", "POST"), ("api/chats/sync", "POST"), ("api/trigger/<str:agent_id>", "POST")} <= keys


@pytest.mark.parametrize("kind", MALFORMED)
def test_malformed_json_is_a_400_on_every_json_route(callers, kind):
    for route in json_write_routes():
        if route.key in BODYLESS:
            continue
        response = _send_raw(callers, route, MALFORMED[kind], "application/json")
        assert response.status_code == 400, (str(route), kind, response.status_code, response.content[:300])
        body = assert_envelope(response, 400, "VALIDATION_ERROR")
        assert "Traceback" not in response.content.decode(errors="replace")
        assert body["details"], (str(route), kind)


@pytest.mark.parametrize("content_type", WRONG_CONTENT_TYPES)
def test_a_body_that_is_not_json_is_a_415_on_every_json_route(callers, content_type):
    for route in json_write_routes():
        if route.key in BODYLESS:
            continue
        response = _send_raw(callers, route, WRONG_CONTENT_TYPES[content_type], content_type)
        assert response.status_code == 415, (str(route), content_type, response.status_code, response.content[:300])
        assert_envelope(response, 415, "UNSUPPORTED_MEDIA_TYPE")


def test_a_body_over_the_limit_is_a_413_on_every_json_route(callers, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 4096
    body = json.dumps({"name": "x", "pad": "y" * 5000}).encode()
    for route in json_write_routes():
        if route.key in BODYLESS:
            continue
        response = _send_raw(callers, route, body, "application/json")
        assert response.status_code == 413, (str(route), response.status_code, response.content[:300])
        assert assert_envelope(response, 413, "PAYLOAD_TOO_LARGE")["details"] == {"max_bytes": 4096}


def test_a_body_over_the_default_limit_is_a_413(auth_client, settings):
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = b'{"name": "' + b"x" * limit + b'"}'
    response = auth_client.post("/api/agents", data=body, content_type="application/json")
    assert assert_envelope(response, 413, "PAYLOAD_TOO_LARGE")["details"] == {"max_bytes": limit}


def test_json_within_every_limit_still_works(auth_client):
    # The strict reading refuses only what it must: escapes, valid surrogate pairs, deep-but-allowed nesting.
    body = {
        "cron": "0 9 * * *",
        "input": {"emoji": "\U0001f600", "rtl": "\u202e", "big": 10**30, "small": -1.5e-300, "deep": []},
    }
    nested: list = body["input"]["deep"]
    for _ in range(MAX_JSON_DEPTH - 4):
        nested.append([])
        nested = nested[0]
    agent = auth_client.post("/api/agents", {"name": "a"}, format="json").json()
    raw = json.dumps(body)  # ensure_ascii: the emoji travels as the surrogate pair \ud83d\ude00
    assert "\\ud83d\\ude00" in raw
    response = auth_client.post(f"/api/agents/{agent['id']}/schedule", data=raw, content_type="application/json")
    assert response.status_code == 201, response.content[:500]
    assert response.json()["input"] == body["input"]


# Huge and out-of-range numbers where an integer or a number is expected.
HUGE_NUMBERS = [
    ("post", "/api/agents", {"name": "x", "temperature": 10**400}, "temperature"),
    ("post", "/api/agents", {"name": "x", "temperature": -(10**400)}, "temperature"),
    ("post", "/api/agents", {"name": "x", "temperature": 1e308}, "temperature"),
    ("post", "/api/tools/recommend", {"task": "x", "limit": 10**400}, "limit"),
    ("post", "/api/chats", {"id": "c1", "version": 10**400}, "version"),
    ("post", "/api/chats", {"id": "c1", "version": 2**63}, "version"),
    ("post", "/api/chats", {"id": "c1", "version": -1}, "version"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), HUGE_NUMBERS)
def test_huge_numbers_are_400_naming_the_field(auth_client, method, path, body, field):
    response = getattr(auth_client, method)(path, body, format="json")
    assert field in assert_envelope(response, 400, "VALIDATION_ERROR")["details"]


@pytest.mark.parametrize(
    "body",
    [{"messages_per_day": 10**400}, {"executions_per_day": 2**63}, {"storage_mb": -(10**400)}],
)
def test_huge_quota_overrides_are_400(user, body):
    admin = client_for(UserFactory(role="admin"))
    response = admin.post(f"/api/admin/users/{user.pk}/overrides", body, format="json")
    assert set(assert_envelope(response, 400, "VALIDATION_ERROR")["details"]) == set(body)


def test_huge_model_context_length_is_400():
    admin = client_for(UserFactory(role="admin"))
    provider = provider_create(name="p", type="openai_compatible", base_url="http://127.0.0.1:9/v1")
    body = {"id": "m", "provider_id": provider.pk, "context_length": 10**400}
    response = admin.post("/api/admin/models", body, format="json")
    assert "context_length" in assert_envelope(response, 400, "VALIDATION_ERROR")["details"]


HOSTILE_PAGES = [f"limit={10**400}", f"offset={10**400}", "limit=1e999", "offset=1e999", "limit=NaN", "offset=-1"]
HOSTILE_PAGES += ["limit=0x10", "limit=%00", "offset=%ff%fe", "limit=" + "9" * 5000, "limit=1&limit=500"]


def test_hostile_page_parameters_are_400_on_every_list(owned, auth_client):
    lists = []
    for route in api_routes():
        if route.method != "GET" or route.is_admin or route.takes_api_key or route.key in PUBLIC:
            continue
        plain = auth_client.get(route.path(owned))
        if plain.status_code == 200 and "json" in plain.get("Content-Type", "") and "limit" in plain.json():
            lists.append(route)
    assert len(lists) >= 8  # agents, executions (2), memories, credentials, keys, versions, chats sync
    for route in lists:
        for query in HOSTILE_PAGES:
            response = auth_client.get(f"{route.path(owned)}?{query}")
            details = assert_envelope(response, 400, "VALIDATION_ERROR")["details"]
            assert set(details) & {"limit", "offset"}, (str(route), query, details)


QUERY_PARAMETERS = ["sort", "status", "trigger", "agent_id", "since", "q", "category", "archived", "integration_id"]
QUERY_PARAMETERS += ["search", "tier", "url"]
HOSTILE_QUERY_VALUES = ["%00", "%ff%fe", "x" * 5000, "1e999", "9" * 5000, "[]", "{}", "NaN", "-1", "..%2F..%2Fetc"]


def test_hostile_query_strings_are_refused_or_ignored_never_500(owned, user):
    admin = client_for(UserFactory(role="admin"))
    for route in api_routes():
        if route.method != "GET" or route.takes_api_key or route.key in PUBLIC:
            continue
        client = admin if route.is_admin else client_for(user)
        for value in HOSTILE_QUERY_VALUES:
            query = "&".join(f"{name}={value}" for name in QUERY_PARAMETERS)
            response = client.get(f"{route.path({**owned, 'user_id': user.pk})}?{query}")
            assert response.status_code < 500, (str(route), value[:20], response.status_code, response.content[:300])
            if response.status_code >= 400:
                assert_envelope(response, response.status_code, "VALIDATION_ERROR")


@pytest.mark.parametrize("version", ["9" * 30, "9" * 400])
def test_a_huge_version_in_the_path_is_404(owned, auth_client, version):
    agent = f"/api/agents/{owned['agent_id']}"
    assert_envelope(auth_client.get(f"{agent}/workflow/versions/{version}"), 404, "NOT_FOUND")
    assert_envelope(auth_client.post(f"{agent}/workflow/restore/{version}"), 404, "NOT_FOUND")


# A very long string in each string field of the create endpoints: a 400 naming that field.
LONG = "x" * 300_000
LONG_FIELDS = [
    ("/api/agents", {"name": "n"}, ["name", "description", "model", "system_prompt"]),
    ("/api/agents", {"name": "n", "tools": [LONG]}, ["tools"]),
    ("/api/memories", {"content": "c"}, ["content", "category", "importance"]),
    (
        "/api/credentials",
        {"integration_id": "slack", "name": "n", "credentials": {"webhook_url": "https://hooks.slack.com/x"}},
        ["integration_id", "name"],
    ),
    ("/api/keys", {"name": "n", "scopes": ["trigger"]}, ["name", "expires_at"]),
    ("/api/keys", {"name": "n", "scopes": [LONG]}, ["scopes"]),
    ("/api/keys", {"name": "n", "scopes": ["trigger"], "agent_ids": [LONG]}, ["agent_ids"]),
    ("/api/chats", {"id": "c1"}, ["id", "title", "model"]),
    ("/api/tools/recommend", {"task": "t"}, ["task"]),
    ("/api/auth/register", {"email": "new@example.com", "password": "correct-horse-battery-staple-9"}, ["email"]),
    ("/api/auth/register", {"email": "new@example.com", "password": "correct-horse-battery-staple-9"}, ["password"]),
    ("/api/auth/register", {"email": "new@example.com", "password": "correct-horse-battery-staple-9"}, ["name"]),
    ("/api/auth/login", {"email": "new@example.com", "password": "p"}, ["email", "password"]),
    ("/api/auth/refresh", {"refresh_token": "t"}, ["refresh_token"]),
]


@pytest.mark.parametrize(("path", "valid", "fields"), LONG_FIELDS)
def test_a_very_long_string_is_400_naming_the_field(auth_client, path, valid, fields):
    for field in fields:
        body = {**valid, field: LONG} if field not in ("tools", "scopes", "agent_ids") else valid
        response = auth_client.post(path, body, format="json")
        details = assert_envelope(response, 400, "VALIDATION_ERROR")["details"]
        assert field in details, (path, field, details)


def test_a_very_long_credential_value_is_400_naming_the_field(auth_client):
    body = {"integration_id": "slack", "name": "n", "credentials": {"webhook_url": "https://x.example/" + LONG}}
    response = auth_client.post("/api/credentials", body, format="json")
    assert "credentials.webhook_url" in assert_envelope(response, 400, "VALIDATION_ERROR")["details"]


def test_very_long_strings_in_a_schedule_are_400_naming_the_field(owned, auth_client):
    path = f"/api/agents/{owned['agent_id']}/schedule"
    auth_client.delete(path)
    for field in ("cron", "timezone"):
        body = {"cron": "0 9 * * *", field: LONG}
        response = auth_client.post(path, body, format="json")
        assert field in assert_envelope(response, 400, "VALIDATION_ERROR")["details"], field
        response = auth_client.put(path, {field: LONG}, format="json")
        assert response.status_code == 404  # no schedule was made by the refused create


def test_very_long_strings_in_a_chat_sync_fail_that_chat_only(auth_client, settings):
    settings.CHAT_SYNC_MAX_MESSAGES_BYTES = 100_000
    chats = [
        {"id": "ok"},
        {"id": LONG},
        {"id": "t", "title": LONG},
        {"id": "m", "model": LONG},
        {"id": "x", "messages": [{"role": "user", "content": "y" * 150_000}]},
    ]
    response = auth_client.post("/api/chats/sync", {"chats": chats}, format="json")
    assert response.status_code == 200, response.content[:300]
    results = response.json()["results"]
    assert [result["status"] for result in results] == ["synced", "failed", "failed", "failed", "failed"]
    for result, field in zip(results[1:], ("id", "title", "model", "messages"), strict=True):
        assert field in result["error"], result
        assert len(result["error"]) <= 500
    assert auth_client.get("/api/chats/sync").json()["total"] == 1


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/agents", {"name": "a\u0000b"}),
        ("/api/memories", {"content": "nul \u0000 here"}),
        ("/api/chats", {"id": "c", "messages": [{"role": "user", "content": "\u0000"}]}),
        ("/api/auth/me", {"preferences": {"theme": "dark\u0000"}}),
        ("/api/auth/me", {"preferences": {"\u0000": "dark"}}),
    ],
)
def test_nul_is_refused_anywhere_in_a_body(auth_client, path, body):
    # PostgreSQL stores NUL neither in text nor in jsonb: let through, it would be a 500 there.
    method = auth_client.put if path == "/api/auth/me" else auth_client.post
    details = assert_envelope(method(path, body, format="json"), 400, "VALIDATION_ERROR")["details"]
    assert "NUL" in json.dumps(details)


def test_a_nul_in_an_id_of_the_path_is_404(owned, auth_client):
    for route in api_routes():
        if "<" not in route.pattern or route.is_admin or route.takes_api_key:
            continue
        values = {name: "%00" if name != "version" else owned[name] for name in owned}
        response = auth_client.generic(route.method, route.path(values))
        assert response.status_code == 404, (str(route), response.status_code, response.content[:300])
        assert_envelope(response, 404, "NOT_FOUND")
    response = APIClient().post("/api/trigger/agent_%00x", {}, format="json", HTTP_X_API_KEY=owned["raw_key"])
    assert_envelope(response, 404, "NOT_FOUND")


def test_an_idempotency_key_with_control_characters_is_400(owned):
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=owned["raw_key"])
    for header in ["a\u0000b", "line\nbreak", "\x7f"]:
        response = client.post(f"/api/trigger/{owned['agent_id']}", {}, format="json", HTTP_IDEMPOTENCY_KEY=header)
        assert "Idempotency-Key" in assert_envelope(response, 400, "VALIDATION_ERROR")["details"], header
    response = client.post(f"/api/trigger/{owned['agent_id']}", {}, format="json", HTTP_IDEMPOTENCY_KEY="clé-1")
    assert response.status_code == 202, response.content


def test_unicode_is_kept(auth_client):
    name = "\u202eevil \U0001f600 \u200b\ufeff名前"
    response = auth_client.post("/api/agents", {"name": name}, format="json")
    assert response.status_code == 201 and response.json()["name"] == name.strip()


def test_stray_bodies_on_reads_are_ignored_not_500(owned, auth_client):
    for route in api_routes():
        if route.method not in ("GET", "DELETE") or route.is_admin or route.takes_api_key or route.key in PUBLIC:
            continue
        response = auth_client.generic(route.method, route.path(owned), deep(10_000), "application/json")
        assert response.status_code < 500, (str(route), response.status_code, response.content[:300])


def test_no_error_answer_carries_a_stack_trace(auth_client):
    for body in MALFORMED.values():
        response = auth_client.post("/api/memories", data=body, content_type="application/json")
        text = response.content.decode(errors="replace")
        assert "Traceback" not in text and 'File "' not in text
    response = APIClient().post("/api/auth/login", data=b"\xff", content_type="application/json; charset=bogus")
    assert_envelope(response, 400, "VALIDATION_ERROR")


MULTIPART = "multipart/form-data; boundary=xyz"


def _file_part(filename: bytes, content: bytes = b"hello") -> bytes:
    head = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n\r\n'
    return head + content + b"\r\n--xyz--\r\n"


BROKEN_UPLOADS = {
    "JSON": (b'{"file": "x"}', "application/json"),
    "deep JSON": (deep(10_000).encode(), "application/json"),
    "no boundary": (b"--xyz\r\n", "multipart/form-data"),
    "no closing boundary": (_file_part(b"a.txt")[:-9], MULTIPART),
    "empty": (b"", MULTIPART),
    "garbage": (b"\xff" * 1000, MULTIPART),
    "a huge boundary": (b"--" + b"x" * 100 + b"\r\n", "multipart/form-data; boundary=" + "x" * 100),
    "a huge file name": (_file_part(b"a" * 5000 + b".txt"), MULTIPART),
    "a file name of invalid UTF-8": (_file_part(b"\xff\xfe.txt"), MULTIPART),
    "text/plain": (b"hello", "text/plain"),
}


@pytest.mark.parametrize("kind", BROKEN_UPLOADS)
def test_broken_uploads_are_4xx_with_the_envelope(owned, auth_client, kind):
    body, content_type = BROKEN_UPLOADS[kind]
    key_client = APIClient()
    key_client.credentials(HTTP_X_API_KEY=owned["raw_key"])
    for path, client in [("/api/upload", auth_client), ("/api/external/upload", key_client)]:
        response = client.post(path, data=body, content_type=content_type)
        assert 400 <= response.status_code < 500, (path, kind, response.status_code, response.content[:300])
        assert_envelope(response, response.status_code, response.json()["code"])


def test_hostile_upload_file_names_are_cleaned(upload_root, auth_client):
    for filename in [b"a\x00b.txt", b"../../etc/passwd.txt", b"..\\..\\boot.ini.txt", b"\xe2\x80\xaetxt.exe.txt"]:
        response = auth_client.post("/api/upload", data=_file_part(filename), content_type=MULTIPART)
        assert response.status_code == 201, response.content[:300]
        shown = response.json()["filename"]
        assert not set(shown) & {"/", "\\", "\x00", "\u202e"} and ".." not in shown, (filename, shown)
