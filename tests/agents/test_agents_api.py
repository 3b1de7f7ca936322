"""Agents: CRUD, list with limit/offset/sort, sync (API.md, CONTRACT §3)."""

import pytest

from agents.models import Agent
from tests.conftest import client_for
from tests.matrix import AccessCase, assert_access_matrix, assert_envelope
from workflows.models import Workflow, WorkflowVersion

pytestmark = pytest.mark.django_db

AGENT_FIELDS = {
    "id",
    "name",
    "description",
    "model",
    "system_prompt",
    "tools",
    "temperature",
    "created_at",
    "updated_at",
}


def create(client, **fields):
    body = {
        "name": "My Agent",
        "description": "Agent description",
        "model": "gpt-4o",
        "system_prompt": "You are a helpful assistant.",
        "tools": ["calculate_math"],
        "temperature": 0.7,
        **fields,
    }
    return client.post("/api/agents", body, format="json")


class TestCreate:
    def test_create_answers_the_agent(self, auth_client):
        response = create(auth_client)
        assert response.status_code == 201
        body = response.json()
        assert set(body) == AGENT_FIELDS and body["id"].startswith("agent_") and body["tools"] == ["calculate_math"]
        assert Workflow.objects.get(agent_id=body["id"]).version == 0

    def test_defaults(self, auth_client):
        body = auth_client.post("/api/agents", {"name": "Bare"}, format="json").json()
        assert body["temperature"] == 0.7 and body["tools"] == [] and body["model"] == ""

    @pytest.mark.parametrize(
        "fields,field",
        [
            ({"name": ""}, "name"),
            ({"name": "   "}, "name"),
            ({"name": "x" * 201}, "name"),
            ({"temperature": 2.5}, "temperature"),
            ({"temperature": -0.1}, "temperature"),
            ({"tools": ["search_the_void"]}, "tools"),
            ({"tools": "calculate_math"}, "tools"),
            ({"model": "bad model id"}, "model"),
            ({"id": "agent_mine"}, "id"),
            ({"unknown": 1}, "unknown"),
        ],
    )
    def test_validation_names_the_field(self, auth_client, fields, field):
        body = assert_envelope(create(auth_client, **fields), 400, "VALIDATION_ERROR")
        assert field in body["details"]
        assert not Agent.objects.exists()

    def test_missing_name(self, auth_client):
        response = auth_client.post("/api/agents", {"model": "gpt-4o"}, format="json")
        assert "name" in assert_envelope(response, 400, "VALIDATION_ERROR")["details"]


class TestList:
    def test_pagination_and_sort(self, auth_client):
        for name in ["charlie", "alpha", "bravo"]:
            create(auth_client, name=name)
        body = auth_client.get("/api/agents?sort=name&limit=2").json()
        assert [a["name"] for a in body["agents"]] == ["alpha", "bravo"]
        assert (body["total"], body["limit"], body["offset"]) == (3, 2, 0)
        body = auth_client.get("/api/agents?sort=name&limit=2&offset=2").json()
        assert [a["name"] for a in body["agents"]] == ["charlie"]
        assert [a["name"] for a in auth_client.get("/api/agents?sort=-name").json()["agents"]] == [
            "charlie",
            "bravo",
            "alpha",
        ]
        # Default: most recently updated first.
        assert auth_client.get("/api/agents").json()["agents"][0]["name"] == "bravo"

    @pytest.mark.parametrize(
        "query",
        ["limit=0", "limit=101", "offset=-1", "sort=color", "sort=--name", "limit=x", "offset=3299464632409286246400"],
    )
    def test_bad_parameters(self, auth_client, query):
        assert_envelope(auth_client.get(f"/api/agents?{query}"), 400, "VALIDATION_ERROR")

    def test_only_own_agents(self, auth_client, other_client):
        create(other_client, name="theirs")
        assert auth_client.get("/api/agents").json()["total"] == 0


