"""User B tries every route with user A's ids: 404 (never 403 or 200), nothing of A's leaks, and A's objects
are unchanged afterwards (CONTRACT §1 Ownership).

Every route that needs a user must have an entry in `attempts()`; a new endpoint fails
`test_every_route_has_an_ownership_attempt` until someone decides what B may see there.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from apikeys.services import key_create
from tests.hostile.resources import A_CHAT_ID, FLOW, SECRETS
from tests.hostile.routes import PUBLIC, api_routes
from tests.matrix import assert_envelope

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("unthrottled", "upload_root")]


@dataclass
class Attempt:
    """What B sends to one route with A's ids, and what must come back."""

    status: int = 404
    body: Any = field(default_factory=dict)
    query: str = ""
    multipart: bool = False
    api_key: bool = False  # sent with B's X-API-Key instead of B's bearer token
    check: Callable[[Any], None] | None = None


def attempts(owned: dict[str, str]) -> dict[tuple[str, str], Attempt]:
    """B's attempt at each route that needs a user, keyed like `Route.key`."""

    def no_a_ids(response) -> None:
        text = response.content.decode()
        for name in ("agent_id", "execution_id", "memory_id", "credential_id", "key_id", "file_id"):
            assert owned[name] not in text, (name, text[:500])

    def b_chat_is_new(response) -> None:
        # The id is the client's; B gets a chat of their own under it, A's stays A's.
        assert response.json()["version"] == 1

    def b_synced_a_new_chat(response) -> None:
        assert response.json()["results"][0] == {"id": A_CHAT_ID, "status": "synced", "version": 1, "error": None}

    def no_slack_tool(response) -> None:
        # A's Slack credential unlocks send_slack for A only.
        assert "send_slack" not in {tool["name"] for tool in response.json()["tools"]}

    agent = "api/agents/<str:agent_id>"
    not_found = Attempt()
    listed = Attempt(status=200, check=no_a_ids)
    return {
        ("api/auth/logout", "POST"): Attempt(status=401, body={"refresh_token": owned["refresh_token"]}),
        ("api/auth/me", "GET"): listed,
        ("api/auth/me", "PUT"): Attempt(status=200, body={"name": "B"}, check=no_a_ids),
        ("api/agents", "GET"): listed,
        ("api/agents", "POST"): Attempt(status=201, body={"name": "B's agent"}, check=no_a_ids),
        (agent, "GET"): not_found,
        (agent, "PUT"): Attempt(body={"name": "hijacked"}),
        (agent, "DELETE"): not_found,
        (f"{agent}/sync", "POST"): Attempt(body={"agent": {"name": "hijacked"}}),
        (f"{agent}/workflow", "GET"): not_found,
        (f"{agent}/workflow", "PUT"): Attempt(body=FLOW),
        (f"{agent}/generate-workflow", "POST"): Attempt(body={"description": "summarise the news"}),
        (f"{agent}/workflow/versions", "GET"): not_found,
        (f"{agent}/workflow/versions/<int:version>", "GET"): not_found,
        (f"{agent}/workflow/restore/<int:version>", "POST"): not_found,
        (f"{agent}/executions", "GET"): not_found,
        (f"{agent}/executions/stats", "GET"): not_found,
        (f"{agent}/schedule", "GET"): not_found,
        (f"{agent}/schedule", "POST"): Attempt(body={"cron": "0 10 * * *"}),
        (f"{agent}/schedule", "PUT"): Attempt(body={"enabled": False}),
        (f"{agent}/schedule", "DELETE"): not_found,
        (f"{agent}/schedule/run", "POST"): Attempt(body={"input": {}}),
        ("api/executions", "GET"): Attempt(status=200, query=f"?agent_id={owned['agent_id']}", check=no_a_ids),
        ("api/executions/<str:execution_id>", "GET"): not_found,
        ("api/executions/<str:execution_id>/cancel", "POST"): not_found,
        ("api/chats", "POST"): Attempt(status=201, body={"id": A_CHAT_ID, "title": "B's"}, check=b_chat_is_new),
        ("api/chats", "DELETE"): Attempt(status=200),
        ("api/chats/sync", "GET"): listed,
        ("api/chats/sync", "POST"): Attempt(status=200, body={"chats": [{"id": A_CHAT_ID}]}, check=b_synced_a_new_chat),
        ("api/chats/<str:chat_id>", "GET"): not_found,
        ("api/chats/<str:chat_id>", "DELETE"): not_found,
        ("api/memories", "GET"): Attempt(status=200, query="?archived=true", check=no_a_ids),
        ("api/memories", "POST"): Attempt(status=201, body={"content": "B's memory"}, check=no_a_ids),
        ("api/memories/stats", "GET"): Attempt(status=200, check=lambda response: response.json()["total"] == 0),
        ("api/memories/<str:memory_id>", "GET"): not_found,
        ("api/memories/<str:memory_id>", "PUT"): Attempt(body={"content": "hijacked"}),
        ("api/memories/<str:memory_id>", "DELETE"): not_found,
        ("api/memories/<str:memory_id>/archive", "POST"): not_found,
        ("api/memories/<str:memory_id>/unarchive", "POST"): not_found,
        ("api/tools", "GET"): listed,
        ("api/tools/available", "GET"): Attempt(status=200, check=no_slack_tool),
        ("api/tools/recommend", "POST"): Attempt(status=200, body={"task": "post to slack"}, check=no_a_ids),
        ("api/tools/registry", "GET"): listed,
        ("api/credentials", "GET"): Attempt(status=200, query="?integration_id=slack", check=no_a_ids),
        ("api/credentials", "POST"): Attempt(
            status=201,
            body={"integration_id": "discord", "name": "B's", "credentials": {"webhook_url": "https://x.example/h"}},
            check=no_a_ids,
        ),
        ("api/credentials/<str:credential_id>", "GET"): not_found,
        ("api/credentials/<str:credential_id>", "PUT"): Attempt(body={"name": "hijacked"}),
        ("api/credentials/<str:credential_id>", "DELETE"): not_found,
        ("api/credentials/<str:credential_id>/test", "POST"): not_found,
        ("api/keys", "GET"): listed,
        ("api/keys", "POST"): Attempt(status=201, body={"name": "B's key", "scopes": ["trigger"]}, check=no_a_ids),
        ("api/keys/<str:key_id>", "DELETE"): not_found,
        ("api/keys/<str:key_id>/revoke", "POST"): not_found,
        ("api/upload", "POST"): Attempt(status=201, body={"file": b"B's notes\n"}, multipart=True, check=no_a_ids),
        ("api/upload/<str:file_id>/status", "GET"): not_found,
        ("api/upload/<str:file_id>", "DELETE"): not_found,
        ("uploads/<str:name>", "GET"): not_found,
        ("api/trigger/<str:agent_id>", "POST"): Attempt(body={"input": {}}, api_key=True),
        ("api/trigger/status/<str:execution_id>", "GET"): Attempt(api_key=True),
        ("api/external/upload", "POST"): Attempt(
            status=201, body={"file": b"B's notes\n"}, multipart=True, api_key=True, check=no_a_ids
        ),
    }


