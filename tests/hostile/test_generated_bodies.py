"""Generated hostile input (hypothesis): arbitrary JSON in every field of the create endpoints, arbitrary text
into the strict JSON reader. Whatever comes in, the answer is a 2xx or the 4xx envelope, never a 500.
"""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claraverse.parsers import MAX_JSON_DEPTH, strict_json_loads
from tests.matrix import assert_envelope

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("unthrottled")]

# Deterministic (the same examples on every run, so a failure reproduces) and nothing written to the tree.
GENERATED = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=300)
    | st.sampled_from(["", " ", "x" * 5000, "\u202e", "fact", "high", "slack", "0 9 * * *", "UTC", "trigger"])
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
)


def body_of(fields: list[str]):
    """JSON objects holding any subset of `fields` (plus, now and then, a stranger), each with any JSON value."""
    return st.fixed_dictionaries({}, optional={name: json_values for name in [*fields, "unexpected"]})


def assert_handled(response, *ok: int) -> None:
    if response.status_code in ok:
        return
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:500])
    assert_envelope(response, response.status_code, response.json()["code"])


CREATE_ENDPOINTS = {
    "/api/agents": ["name", "description", "model", "system_prompt", "tools", "temperature"],
    "/api/memories": ["content", "category", "importance"],
    "/api/keys": ["name", "scopes", "agent_ids", "expires_at"],
    "/api/chats": ["id", "title", "messages", "model", "version", "created_at"],
    "/api/credentials": ["integration_id", "name", "credentials"],
    "/api/tools/recommend": ["task", "limit"],
    "/api/auth/register": ["email", "password", "name"],
    "/api/auth/login": ["email", "password"],
    "/api/auth/refresh": ["refresh_token"],
    "/api/agents/agent_generated_sync/sync": ["agent", "workflow"],
}


@pytest.mark.parametrize("path", CREATE_ENDPOINTS)
def test_any_json_in_any_field_of_a_create_endpoint(auth_client, path):
    @GENERATED
    @given(body=body_of(CREATE_ENDPOINTS[path]))
    def attack(body):
        assert_handled(auth_client.post(path, body, format="json"), 200, 201)

    attack()


NODE_TYPES = ["trigger", "llm", "tool", "http_request", "condition", "switch", "transform", "loop", "delay", "agent"]
NODE_TYPES += ["output", "no_such_type", ""]
node_ids = st.sampled_from(["a", "b", "c", "", "a b", "x" * 300]) | st.text(max_size=5) | scalars


def _node(node_type):
    fields = ["position", "data", "retry", "timeout_ms", "on_error", "extra"]
    return st.fixed_dictionaries(
        {"id": node_ids, "type": st.just(node_type) | scalars},
        optional={name: json_values for name in fields},
    )


nodes = st.lists(st.sampled_from(NODE_TYPES).flatmap(_node) | json_values, max_size=5)
edges = st.lists(
    st.fixed_dictionaries(
        {"source": node_ids, "target": node_ids},
        optional={"id": scalars, "source_handle": st.sampled_from(["true", "false", "loop", "done", ""]) | scalars},
    )
    | json_values,
    max_size=5,
)


def test_any_workflow_graph(auth_client):
    agent = auth_client.post("/api/agents", {"name": "a"}, format="json").json()
    path = f"/api/agents/{agent['id']}/workflow"

    @GENERATED
    @given(graph=st.fixed_dictionaries({"nodes": nodes | json_values, "edges": edges | json_values}))
    def attack(graph):
        assert_handled(auth_client.put(path, graph, format="json"), 200)

    attack()


def test_any_json_in_any_field_of_a_schedule(auth_client):
    agent = auth_client.post("/api/agents", {"name": "a"}, format="json").json()
    path = f"/api/agents/{agent['id']}/schedule"

    @GENERATED
    @given(body=body_of(["cron", "timezone", "enabled", "input"]), update=body_of(["cron", "enabled", "input"]))
    def attack(body, update):
        assert_handled(auth_client.post(path, body, format="json"), 201, 409)
        assert_handled(auth_client.put(path, update, format="json"), 200)
        assert_handled(auth_client.post(f"{path}/run", update, format="json"), 202)

    attack()


def test_any_json_in_a_chat_sync(auth_client):
    @GENERATED
    @given(chats=st.lists(json_values | body_of(["id", "title", "messages", "model", "version"]), max_size=5))
    def attack(chats):
        response = auth_client.post("/api/chats/sync", {"chats": chats}, format="json")
        assert_handled(response, 200)
        if response.status_code == 200:
            assert len(response.json()["results"]) == len(chats)

    attack()


# Text that is mostly JSON: its punctuation, literals, escapes and numbers in any order.
JSON_TOKENS = [*'[]{}":, 0123456789.eE+-', "true", "null", "NaN", "Infinity", "\\u0000", "\\ud800", '"a"']
json_like_text = st.lists(st.sampled_from(JSON_TOKENS), max_size=60).map("".join)
truncated_json = json_values.map(json.dumps).flatmap(lambda text: st.integers(0, len(text)).map(lambda n: text[:n]))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(text=st.text() | json_like_text | truncated_json)
def test_the_strict_reader_raises_only_value_error(text):
    with contextlib.suppress(ValueError):
        strict_json_loads(text)


def _depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(value=json_values)
def test_the_strict_reader_reads_back_all_storable_json(value):
    text = json.dumps(value)
    if "\\u0000" in text:
        with pytest.raises(ValueError, match="NUL"):
            strict_json_loads(text)
    else:
        assert _depth(value) <= MAX_JSON_DEPTH
        assert strict_json_loads(text) == value
