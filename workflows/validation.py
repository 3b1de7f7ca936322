"""Save-time validation of a workflow graph (CONTRACT §3): every problem is reported, each under its culprit.

`details` has up to three keys, present only when they hold errors:

- `nodes`: `{"<node id, or its index when the id is unusable>": ["message", ...]}`
- `edges`: `{"<edge id, or its index>": ["message", ...]}`
- `graph`: `["message", ...]` (sizes, types of `nodes`/`edges`, cycles)

Decisions where CONTRACT is silent: unknown top-level fields on nodes, edges and positions are errors
(like unknown `data` fields); node ids match `[A-Za-z0-9_-]{1,128}`; any number of `trigger` and `output`
nodes is allowed (exclusive branches may each end in their own output node); an edge from a condition,
switch or loop must name its handle, an edge from any other node may omit it or say "default";
templates may name only existing nodes and never the node itself (whether the named node runs first
is not checked); a loop body may only be entered through the loop's "loop" handle.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from claraverse.errors import ApplicationError
from workflows.catalogue import COMMON_FIELDS_SCHEMA, NODE_TYPES, get_node_type, handle_required, node_handles
from workflows.engine.graph import DEFAULT_HANDLE, EdgeSpec, find_cycle, loop_bodies, loop_body_violations
from workflows.templates import MAX_DEPTH, iter_templates, template_references, template_syntax_errors

NODE_FIELDS = ("id", "type", "position", "data", "retry", "timeout_ms", "on_error")
EDGE_FIELDS = ("id", "source", "target", "source_handle", "target_handle")
NODE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
MAX_EDGE_ID_CHARS = 200
_MAX_MESSAGE_CHARS = 300
_MAX_MESSAGES_PER_ITEM = 25

_DEFAULT_LIMITS = {"WORKFLOW_MAX_NODES": 200, "WORKFLOW_MAX_EDGES": 500}


def _limit(name: str, given: int | None) -> int:
    if given is not None:
        return given
    from django.conf import settings

    return getattr(settings, name, _DEFAULT_LIMITS[name])


def _json_path(prefix: str, parts: Iterable[Any]) -> str:
    path = prefix
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _short(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE_CHARS else message[: _MAX_MESSAGE_CHARS - 3] + "..."


def _schema_messages(validator: Draft202012Validator, instance: Any, prefix: str) -> list[str]:
    errors = sorted(validator.iter_errors(instance), key=lambda error: [str(p) for p in error.absolute_path])
    messages = []
    for error in errors:
        path = _json_path(prefix, error.absolute_path)
        messages.append(_short(f"{path}: {error.message}" if path else error.message))
    return messages


def _too_deep(value: Any, limit: int) -> bool:
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, Mapping):
            stack.extend((inner, depth + 1) for inner in item.values())
        elif isinstance(item, list):
            stack.extend((inner, depth + 1) for inner in item)
    return False


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class _Problems:
    """Messages collected per node, per edge and for the graph."""

    def __init__(self) -> None:
        self.nodes: dict[str, list[str]] = {}
        self.edges: dict[str, list[str]] = {}
        self.graph: list[str] = []
        self.first: str | None = None

    def _note(self, summary: str) -> None:
        if self.first is None:
            self.first = summary

    def node(self, key: str, message: str) -> None:
        messages = self.nodes.setdefault(key, [])
        if len(messages) < _MAX_MESSAGES_PER_ITEM:
            messages.append(message)
        self._note(f"node '{key}': {message}")

    def edge(self, key: str, message: str) -> None:
        messages = self.edges.setdefault(key, [])
        if len(messages) < _MAX_MESSAGES_PER_ITEM:
            messages.append(message)
        self._note(f"edge '{key}': {message}")

    def add_graph(self, message: str) -> None:
        self.graph.append(message)
        self._note(message)

    def count(self) -> int:
        return sum(map(len, self.nodes.values())) + sum(map(len, self.edges.values())) + len(self.graph)

    def raise_if_any(self) -> None:
        total = self.count()
        if not total:
            return
        details: dict[str, Any] = {}
        if self.nodes:
            details["nodes"] = self.nodes
        if self.edges:
            details["edges"] = self.edges
        if self.graph:
            details["graph"] = self.graph
        more = f" (and {total - 1} more problem{'s' if total > 2 else ''})" if total > 1 else ""
        raise ApplicationError("VALIDATION_ERROR", f"Invalid workflow: {self.first}{more}.", details=details)


def _check_node_shape(
    raw: Mapping[str, Any], key: str, problems: _Problems, validators: dict[str, Draft202012Validator]
) -> None:
    for name in raw:
        if name not in NODE_FIELDS:
            problems.node(key, f"unknown field '{name}' (allowed: {', '.join(NODE_FIELDS)})")
    node_type = raw.get("type")
    if get_node_type(node_type) is None:
        known = ", ".join(NODE_TYPES)
        if node_type is None:
            problems.node(key, f"type is required; one of: {known}")
        else:
            problems.node(key, f"unknown node type {node_type!r}; expected one of: {known}")
    position = raw.get("position")
    if not isinstance(position, Mapping):
        problems.node(key, "position must be an object {x, y}")
    else:
        for axis in ("x", "y"):
            if not _is_number(position.get(axis)):
                problems.node(key, f"position.{axis} must be a number")
        for name in position:
            if name not in ("x", "y"):
                problems.node(key, f"position: unknown field '{name}'")
    data = raw.get("data")
    if not isinstance(data, Mapping):
        problems.node(key, "data must be an object")
    elif _too_deep(data, MAX_DEPTH):
        problems.node(key, f"data is nested deeper than {MAX_DEPTH} levels")
    elif node_type in validators:
        for message in _schema_messages(validators[node_type], data, "data"):
            problems.node(key, message)
    common = {name: raw[name] for name in ("retry", "timeout_ms", "on_error") if name in raw}
    for message in _schema_messages(validators["__common__"], common, ""):
        problems.node(key, message)


def _check_node_content(
    raw: Mapping[str, Any],
    key: str,
    node_ids: set[str],
    problems: _Problems,
    tool_exists: Callable[[str], bool],
    agent_exists: Callable[[str], bool] | None,
) -> None:
    data = raw.get("data")
    if not isinstance(data, Mapping) or _too_deep(data, MAX_DEPTH):
        return
    for message in template_syntax_errors(data, path="data"):
        problems.node(key, _short(message))
    own_id = raw.get("id")
    for path, source in iter_templates(data, "data"):
        for reference in sorted(template_references(source)):
            if reference == own_id:
                problems.node(key, f"{path}: a template cannot read the node's own output (nodes.{reference})")
            elif reference not in node_ids:
                problems.node(key, f"{path}: references node '{reference}', which does not exist")
    node_type = raw.get("type")
    if node_type == "tool" and isinstance(data.get("tool"), str) and not tool_exists(data["tool"]):
        problems.node(key, f"data.tool: unknown tool '{data['tool']}'")
    if node_type == "llm":
        tools = data.get("tools")
        for index, name in enumerate(tools if isinstance(tools, list) else []):
            if isinstance(name, str) and not tool_exists(name):
                problems.node(key, f"data.tools[{index}]: unknown tool '{name}'")
        if isinstance(data.get("json_schema"), Mapping):
            try:
                Draft202012Validator.check_schema(data["json_schema"])
            except SchemaError as exc:
                problems.node(key, _short(f"data.json_schema: not a valid JSON Schema: {exc.message}"))
    agent_id = data.get("agent_id") if node_type == "agent" else None
    if agent_exists is not None and isinstance(agent_id, str) and not agent_exists(agent_id):
        problems.node(key, f"data.agent_id: unknown agent '{agent_id}'")
    if node_type == "switch" and isinstance(data.get("cases"), list):
        seen: set[str] = set()
        for index, case in enumerate(data["cases"]):
            label = case.get("label") if isinstance(case, Mapping) else None
            if isinstance(label, str):
                if label in seen:
                    problems.node(key, f"data.cases[{index}].label: duplicate case label '{label}'")
                seen.add(label)


def _check_edge_handle(
    edge_key: str, handle: Any, source: Mapping[str, Any], source_id: str, problems: _Problems
) -> None:
    node_type = source.get("type")
    if get_node_type(node_type) is None:
        return
    handles = node_handles(node_type, source.get("data"))
    listed = ", ".join(f"'{name}'" for name in handles)
    if handle_required(node_type):
        if handle is None:
            problems.edge(edge_key, f"an edge from {node_type} node '{source_id}' must set source_handle to {listed}")
        elif handle not in handles:
            problems.edge(
                edge_key, f"source_handle '{handle}' is not a handle of {node_type} node '{source_id}' ({listed})"
            )
    elif handle not in (None, DEFAULT_HANDLE):
        problems.edge(
            edge_key,
            f"source_handle '{handle}' is not a handle of {node_type} node '{source_id}' (omit it or 'default')",
        )


def validate_workflow(
    nodes: Any,
    edges: Any,
    *,
    tool_exists: Callable[[str], bool],
    agent_exists: Callable[[str], bool] | None = None,
    max_nodes: int | None = None,
    max_edges: int | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Check a graph; raise `ApplicationError("VALIDATION_ERROR")` naming every culprit, else return copies."""
    problems = _Problems()
    if not isinstance(nodes, list):
        problems.add_graph("nodes must be a list")
    if not isinstance(edges, list):
        problems.add_graph("edges must be a list")
    problems.raise_if_any()
    node_limit, edge_limit = _limit("WORKFLOW_MAX_NODES", max_nodes), _limit("WORKFLOW_MAX_EDGES", max_edges)
    if len(nodes) > node_limit:
        problems.add_graph(f"too many nodes: {len(nodes)} (at most {node_limit})")
    if len(edges) > edge_limit:
        problems.add_graph(f"too many edges: {len(edges)} (at most {edge_limit})")
    problems.raise_if_any()

    validators = {name: Draft202012Validator(entry.data_schema()) for name, entry in NODE_TYPES.items()}
    validators["__common__"] = Draft202012Validator(COMMON_FIELDS_SCHEMA)

    by_id: dict[str, Mapping[str, Any]] = {}
    first_index: dict[str, int] = {}
    keyed_nodes: list[tuple[str, Mapping[str, Any]]] = []
    for index, raw in enumerate(nodes):
        key = str(index)
        if not isinstance(raw, Mapping):
            problems.node(key, "must be an object")
            continue
        node_id = raw.get("id")
        if not isinstance(node_id, str) or not NODE_ID_PATTERN.match(node_id):
            problems.node(key, "id must be a string of 1-128 letters, digits, '_' or '-'")
        elif node_id in by_id:
            key = node_id
            problems.node(key, f"duplicate node id '{node_id}' (nodes at index {first_index[node_id]} and {index})")
        else:
            key = node_id
            by_id[node_id] = raw
            first_index[node_id] = index
        _check_node_shape(raw, key, problems, validators)
        keyed_nodes.append((key, raw))
    node_ids = set(by_id)
    for key, raw in keyed_nodes:
        _check_node_content(raw, key, node_ids, problems, tool_exists, agent_exists)

    good_edges: list[EdgeSpec] = []
    good_keys: list[str] = []
    seen_edge_ids: set[str] = set()
    seen_links: dict[tuple[str, str, Any], str] = {}
    for index, raw in enumerate(edges):
        key = str(index)
        if not isinstance(raw, Mapping):
            problems.edge(key, "must be an object")
            continue
        edge_id = raw.get("id")
        if "id" in raw:
            if not isinstance(edge_id, str) or not edge_id or len(edge_id) > MAX_EDGE_ID_CHARS:
                problems.edge(key, f"id must be a non-empty string of at most {MAX_EDGE_ID_CHARS} characters")
            elif edge_id in seen_edge_ids:
                key = edge_id
                problems.edge(key, f"duplicate edge id '{edge_id}'")
            else:
                key = edge_id
                seen_edge_ids.add(edge_id)
        for name in raw:
            if name not in EDGE_FIELDS:
                problems.edge(key, f"unknown field '{name}' (allowed: {', '.join(EDGE_FIELDS)})")
        usable = True
        for end in ("source", "target"):
            value = raw.get(end)
            if not isinstance(value, str):
                problems.edge(key, f"{end} must be a node id")
                usable = False
            elif value not in by_id:
                problems.edge(key, f"{end} '{value}' is not a node of this workflow")
                usable = False
        handle = raw.get("source_handle")
        if handle is not None and not isinstance(handle, str):
            problems.edge(key, "source_handle must be a string")
            usable = False
        if raw.get("target_handle") is not None and not isinstance(raw.get("target_handle"), str):
            problems.edge(key, "target_handle must be a string")
        if not usable:
            continue
        source, target = raw["source"], raw["target"]
        if source == target:
            problems.edge(key, f"edge connects node '{source}' to itself")
            continue
        _check_edge_handle(key, handle, by_id[source], source, problems)
        link = (source, target, handle)
        if link in seen_links:
            problems.edge(key, f"duplicate of edge '{seen_links[link]}'")
            continue
        seen_links[link] = key
        good_edges.append(EdgeSpec(source, target, handle))
        good_keys.append(key)

    cycle = find_cycle(list(by_id), ((edge.source, edge.target) for edge in good_edges))
    if cycle:
        problems.add_graph("the workflow has a cycle: " + " -> ".join(cycle))
    else:
        loop_ids = [node_id for node_id, raw in by_id.items() if raw.get("type") == "loop"]
        bodies = loop_bodies(loop_ids, good_edges)
        for edge_index, message in loop_body_violations(bodies, good_edges):
            problems.edge(good_keys[edge_index], message)

    problems.raise_if_any()
    return copy.deepcopy(nodes), copy.deepcopy(edges)
