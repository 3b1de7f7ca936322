"""Save-time validation: every error kind is reported under its culprit."""

import pytest

from claraverse.errors import ApplicationError
from workflows.validation import validate_workflow

TOOLS = {"calculate_math", "web_search"}


def node(node_id, node_type, data=None, **extra):
    return {"id": node_id, "type": node_type, "position": {"x": 0, "y": 0}, "data": data or {}, **extra}


def edge(source, target, handle=None, **extra):
    result = {"source": source, "target": target, **extra}
    if handle is not None:
        result["source_handle"] = handle
    return result


def errors(nodes, edges, **kwargs):
    with pytest.raises(ApplicationError) as caught:
        validate_workflow(nodes, edges, tool_exists=TOOLS.__contains__, **kwargs)
    error = caught.value
    assert error.code == "VALIDATION_ERROR" and error.status == 400
    assert error.message.startswith("Invalid workflow: ")
    assert set(error.details) <= {"nodes", "edges", "graph"} and error.details
    return error.details


def valid_workflow():
    nodes = [
        node("start", "trigger", {"trigger_type": "manual"}),
        node(
            "ask",
            "llm",
            {"model": "gpt-4o", "prompt": "{{ input.q }}", "tools": ["web_search"]},
            retry={"max_attempts": 3},
        ),
        node("check", "condition", {"left": "{{ nodes.ask.text }}", "operator": "not_empty"}),
        node("route", "switch", {"value": "{{ prev.result }}", "cases": [{"label": "yes", "operator": "is_true"}]}),
        node("each", "loop", {"items": "{{ input.items }}"}),
        node("work", "tool", {"tool": "calculate_math", "arguments": {"expression": "{{ item }}"}}),
        node("wait", "delay", {"seconds": 1}, timeout_ms=5000, on_error="continue"),
        node("call", "http_request", {"method": "GET", "url": "https://example.com"}),
        node("sub", "agent", {"agent_id": "agent_abc", "input": "{{ nodes['each'].items }}"}),
        node("shape", "transform", {"output": {"n": "{{ nodes.get('work') }}"}}),
        node("out", "output", {"value": "{{ nodes.shape }}"}),
    ]
    edges = [
        edge("start", "ask", id="e1"),
        edge("ask", "check", "default"),
        edge("check", "route", "true"),
        edge("check", "call", "false"),
        edge("route", "each", "yes"),
        edge("route", "wait", "default"),
        edge("each", "work", "loop"),
        edge("each", "sub", "done"),
        edge("sub", "shape"),
        edge("wait", "shape"),
        edge("call", "shape"),
        edge("shape", "out"),
    ]
    return nodes, edges


def test_a_valid_workflow_passes_and_returns_copies():
    nodes, edges = valid_workflow()
    got_nodes, got_edges = validate_workflow(nodes, edges, tool_exists=TOOLS.__contains__)
    assert got_nodes == nodes and got_edges == edges and got_nodes is not nodes


def test_empty_workflow_is_valid():
    assert validate_workflow([], [], tool_exists=TOOLS.__contains__) == ([], [])


def test_nodes_and_edges_must_be_lists():
    details = errors({"a": 1}, None)
    assert details == {"graph": ["nodes must be a list", "edges must be a list"]}


def test_sizes_are_limited():
    details = errors([node(f"n{i}", "trigger") for i in range(3)], [], max_nodes=2)
    assert details["graph"] == ["too many nodes: 3 (at most 2)"]
    details = errors([], [edge("a", "b")] * 3, max_edges=2)
    assert details["graph"] == ["too many edges: 3 (at most 2)"]


def test_size_limits_come_from_settings(settings):
    settings.WORKFLOW_MAX_NODES = 1
    assert "too many nodes" in errors([node("a", "trigger"), node("b", "trigger")], [])["graph"][0]


def test_unknown_type_names_the_node():
    details = errors([node("a", "trigger"), node("b", "nope")], [])
    assert list(details) == ["nodes"]
    assert list(details["nodes"]) == ["b"]
    assert "unknown node type 'nope'" in details["nodes"]["b"][0]


