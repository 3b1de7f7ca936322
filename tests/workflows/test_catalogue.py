"""The node catalogue: every CONTRACT type, valid Draft 2020-12 schemas, handles and the public registry."""

import pytest
from jsonschema import Draft202012Validator

from workflows.catalogue import COMMON_FIELDS_SCHEMA, NODE_TYPES, data_schema, node_handles, node_types_public

CONTRACT_TYPES = {
    "trigger",
    "llm",
    "tool",
    "http_request",
    "condition",
    "switch",
    "transform",
    "loop",
    "delay",
    "agent",
    "output",
}

VALID = {
    "trigger": {"trigger_type": "webhook"},
    "llm": {
        "model": "gpt-4o",
        "prompt": "Summarise {{ prev }}",
        "system_prompt": "Be brief",
        "temperature": 0.2,
        "max_tokens": 500,
        "tools": ["calculate_math"],
        "response_format": "json",
        "json_schema": {"type": "object"},
    },
    "tool": {"tool": "calculate_math", "arguments": {"expression": "{{ input.x }}"}, "credential_id": "cred_abc"},
    "http_request": {
        "method": "POST",
        "url": "https://example.com/{{ input.id }}",
        "headers": {"X-A": "b"},
        "query": {"q": "x", "n": 1, "tags": ["a", 2]},
        "body": {"any": ["json", 1]},
        "timeout_ms": 5000,
    },
    "condition": {"left": "{{ input.n }}", "operator": "gt", "right": 5},
    "switch": {"value": "{{ input.kind }}", "cases": [{"label": "a", "operator": "eq", "right": "a"}]},
    "transform": {"output": {"x": "{{ input.x }}"}},
    "loop": {"items": "{{ input.list }}", "max_iterations": 10},
    "delay": {"seconds": 1.5},
    "agent": {"agent_id": "agent_abc123", "input": {"q": "{{ input.q }}"}},
    "output": {"value": "{{ prev }}"},
}

INVALID = [
    ("trigger", {"trigger_type": "cron"}),
    ("llm", {"prompt": "no model"}),
    ("llm", {"model": "m"}),
    ("llm", {"model": "m", "prompt": "p", "temperature": 2.5}),
    ("llm", {"model": "m", "prompt": "p", "max_tokens": 0}),
    ("llm", {"model": "m", "prompt": "p", "max_tokens": 200001}),
    ("llm", {"model": "m", "prompt": "p", "tools": "calculate_math"}),
    ("llm", {"model": "m", "prompt": "p", "response_format": "xml"}),
    ("llm", {"model": "m", "prompt": "p", "json_schema": {"type": "object"}}),  # needs response_format json
    ("llm", {"model": "m", "promt": "typo"}),
    ("tool", {"arguments": {}}),
    ("tool", {"tool": "x", "arguments": []}),
    ("http_request", {"method": "FETCH", "url": "https://x"}),
    ("http_request", {"method": "GET"}),
    ("http_request", {"method": "GET", "url": "https://x", "headers": {"a": 1}}),
    ("http_request", {"method": "GET", "url": "https://x", "timeout_ms": 300001}),
    ("condition", {"left": 1, "operator": "like", "right": 2}),
    ("condition", {"left": 1, "operator": "eq"}),  # binary operator without right
    ("switch", {"value": 1, "cases": []}),
    ("switch", {"value": 1, "cases": [{"label": "default", "operator": "eq", "right": 1}]}),
    ("switch", {"value": 1, "cases": [{"label": "a", "operator": "eq"}]}),
    ("transform", {}),
    ("loop", {"items": ["not", "a", "template"]}),
    ("loop", {"items": "{{ x }}", "max_iterations": 0}),
    ("loop", {"items": "{{ x }}", "max_iterations": 1001}),
    ("delay", {"seconds": -1}),
    ("delay", {"seconds": 301}),
    ("agent", {"agent_id": "abc"}),
    ("output", {"value": 1, "extra": 2}),
]


def test_every_contract_type_is_catalogued():
    assert set(NODE_TYPES) == CONTRACT_TYPES


@pytest.mark.parametrize("node_type", sorted(CONTRACT_TYPES))
def test_schemas_are_valid_draft_2020_12(node_type):
    schema = data_schema(node_type)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(COMMON_FIELDS_SCHEMA)


@pytest.mark.parametrize("node_type", sorted(CONTRACT_TYPES))
def test_valid_examples_pass(node_type):
    errors = list(Draft202012Validator(data_schema(node_type)).iter_errors(VALID[node_type]))
    assert errors == []
    # The builder's own label is accepted everywhere.
    with_label = {**VALID[node_type], "label": "My node"}
    assert list(Draft202012Validator(data_schema(node_type)).iter_errors(with_label)) == []


@pytest.mark.parametrize(("node_type", "data"), INVALID)
def test_invalid_examples_fail(node_type, data):
    assert list(Draft202012Validator(data_schema(node_type)).iter_errors(data))


def test_unary_operators_need_no_right():
    validator = Draft202012Validator(data_schema("condition"))
    assert list(validator.iter_errors({"left": "{{ x }}", "operator": "is_empty"})) == []


def test_bounds_follow_settings(settings):
    settings.WORKFLOW_MAX_DELAY_SECONDS = 10
    settings.WORKFLOW_MAX_LOOP_ITERATIONS = 5
    assert data_schema("delay")["properties"]["seconds"]["maximum"] == 10
    assert data_schema("loop")["properties"]["max_iterations"]["maximum"] == 5


def test_handles():
    assert node_handles("condition", {}) == ["true", "false"]
    assert node_handles("loop", {}) == ["loop", "done"]
    assert node_handles("switch", {"cases": [{"label": "a"}, {"label": "b"}]}) == ["a", "b", "default"]
    assert node_handles("switch", {"cases": "broken"}) == ["default"]
    assert node_handles("llm", {}) == ["default"]
    assert node_handles("nope", {}) == []


def test_public_registry():
    public = node_types_public()
    assert [entry["type"] for entry in public] == list(NODE_TYPES)
    keys = {
        "type",
        "display_name",
        "description",
        "category",
        "icon",
        "data_schema",
        "handles",
        "common_fields",
    }
    for entry in public:
        assert keys <= set(entry)
        assert set(entry["common_fields"]) == {"retry", "timeout_ms", "on_error"}
        assert entry["display_name"] and entry["description"] and entry["icon"] and entry["category"]
    by_type = {entry["type"]: entry for entry in public}
    assert by_type["condition"]["handles"] == ["true", "false"]
    assert by_type["switch"]["dynamic_handles"] == "cases[].label"
    assert by_type["condition"]["handle_required"] and not by_type["llm"]["handle_required"]
    # The registry is a copy: callers cannot change the catalogue.
    public[0]["data_schema"]["properties"].clear()
    assert node_types_public()[0]["data_schema"]["properties"]
