"""Workflow endpoints: get, save with validation, versions, restore (API.md, CONTRACT §3)."""

import pytest

from tests.matrix import AccessCase, assert_access_matrix, assert_envelope

pytestmark = pytest.mark.django_db


def node(node_id, node_type, **data):
    return {"id": node_id, "type": node_type, "position": {"x": 0, "y": 0}, "data": data}


TRIGGER = node("start", "trigger", trigger_type="manual")
TRANSFORM = node("shape", "transform", output={"greeting": "Hello {{ input.name }}"})
GRAPH = {"nodes": [TRIGGER, TRANSFORM], "edges": [{"source": "start", "target": "shape"}]}


@pytest.fixture
def agent_id(auth_client):
    return auth_client.post("/api/agents", {"name": "Flow"}, format="json").json()["id"]


def save(client, agent_id, body, **extra):
    return client.put(f"/api/agents/{agent_id}/workflow", {**body, **extra}, format="json")


def test_new_agent_has_an_empty_version_0(auth_client, agent_id):
    body = auth_client.get(f"/api/agents/{agent_id}/workflow").json()
    assert body["nodes"] == [] and body["edges"] == [] and body["version"] == 0
    assert body["agent_id"] == agent_id and body["id"].startswith("workflow_")


def test_save_bumps_version_and_keeps_snapshots(auth_client, agent_id):
    first = save(auth_client, agent_id, GRAPH, description="first").json()
    assert first["version"] == 1 and first["nodes"] == GRAPH["nodes"]
    second = save(auth_client, agent_id, {"nodes": [TRIGGER], "edges": []}).json()
    assert second["version"] == 2
    versions = auth_client.get(f"/api/agents/{agent_id}/workflow/versions").json()
    assert versions["total"] == 2
    assert [(v["version"], v["node_count"], v["edge_count"]) for v in versions["versions"]] == [(2, 1, 0), (1, 2, 1)]
    assert versions["versions"][1]["description"] == "first"
    snapshot = auth_client.get(f"/api/agents/{agent_id}/workflow/versions/1").json()
    assert snapshot["version"] == 1 and snapshot["nodes"] == GRAPH["nodes"]
    assert_envelope(auth_client.get(f"/api/agents/{agent_id}/workflow/versions/9"), 404, "NOT_FOUND")


def test_restore_creates_a_new_version(auth_client, agent_id):
    save(auth_client, agent_id, GRAPH)
    save(auth_client, agent_id, {"nodes": [TRIGGER], "edges": []})
    restored = auth_client.post(f"/api/agents/{agent_id}/workflow/restore/1")
    assert restored.status_code == 200
    body = restored.json()
    assert body["version"] == 3 and body["nodes"] == GRAPH["nodes"]
    versions = auth_client.get(f"/api/agents/{agent_id}/workflow/versions").json()["versions"]
    assert versions[0]["description"] == "Restored from version 1"
    assert_envelope(auth_client.post(f"/api/agents/{agent_id}/workflow/restore/42"), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    "graph,where,culprit",
    [
        ({"nodes": [TRIGGER, node("x", "teleport")], "edges": []}, "nodes", "x"),
        ({"nodes": [TRIGGER, node("c", "condition", operator="bogus", left="1")], "edges": []}, "nodes", "c"),
        ({"nodes": [TRIGGER, TRIGGER], "edges": []}, "nodes", None),
        ({"nodes": [TRIGGER], "edges": [{"source": "start", "target": "ghost"}]}, "edges", None),
        (
            {
                "nodes": [TRIGGER, node("a", "transform", output=1), node("b", "transform", output=2)],
                "edges": [
                    {"source": "start", "target": "a"},
                    {"source": "a", "target": "b"},
                    {"source": "b", "target": "a"},
                ],
            },
            "graph",
            None,
        ),
        (
            {
                "nodes": [TRIGGER, node("t", "transform", output="{{ nodes.missing.text }}")],
                "edges": [{"source": "start", "target": "t"}],
            },
            "nodes",
            "t",
        ),
        ({"nodes": [TRIGGER, node("t", "transform", output="{{ unclosed ")], "edges": []}, "nodes", "t"),
        ({"nodes": [TRIGGER, node("t", "tool", tool="no_such_tool", arguments={})], "edges": []}, "nodes", "t"),
    ],
    ids=[
        "unknown-type",
        "bad-data",
        "duplicate-id",
        "dangling-edge",
        "cycle",
        "missing-node-template",
        "template-syntax",
        "unknown-tool",
    ],
)
def test_bad_saves_name_the_culprit(auth_client, agent_id, graph, where, culprit):
    body = assert_envelope(save(auth_client, agent_id, graph), 400, "VALIDATION_ERROR")
    assert where in body["details"], body
    if culprit:
        assert culprit in body["details"][where], body
    assert auth_client.get(f"/api/agents/{agent_id}/workflow").json()["version"] == 0


def test_agent_node_must_name_an_own_agent(auth_client, other_client, agent_id):
    theirs = other_client.post("/api/agents", {"name": "Theirs"}, format="json").json()["id"]
    graph = {
        "nodes": [TRIGGER, node("sub", "agent", agent_id=theirs, input={})],
        "edges": [{"source": "start", "target": "sub"}],
    }
    assert "sub" in assert_envelope(save(auth_client, agent_id, graph), 400, "VALIDATION_ERROR")["details"]["nodes"]


def test_body_shape_errors(auth_client, agent_id):
    assert_envelope(save(auth_client, agent_id, {"nodes": "x", "edges": []}), 400, "VALIDATION_ERROR")
    assert_envelope(
        auth_client.put(f"/api/agents/{agent_id}/workflow", {"edges": []}, format="json"), 400, "VALIDATION_ERROR"
    )


def test_access_matrix(auth_client, other_client, agent_id):
    save(auth_client, agent_id, GRAPH)
    base = f"/api/agents/{agent_id}/workflow"
    assert_access_matrix(AccessCase("get", base), owner=auth_client, other=other_client)
    assert_access_matrix(
        AccessCase("put", base, body=GRAPH, bad_body={"nodes": [{"id": 1}], "edges": []}),
        owner=auth_client,
        other=other_client,
    )
    assert_access_matrix(AccessCase("get", f"{base}/versions"), owner=auth_client, other=other_client)
    assert_access_matrix(AccessCase("get", f"{base}/versions/1"), owner=auth_client, other=other_client)
    assert_access_matrix(AccessCase("post", f"{base}/restore/1"), owner=auth_client, other=other_client)