def test_bad_data_reports_json_paths():
    details = errors(
        [
            node("l", "llm", {"model": "m", "promt": "x", "temperature": 5}),
            node("s", "switch", {"value": 1, "cases": [{"label": "a", "operator": "eq", "right": 1}, {"label": 3}]}),
        ],
        [],
    )
    llm = details["nodes"]["l"]
    assert "data: 'prompt' is a required property" in llm
    assert any(m.startswith("data: Additional properties") and "promt" in m for m in llm)
    assert any(m.startswith("data.temperature: ") for m in llm)
    assert any(m.startswith("data.cases[1].label: ") for m in details["nodes"]["s"])


def test_duplicate_ids_are_named():
    details = errors([node("a", "trigger"), node("b", "trigger"), node("a", "trigger")], [])
    assert details["nodes"] == {"a": ["duplicate node id 'a' (nodes at index 0 and 2)"]}


def test_malformed_nodes_are_keyed_by_index():
    details = errors([node("ok", "trigger"), "x", {"id": "has space", "type": "trigger"}, {"type": "trigger"}], [])
    assert details["nodes"]["1"] == ["must be an object"]
    assert any("id must be" in m for m in details["nodes"]["2"])
    assert any("position" in m for m in details["nodes"]["2"])
    assert any("data must be an object" in m for m in details["nodes"]["3"])


def test_unknown_fields_position_and_common_fields():
    details = errors(
        [
            node("a", "trigger", width=10),
            {"id": "b", "type": "trigger", "position": {"x": "1", "y": None}, "data": {}},
            node("c", "trigger", retry={"max_attempts": 11, "backoff_ms": -1}, timeout_ms=0, on_error="ignore"),
        ],
        [],
    )
    assert details["nodes"]["a"] == [
        "unknown field 'width' (allowed: id, type, position, data, retry, timeout_ms, on_error)"
    ]
    assert details["nodes"]["b"] == ["position.x must be a number", "position.y must be a number"]
    paths = {message.split(":")[0] for message in details["nodes"]["c"]}
    assert paths == {"retry.max_attempts", "retry.backoff_ms", "timeout_ms", "on_error"}


def test_dangling_edges_name_the_edge():
    details = errors([node("a", "trigger")], [edge("a", "ghost", id="e1"), edge("nobody", "a")])
    assert details["edges"] == {
        "e1": ["target 'ghost' is not a node of this workflow"],
        "1": ["source 'nobody' is not a node of this workflow"],
    }


def test_edge_shape_problems():
    details = errors(
        [node("a", "trigger"), node("b", "trigger")],
        [edge("a", "b", id=""), {"source": "a"}, edge("a", "b", color="red"), edge("a", "a"), "x", edge("a", "b")],
    )
    edges = details["edges"]
    assert any("id must be" in m for m in edges["0"])
    assert edges["1"] == ["target must be a node id"]
    assert any("unknown field 'color'" in m for m in edges["2"])
    assert edges["3"] == ["edge connects node 'a' to itself"]
    assert edges["4"] == ["must be an object"]
    assert edges["5"] == ["duplicate of edge '0'"]


def test_duplicate_edge_ids():
    details = errors(
        [node("a", "trigger"), node("b", "trigger"), node("c", "trigger")],
        [
            edge("a", "b", id="e"),
            edge("a", "c", id="e"),
        ],
    )
    assert details["edges"] == {"e": ["duplicate edge id 'e'"]}


@pytest.mark.parametrize(
    ("source", "handle", "expected"),
    [
        (node("c", "condition", {"left": 1, "operator": "is_true"}), None, "must set source_handle to 'true', 'false'"),
        (node("c", "condition", {"left": 1, "operator": "is_true"}), "maybe", "'maybe' is not a handle"),
        (
            node("c", "switch", {"value": 1, "cases": [{"label": "x", "operator": "eq", "right": 1}]}),
            "y",
            "('x', 'default')",
        ),
        (node("c", "loop", {"items": "{{ input }}"}), "after", "('loop', 'done')"),
        (node("c", "loop", {"items": "{{ input }}"}), None, "must set source_handle"),
        (node("c", "transform", {"output": 1}), "true", "omit it or 'default'"),
    ],
)
def test_bad_handles(source, handle, expected):
    details = errors([source, node("t", "output")], [edge("c", "t", handle, id="the-edge")])
    assert list(details) == ["edges"]
    assert expected in details["edges"]["the-edge"][0]