class TestDetail:
    def test_matrix_get_put_delete(self, auth_client, other_client):
        agent_id = create(auth_client).json()["id"]
        path = f"/api/agents/{agent_id}"
        assert_access_matrix(AccessCase("get", path), owner=auth_client, other=other_client)
        assert_access_matrix(
            AccessCase("put", path, body={"name": "Renamed"}, bad_body={"temperature": 9}),
            owner=auth_client,
            other=other_client,
        )
        assert_access_matrix(AccessCase("delete", path, owner_status=204), owner=auth_client, other=other_client)
        assert_envelope(auth_client.get(path), 404, "NOT_FOUND")

    def test_put_is_partial(self, auth_client):
        agent = create(auth_client).json()
        body = auth_client.put(
            f"/api/agents/{agent['id']}", {"name": "Updated Agent Name", "tools": ["get_current_time"]}, format="json"
        ).json()
        assert body["name"] == "Updated Agent Name" and body["tools"] == ["get_current_time"]
        assert body["system_prompt"] == agent["system_prompt"] and body["temperature"] == agent["temperature"]
        assert body["updated_at"] >= agent["updated_at"]

    def test_delete_removes_workflow_and_versions(self, auth_client):
        agent_id = create(auth_client).json()["id"]
        auth_client.put(f"/api/agents/{agent_id}/workflow", {"nodes": [], "edges": []}, format="json")
        assert auth_client.delete(f"/api/agents/{agent_id}").status_code == 204
        assert not Workflow.objects.exists() and not WorkflowVersion.objects.exists()


class TestSync:
    def test_creates_then_updates_with_the_client_id(self, auth_client):
        response = auth_client.post(
            "/api/agents/agent_local_123/sync", {"agent": {"name": "Local", "tools": ["calculate_math"]}}, format="json"
        )
        assert response.status_code == 200
        body = response.json()
        assert body["agent"]["id"] == "agent_local_123" and body["workflow"]["version"] == 0
        trigger = {"id": "t", "type": "trigger", "position": {"x": 0, "y": 0}, "data": {"trigger_type": "manual"}}
        response = auth_client.post(
            "/api/agents/agent_local_123/sync",
            {"agent": {"name": "Renamed"}, "workflow": {"nodes": [trigger], "edges": []}},
            format="json",
        )
        body = response.json()
        assert body["agent"]["name"] == "Renamed" and body["agent"]["tools"] == ["calculate_math"]
        assert body["workflow"]["version"] == 1 and body["workflow"]["nodes"] == [trigger]

    def test_someone_elses_id_is_404(self, auth_client, other_client):
        other_client.post("/api/agents/agent_taken/sync", {"agent": {"name": "Theirs"}}, format="json")
        response = auth_client.post("/api/agents/agent_taken/sync", {"agent": {"name": "Mine"}}, format="json")
        assert_envelope(response, 404, "NOT_FOUND")
        assert Agent.objects.get(pk="agent_taken").name == "Theirs"

    @pytest.mark.parametrize("agent_id", ["local_123", "agent_", "agent_has space", "agent_" + "x" * 80])
    def test_id_must_carry_the_prefix(self, auth_client, agent_id):
        response = auth_client.post(f"/api/agents/{agent_id}/sync", {"agent": {"name": "x"}}, format="json")
        assert_envelope(response, 400, "VALIDATION_ERROR")

    def test_invalid_agent_fields_and_workflow(self, auth_client):
        response = auth_client.post(
            "/api/agents/agent_x/sync", {"agent": {"name": "", "temperature": 5}}, format="json"
        )
        assert {"agent.name", "agent.temperature"} <= set(assert_envelope(response, 400, "VALIDATION_ERROR")["details"])
        response = auth_client.post(
            "/api/agents/agent_x/sync",
            {"agent": {"name": "ok"}, "workflow": {"nodes": [{"id": "a", "type": "nope"}], "edges": []}},
            format="json",
        )
        assert_envelope(response, 400, "VALIDATION_ERROR")
        assert not Agent.objects.filter(pk="agent_x").exists()  # all or nothing

    def test_anonymous(self, api_client):
        assert_envelope(
            api_client.post("/api/agents/agent_x/sync", {"agent": {"name": "x"}}, format="json"), 401, "UNAUTHORIZED"
        )


def test_other_users_cannot_use_agent_routes(user, other_user):
    agent_id = create(client_for(user)).json()["id"]
    other = client_for(other_user)
    for path in ["", "/workflow", "/workflow/versions", "/executions", "/executions/stats"]:
        assert_envelope(other.get(f"/api/agents/{agent_id}{path}"), 404, "NOT_FOUND")
