"""Admin API: status, users, overrides, analytics; quotas enforced where executions and messages start."""

import threading

import pytest
from django.db import connection
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.models import DailyUsage
from accounts.quotas import quota_consume
from claraverse.errors import ApplicationError
from integrations.models import LLMUsage
from tests.conftest import client_for
from tests.executions.helpers import agent_with_workflow, edge, node
from tests.factories import UserFactory
from tests.matrix import assert_envelope

pytestmark = pytest.mark.django_db(transaction=True)

FLOW = ([node("start", "trigger", trigger_type="api"), node("out", "output", value="ok")], [edge("start", "out")])


@pytest.fixture
def admin():
    return UserFactory(role="admin", email="boss@example.com", name="Boss")


@pytest.fixture
def admin_client(admin):
    return client_for(admin)


def key_for(client, scopes=("trigger",)):
    body = client.post("/api/keys", {"name": "k", "scopes": list(scopes)}, format="json").json()
    api = APIClient()
    api.credentials(HTTP_X_API_KEY=body["key"])
    return api


@pytest.mark.parametrize(
    "method,path",
    [
        ("get", "/api/admin/me"),
        ("get", "/api/admin/users"),
        ("get", "/api/admin/users/user_x"),
        ("post", "/api/admin/users/user_x/overrides"),
        ("delete", "/api/admin/users/user_x/overrides"),
        ("get", "/api/admin/analytics/overview"),
        ("get", "/api/admin/analytics/providers"),
        ("get", "/api/admin/analytics/models"),
        ("get", "/api/admin/analytics/chats"),
        ("get", "/api/admin/analytics/agents"),
    ],
)
def test_admin_only(api_client, auth_client, method, path):
    assert_envelope(getattr(api_client, method)(path, {}, format="json"), 401, "UNAUTHORIZED")
    assert_envelope(getattr(auth_client, method)(path, {}, format="json"), 403, "FORBIDDEN")


def test_me(admin_client, user):
    assert admin_client.get("/api/admin/me").json()["is_admin"] is True
    with override_settings(SUPERADMIN_USER_IDS=[user.id]):
        body = client_for(user).get("/api/admin/me").json()
    assert body["superadmin"] is True and body["role"] == "admin"


def test_users_list_search_and_tier(admin_client, admin):
    UserFactory(email="alice@example.com", name="Alice", tier="pro")
    UserFactory(email="bob@example.com", name="Bob")
    body = admin_client.get("/api/admin/users?search=ALICE").json()
    assert [u["email"] for u in body["users"]] == ["alice@example.com"] and body["total"] == 1
    assert set(body["users"][0]) == {
        "id",
        "email",
        "name",
        "role",
        "tier",
        "created_at",
        "last_login_at",
        "has_overrides",
    }
    assert [u["email"] for u in admin_client.get("/api/admin/users?tier=pro").json()["users"]] == ["alice@example.com"]
    assert admin_client.get("/api/admin/users").json()["total"] == 3
    assert_envelope(admin_client.get("/api/admin/users?tier=platinum"), 400, "VALIDATION_ERROR")


def test_overrides_and_the_execution_quota(admin_client, user, auth_client):
    agent = agent_with_workflow(user, *FLOW)
    api = key_for(auth_client)
    response = admin_client.post(f"/api/admin/users/{user.id}/overrides", {"executions_per_day": 3}, format="json")
    assert response.status_code == 200
    detail = response.json()
    assert detail["overrides"] == {"executions_per_day": 3} and detail["limits"]["executions_per_day"] == 3
    assert detail["has_overrides"] is True
    for _ in range(3):
        assert api.post(f"/api/trigger/{agent.id}", {}, format="json").status_code == 202
    refused = assert_envelope(api.post(f"/api/trigger/{agent.id}", {}, format="json"), 429, "QUOTA_EXCEEDED")
    assert refused["details"]["limit"] == 3 and refused["details"]["used"] == 3
    assert refused["details"]["reset_at"].endswith("T00:00:00Z")
    detail = admin_client.get(f"/api/admin/users/{user.id}").json()
    assert detail["usage_today"]["executions"] == 3 and detail["counts"]["executions"] == 3
    assert detail["counts"]["agents"] == 1
    assert admin_client.delete(f"/api/admin/users/{user.id}/overrides").status_code == 204
    assert api.post(f"/api/trigger/{agent.id}", {}, format="json").status_code == 202
    assert admin_client.get(f"/api/admin/users/{user.id}").json()["has_overrides"] is False


