"""Credentials CRUD, validation, encryption at rest; integrations catalogue; tool endpoints (CONTRACT §8)."""

import json

import pytest
from django.db import connection
from django.test import override_settings

from integrations.credentials import credential_fields_for_tool
from integrations.models import Credential
from integrations.tools import ToolExecutionError
from tests.matrix import AccessCase, assert_access_matrix, assert_envelope
from tests.support.llm_server import Reply, create_model, create_provider

pytestmark = pytest.mark.django_db

SLACK_URL = "https://hooks.slack.com/services/T000/B000/secretpart8f3a"
CREDENTIAL_FIELDS = {"id", "integration_id", "name", "preview", "created_at", "updated_at", "last_used_at", "last_test"}


def create_slack(client, name="My Slack Workspace", url=SLACK_URL):
    return client.post(
        "/api/credentials",
        {"integration_id": "slack", "name": name, "credentials": {"webhook_url": url}},
        format="json",
    )


class TestCredentials:
    def test_create_never_returns_secrets_and_stores_none_in_clear(self, auth_client):
        response = create_slack(auth_client)
        assert response.status_code == 201
        body = response.json()
        assert set(body) == CREDENTIAL_FIELDS and body["id"].startswith("cred_")
        assert body["preview"].endswith("8f3a") and "…" in body["preview"] and "secretpart" not in body["preview"]
        assert body["last_used_at"] is None and body["last_test"] is None
        listed = auth_client.get("/api/credentials").json()
        assert listed["total"] == 1 and SLACK_URL not in json.dumps(listed)
        assert SLACK_URL not in json.dumps(auth_client.get(f"/api/credentials/{body['id']}").json())
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM integrations_credential")
            assert "secretpart" not in str(cursor.fetchall())

    @pytest.mark.parametrize(
        "body,field",
        [
            ({"integration_id": "myspace", "name": "x", "credentials": {}}, "integration_id"),
            ({"integration_id": "slack", "name": "x", "credentials": {}}, "credentials.webhook_url"),
            (
                {"integration_id": "slack", "name": "x", "credentials": {"webhook_url": "ftp://x"}},
                "credentials.webhook_url",
            ),
            (
                {"integration_id": "slack", "name": "x", "credentials": {"webhook_url": SLACK_URL, "extra": 1}},
                "credentials.extra",
            ),
            (
                {
                    "integration_id": "email",
                    "name": "x",
                    "credentials": {"host": "smtp.example.com", "port": 99999, "from_address": "a@b.co"},
                },
                "credentials.port",
            ),
            (
                {
                    "integration_id": "email",
                    "name": "x",
                    "credentials": {"host": "smtp.example.com", "from_address": "not-an-email"},
                },
                "credentials.from_address",
            ),
            (
                {
                    "integration_id": "email",
                    "name": "x",
                    "credentials": {"host": "h", "from_address": "a@b.co", "security": "maybe"},
                },
                "credentials.security",
            ),
            ({"integration_id": "slack", "name": "", "credentials": {"webhook_url": SLACK_URL}}, "name"),
            ({"integration_id": "slack", "name": "x", "credentials": "url"}, "credentials"),
        ],
    )
    def test_fields_are_validated_against_the_integration(self, auth_client, body, field):
        response = auth_client.post("/api/credentials", body, format="json")
        assert field in assert_envelope(response, 400, "VALIDATION_ERROR")["details"]
        assert not Credential.objects.exists()

    def test_defaults_apply(self, auth_client, user):
        auth_client.post(
            "/api/credentials",
            {
                "integration_id": "email",
                "name": "Mail",
                "credentials": {
                    "host": "smtp.example.com",
                    "from_address": "me@example.com",
                    "password": "hunter2hunter2",
                },
            },
            format="json",
        )
        fields = credential_fields_for_tool(user=user, integration_id="email")
        assert fields["port"] == 587 and fields["security"] == "starttls" and fields["password"] == "hunter2hunter2"

    def test_update_merges_fields_and_renames(self, auth_client, user):
        credential_id = create_slack(auth_client).json()["id"]
        body = auth_client.put(f"/api/credentials/{credential_id}", {"name": "Renamed"}, format="json").json()
        assert body["name"] == "Renamed" and body["preview"].endswith("8f3a")
        new_url = "https://hooks.slack.com/services/T1/B1/othersecret9999"
        body = auth_client.put(
            f"/api/credentials/{credential_id}", {"credentials": {"webhook_url": new_url}}, format="json"
        ).json()
        assert body["preview"].endswith("9999")
        assert credential_fields_for_tool(user=user, integration_id="slack")["webhook_url"] == new_url
        response = auth_client.put(
            f"/api/credentials/{credential_id}", {"credentials": {"webhook_url": "x"}}, format="json"
        )
        assert_envelope(response, 400, "VALIDATION_ERROR")

    def test_access_matrix(self, auth_client, other_client):
        credential_id = create_slack(auth_client).json()["id"]
        path = f"/api/credentials/{credential_id}"
        assert_access_matrix(AccessCase("get", path), owner=auth_client, other=other_client)
        assert_access_matrix(
            AccessCase("put", path, body={"name": "n"}, bad_body={"name": ""}), owner=auth_client, other=other_client
        )
        assert_envelope(other_client.post(f"{path}/test"), 404, "NOT_FOUND")
        assert_access_matrix(AccessCase("delete", path, owner_status=204), owner=auth_client, other=other_client)
        assert other_client.get("/api/credentials").json()["total"] == 0

    def test_list_filters_and_validation(self, auth_client):
        create_slack(auth_client)
        auth_client.post(
            "/api/credentials",
            {
                "integration_id": "discord",
                "name": "d",
                "credentials": {"webhook_url": "https://discord.com/api/webhooks/1/x"},
            },
            format="json",
        )
        assert auth_client.get("/api/credentials?integration_id=discord").json()["total"] == 1
        assert_envelope(auth_client.get("/api/credentials?limit=0"), 400, "VALIDATION_ERROR")

    def test_tool_resolution_rules(self, auth_client, user, other_user):
        with pytest.raises(ToolExecutionError, match="No Slack credential"):
            credential_fields_for_tool(user=user, integration_id="slack")
        first = create_slack(auth_client, name="one").json()["id"]
        assert credential_fields_for_tool(user=user, integration_id="slack")["webhook_url"] == SLACK_URL
        assert Credential.objects.get(pk=first).last_used_at is not None
        second = create_slack(auth_client, name="two", url="https://hooks.slack.com/services/2/2/two").json()["id"]
        with pytest.raises(ToolExecutionError, match="Several"):
            credential_fields_for_tool(user=user, integration_id="slack")
        assert credential_fields_for_tool(user=user, integration_id="slack", credential_id=second)["webhook_url"]
        with pytest.raises(ToolExecutionError, match="No Slack credential with id"):
            credential_fields_for_tool(user=other_user, integration_id="slack", credential_id=first)