def routes_owned_by_users():
    routes = [route for route in api_routes() if route.key not in PUBLIC and not route.is_admin]
    # Routes naming an object first: chat ids are the client's, so once B has made a chat of their own
    # under A's chat id (a collection route), reading that id is B's own chat, not A's.
    return sorted(routes, key=lambda route: "<" not in route.pattern)


def test_every_route_has_an_ownership_attempt():
    listed = set(attempts(defaultdict(str)))
    routes = {route.key for route in routes_owned_by_users()}
    assert routes - listed == set(), "routes without an ownership attempt"
    assert listed - routes == set(), "attempts for routes that no longer exist"


def snapshot(client: APIClient, owned: dict[str, str]) -> dict[str, Any]:
    """Everything A can read about their resources."""
    agent = f"/api/agents/{owned['agent_id']}"
    paths = [
        agent,
        f"{agent}/workflow",
        f"{agent}/workflow/versions",
        f"{agent}/workflow/versions/1",
        f"{agent}/schedule",
        f"{agent}/executions",
        f"/api/executions/{owned['execution_id']}",
        f"/api/memories/{owned['memory_id']}",
        f"/api/credentials/{owned['credential_id']}",
        "/api/keys",
        f"/api/upload/{owned['file_id']}/status",
        f"/api/chats/{owned['chat_id']}",
    ]
    state: dict[str, Any] = {}
    for path in paths:
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code, response.content[:300])
        state[path] = response.json()
    file = client.get(f"/uploads/{owned['name']}")
    state["file"] = b"".join(file.streaming_content)
    return state


def _send(client: APIClient, method: str, path: str, attempt: Attempt, **headers):
    if attempt.multipart:
        files = {name: SimpleUploadedFile("b.txt", content) for name, content in attempt.body.items()}
        return client.post(path, files, format="multipart", **headers)
    return getattr(client, method.lower())(path + attempt.query, attempt.body, format="json", **headers)


def test_another_users_ids_are_404_and_nothing_leaks_or_changes(auth_client, other_client, other_user, owned):
    before = snapshot(auth_client, owned)
    assert before["file"] == SECRETS["file"]
    _key, b_raw_key, _secret = key_create(user=other_user, name="B", scopes=["trigger", "upload"], agent_ids=[])
    table = attempts(owned)
    for route in routes_owned_by_users():
        attempt = table[route.key]
        if attempt.api_key:
            response = _send(APIClient(), route.method, route.path(owned), attempt, HTTP_X_API_KEY=b_raw_key)
        else:
            response = _send(other_client, route.method, route.path(owned), attempt)
        assert response.status_code == attempt.status, (str(route), response.status_code, response.content[:300])
        if attempt.status >= 400:
            code = {401: "UNAUTHORIZED", 404: "NOT_FOUND"}[attempt.status]
            assert_envelope(response, attempt.status, code)
        if attempt.check is not None:
            attempt.check(response)
        if not getattr(response, "streaming", False):
            text = response.content.decode()
            leaked = [name for name, secret in SECRETS.items() if isinstance(secret, str) and secret in text]
            assert not leaked, (str(route), leaked)

    assert snapshot(auth_client, owned) == before
    # B's logout attempt with A's refresh token did not end A's session.
    response = APIClient().post("/api/auth/refresh", {"refresh_token": owned["refresh_token"]}, format="json")
    assert response.status_code == 200, response.content
    # A's key still triggers A's agent.
    response = APIClient().post(
        f"/api/trigger/{owned['agent_id']}", {"input": {}}, format="json", HTTP_X_API_KEY=owned["raw_key"]
    )
    assert response.status_code == 202, response.content
    assert json.loads(response.content)["status"] == "pending"