@pytest.mark.parametrize("body", [{}, {"executions_per_day": -1}, {"bananas": 3}, {"storage_mb": "lots"}])
def test_override_validation(admin_client, user, body):
    assert_envelope(
        admin_client.post(f"/api/admin/users/{user.id}/overrides", body, format="json"), 400, "VALIDATION_ERROR"
    )


def test_unknown_user_is_404(admin_client):
    assert_envelope(admin_client.get("/api/admin/users/user_nobody"), 404, "NOT_FOUND")
    assert_envelope(
        admin_client.post("/api/admin/users/user_nobody/overrides", {"storage_mb": 1}, format="json"), 404, "NOT_FOUND"
    )


def test_quota_counting_never_overshoots_under_concurrency(user, settings):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers; the race needs a server database")
    settings.QUOTA_TIERS = {**settings.QUOTA_TIERS, "free": {**settings.QUOTA_TIERS["free"], "executions_per_day": 5}}
    outcomes = []

    def consume():
        try:
            quota_consume(user=user, limit_name="executions_per_day")
            outcomes.append("ok")
        except ApplicationError as exc:
            outcomes.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=consume) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("ok") == 5 and outcomes.count("QUOTA_EXCEEDED") == 15
    assert DailyUsage.objects.get(user=user).executions == 5


def test_analytics_match_recorded_usage(admin_client, user):
    agent = agent_with_workflow(user, *FLOW)
    api = key_for(client_for(user))
    for _ in range(2):
        api.post(f"/api/trigger/{agent.id}", {}, format="json")
    LLMUsage.objects.create(
        user=user,
        provider_name="p1",
        model_id="m1",
        source="chat",
        outcome="success",
        prompt_tokens=10,
        completion_tokens=5,
        latency_ms=100,
    )
    LLMUsage.objects.create(
        user=user, provider_name="p1", model_id="m2", source="workflow", outcome="error", latency_ms=300
    )
    overview = admin_client.get("/api/admin/analytics/overview").json()
    assert overview["users"] == 2 and overview["agents"] == 1 and overview["executions"] == 2
    assert overview["llm_requests"] == 2
    providers = admin_client.get("/api/admin/analytics/providers").json()["providers"]
    assert providers == [
        {
            "provider": "p1",
            "requests": 2,
            "tokens": 15,
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "errors": 1,
            "error_rate": 0.5,
            "avg_latency_ms": 200,
        }
    ]
    models = {m["model"]: m for m in admin_client.get("/api/admin/analytics/models").json()["models"]}
    assert models["m1"]["requests"] == 1 and models["m2"]["errors"] == 1
    agents = admin_client.get("/api/admin/analytics/agents").json()
    assert agents["total"] == 1 and agents["executions"] == 2
    assert len(agents["time_series"]) == 30 and agents["time_series"][-1]["count"] == 2
    chats = admin_client.get("/api/admin/analytics/chats").json()
    assert chats["messages"] == 1 and len(chats["time_series"]) == 30


def test_external_upload_needs_the_upload_scope(auth_client, user):
    png = (
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
        b"\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82"
    )
    from django.core.files.uploadedfile import SimpleUploadedFile

    uploader = key_for(auth_client, scopes=("upload",))
    response = uploader.post("/api/external/upload", {"file": SimpleUploadedFile("dot.png", png)}, format="multipart")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["mime_type"] == "image/png" and body["id"].startswith("file_")
    assert auth_client.get(f"/api/upload/{body['id']}/status").json()["status"] == "ready"  # the owner's file
    trigger_only = key_for(auth_client, scopes=("trigger",))
    assert_envelope(
        trigger_only.post("/api/external/upload", {"file": SimpleUploadedFile("dot.png", png)}, format="multipart"),
        403,
        "FORBIDDEN",
    )
    assert_envelope(
        APIClient().post("/api/external/upload", {"file": SimpleUploadedFile("dot.png", png)}, format="multipart"),
        401,
        "UNAUTHORIZED",
    )


def test_storage_quota_on_upload(admin_client, auth_client, user):
    from django.core.files.uploadedfile import SimpleUploadedFile

    admin_client.post(f"/api/admin/users/{user.id}/overrides", {"storage_mb": 0}, format="json")
    response = auth_client.post(
        "/api/upload", {"file": SimpleUploadedFile("notes.txt", b"hello world")}, format="multipart"
    )
    assert_envelope(response, 429, "QUOTA_EXCEEDED")