def test_good_handles():
    nodes = [
        node("s", "switch", {"value": 1, "cases": [{"label": "x", "operator": "eq", "right": 1}]}),
        node("a", "output"),
        node("b", "output"),
        node("c", "output"),
    ]
    validate_workflow(
        nodes,
        [edge("s", "a", "x"), edge("s", "b", "default"), edge("a", "c", "default")],
        tool_exists=TOOLS.__contains__,
    )


def test_cycle_path_is_reported():
    nodes = [node(name, "transform", {"output": 1}) for name in ("a", "b", "c", "d")]
    details = errors(nodes, [edge("a", "b"), edge("b", "c"), edge("c", "d"), edge("d", "b")])
    assert details == {"graph": ["the workflow has a cycle: b -> c -> d -> b"]}


def test_template_syntax_error_names_node_and_path():
    details = errors([node("t", "transform", {"output": {"x": ["{{ input.a + }}"]}})], [])
    assert details["nodes"]["t"][0].startswith("data.output.x[0]: syntax error")


def test_template_naming_a_missing_node():
    details = errors(
        [node("a", "trigger"), node("b", "llm", {"model": "m", "prompt": "{{ nodes.a }} {{ nodes['ghost'].text }}"})],
        [edge("a", "b")],
    )
    assert details["nodes"] == {"b": ["data.prompt: references node 'ghost', which does not exist"]}


def test_template_naming_its_own_node():
    details = errors([node("a", "transform", {"output": "{{ nodes.a }}"})], [])
    assert "own output" in details["nodes"]["a"][0]


def test_unknown_tools():
    details = errors(
        [
            node("t", "tool", {"tool": "nope", "arguments": {}}),
            node("l", "llm", {"model": "m", "prompt": "p", "tools": ["web_search", "ghost"]}),
        ],
        [],
    )
    assert details["nodes"] == {"t": ["data.tool: unknown tool 'nope'"], "l": ["data.tools[1]: unknown tool 'ghost'"]}


def test_unknown_agents_when_checked():
    nodes = [node("a", "agent", {"agent_id": "agent_gone"})]
    validate_workflow(nodes, [], tool_exists=TOOLS.__contains__)
    details = errors(nodes, [], agent_exists=lambda agent_id: False)
    assert details["nodes"] == {"a": ["data.agent_id: unknown agent 'agent_gone'"]}


def test_invalid_json_schema_in_llm():
    data = {"model": "m", "prompt": "p", "response_format": "json", "json_schema": {"type": "banana"}}
    details = errors([node("l", "llm", data)], [])
    assert details["nodes"]["l"][0].startswith("data.json_schema: not a valid JSON Schema")


def test_duplicate_switch_labels():
    cases = [{"label": "a", "operator": "eq", "right": 1}, {"label": "a", "operator": "eq", "right": 2}]
    details = errors([node("s", "switch", {"value": 1, "cases": cases})], [])
    assert details["nodes"]["s"] == ["data.cases[1].label: duplicate case label 'a'"]


def test_loop_body_entered_from_outside():
    nodes = [node("t", "trigger"), node("l", "loop", {"items": "{{ input }}"}), node("b", "transform", {"output": 1})]
    details = errors(nodes, [edge("t", "l"), edge("l", "b", "loop"), edge("t", "b", id="sneak")])
    assert "body of loop 'l'" in details["edges"]["sneak"][0]
    details = errors(nodes, [edge("t", "l"), edge("l", "b", "loop"), edge("l", "b", "done", id="both")])
    assert "leads into the loop's own body" in details["edges"]["both"][0]


def test_every_problem_is_reported_at_once():
    details = errors(
        [node("a", "nope"), node("b", "llm", {"model": "m"})],
        [edge("a", "ghost", id="e1")],
    )
    assert set(details) == {"nodes", "edges"}
    assert set(details["nodes"]) == {"a", "b"}


def test_summary_counts_the_problems():
    with pytest.raises(ApplicationError) as caught:
        validate_workflow([node("a", "nope"), node("b", "nope")], [], tool_exists=TOOLS.__contains__)
    assert caught.value.message.startswith("Invalid workflow: node 'a': unknown node type 'nope'")
    assert caught.value.message.endswith("(and 1 more problem).")


def test_deeply_nested_data_is_refused_without_recursion():
    value: list = []
    for _ in range(5000):
        value = [value]
    details = errors([node("t", "transform", {"output": value})], [])
    assert "nested deeper" in details["nodes"]["t"][0]
