"""`POST /api/agents/:id/generate-workflow` against a loopback provider."""

import json

import pytest

from tests.matrix import AccessCase, assert_access_matrix, assert_envelope
from tests.support.llm_server import Reply, create_model, create_provider

pytestmark = pytest.mark.django_db(transaction=True)

GOOD = {
    "nodes": [
        {"id": "start", "type": "trigger", "position": {"x": 0, "y": 0}, "data": {"trigger_type": "manual"}},
        {"id": "out", "type": "output", "position": {"x": 200, "y": 0}, "data": {"value": "{{ input.q }}"}},
    ],
    "edges": [{"source": "start", "target": "out"}],
}


@pytest.fixture
def agent_id(auth_client, llm_server):
    create_model(create_provider(llm_server, "openai"), "gen/model")
    return auth_client.post("/api/agents", {"name": "Gen", "model": "gen/model"}, format="json").json()["id"]


def test_returns_a_validated_draft_without_saving(auth_client, llm_server, agent_id):
    llm_server.enqueue(Reply(text=json.dumps(GOOD)))
    response = auth_client.post(
        f"/api/agents/{agent_id}/generate-workflow", {"description": "Echo the query"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json() == {**GOOD, "model": "gen/model"}
    sent = llm_server.chat_requests[0].body
    assert "trigger" in sent["messages"][0]["content"] and sent["messages"][1]["content"] == "Echo the query"
    assert auth_client.get(f"/api/agents/{agent_id}/workflow").json()["version"] == 0


def test_an_invalid_draft_is_repaired_once(auth_client, llm_server, agent_id):
    broken = {"nodes": [{"id": "x", "type": "teleport", "position": {"x": 0, "y": 0}, "data": {}}], "edges": []}
    llm_server.enqueue(Reply(text=json.dumps(broken)), Reply(text=json.dumps(GOOD)))
    response = auth_client.post(f"/api/agents/{agent_id}/generate-workflow", {"description": "d"}, format="json")
    assert response.status_code == 200
    repair_prompt = llm_server.chat_requests[1].body["messages"][-1]["content"]
    assert "teleport" in repair_prompt


def test_gives_up_with_provider_error(auth_client, llm_server, agent_id):
    llm_server.enqueue(Reply(text="not json"), Reply(text="still not json"))
    response = auth_client.post(f"/api/agents/{agent_id}/generate-workflow", {"description": "d"}, format="json")
    assert_envelope(response, 502, "PROVIDER_ERROR")


def test_access_matrix(auth_client, other_client, llm_server, agent_id):
    llm_server.default_reply = Reply(text=json.dumps(GOOD))
    assert_access_matrix(
        AccessCase(
            "post", f"/api/agents/{agent_id}/generate-workflow", body={"description": "d"}, bad_body={"description": ""}
        ),
        owner=auth_client,
        other=other_client,
    )