class TestCatalogueAndTools:
    def test_integrations_are_public_and_mark_secrets(self, api_client):
        body = api_client.get("/api/integrations").json()
        by_id = {entry["id"]: entry for entry in body["integrations"]}
        assert {"slack", "discord", "email", "webhook", "searxng"} <= set(by_id)
        assert by_id["slack"]["fields"][0] == {
            "name": "webhook_url",
            "type": "url",
            "required": True,
            "secret": True,
            "description": by_id["slack"]["fields"][0]["description"],
        }
        password = next(f for f in by_id["email"]["fields"] if f["name"] == "password")
        host = next(f for f in by_id["email"]["fields"] if f["name"] == "host")
        assert password["secret"] is True and host["secret"] is False

    def test_tool_list_shape(self, auth_client, api_client):
        tools = auth_client.get("/api/tools").json()["tools"]
        names = [tool["name"] for tool in tools]
        assert "calculate_math" in names and names == sorted(names)
        assert set(tools[0]) == {
            "name",
            "display_name",
            "description",
            "category",
            "icon",
            "parameters",
            "requires_integration",
        }
        assert_envelope(api_client.get("/api/tools"), 401, "UNAUTHORIZED")

    def test_available_tools_follow_credentials(self, auth_client):
        def available():
            return {tool["name"] for tool in auth_client.get("/api/tools/available").json()["tools"]}

        needing = {
            tool["name"]
            for tool in auth_client.get("/api/tools").json()["tools"]
            if tool["requires_integration"] == "slack"
        }
        before = available()
        assert needing, "send_slack needs the slack integration"
        assert "calculate_math" in before and not (needing & before)
        credential_id = create_slack(auth_client).json()["id"]
        assert needing <= available()
        auth_client.delete(f"/api/credentials/{credential_id}")
        assert available() == before

    def test_registry_has_tools_categories_and_node_types(self, auth_client):
        body = auth_client.get("/api/tools/registry").json()
        assert set(body) == {"tools", "categories", "node_types"}
        assert {"llm", "condition", "loop", "agent"} <= {entry["type"] for entry in body["node_types"]}
        assert all("data_schema" in entry for entry in body["node_types"])
        assert {category["id"] for category in body["categories"]} >= {"utilities"}

    def test_recommend_lexically(self, auth_client):
        response = auth_client.post("/api/tools/recommend", {"task": "Calculate the square root of 2"}, format="json")
        recommendations = response.json()["recommendations"]
        assert recommendations[0]["name"] == "calculate_math"
        assert 0 < recommendations[0]["score"] <= 1 and recommendations[0]["reason"]
        assert_envelope(auth_client.post("/api/tools/recommend", {"task": ""}, format="json"), 400, "VALIDATION_ERROR")
        nothing = auth_client.post("/api/tools/recommend", {"task": "zzqx"}, format="json").json()
        assert nothing == {"recommendations": []}


@pytest.mark.django_db(transaction=True)
def test_recommend_with_the_configured_llm(auth_client, llm_server):
    create_model(create_provider(llm_server, "openai"), "rank/model")
    llm_server.enqueue(
        Reply(
            text=json.dumps(
                {
                    "recommendations": [
                        {"name": "get_current_time", "score": 0.9, "reason": "needs the time"},
                        {"name": "made_up_tool", "score": 0.8, "reason": "hallucinated"},
                    ]
                }
            )
        )
    )
    with override_settings(TOOL_RECOMMENDATION_MODEL="rank/model"):
        body = auth_client.post("/api/tools/recommend", {"task": "What time is it in Tokyo?"}, format="json").json()
    assert body == {"recommendations": [{"name": "get_current_time", "score": 0.9, "reason": "needs the time"}]}
    llm_server.enqueue(Reply(status=500), Reply(status=500), Reply(status=500))
    with override_settings(TOOL_RECOMMENDATION_MODEL="rank/model", LLM_MAX_ATTEMPTS=1):
        body = auth_client.post("/api/tools/recommend", {"task": "calculate 2+2"}, format="json").json()
    assert body["recommendations"][0]["name"] == "calculate_math"  # the lexical fallback
