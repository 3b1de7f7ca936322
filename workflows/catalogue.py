"""The node types a workflow can use (CONTRACT §3): what each one's `data` looks like and which handles it offers.

Schemas are JSON Schema Draft 2020-12. They are strict (`additionalProperties: false`) so that a typo
such as `promt` is reported at save time instead of being silently ignored; every type also accepts
an optional `label` and `description` for the builder's own use. Bounds that come from settings
(`WORKFLOW_MAX_LOOP_ITERATIONS`, `WORKFLOW_MAX_DELAY_SECONDS`) are read when a schema is built.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from workflows.engine.compare import OPERATORS, UNARY_OPERATORS
from workflows.engine.graph import CONDITION_HANDLES, DEFAULT_HANDLE, LOOP_HANDLES

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
TRIGGER_TYPES = ("manual", "schedule", "api", "webhook")
DEFAULT_LOOP_ITERATIONS = 100
MAX_SWITCH_CASES = 50

_DEFAULTS = {
    "WORKFLOW_MAX_LOOP_ITERATIONS": 1000,
    "WORKFLOW_MAX_DELAY_SECONDS": 300,
}

# Fields every node may carry beside `data` (CONTRACT §3), as one object schema.
COMMON_FIELDS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "retry": {
            "type": "object",
            "description": "Retry a failed attempt; waits backoff_ms, then doubles it each time (at most 60 s).",
            "properties": {
                "max_attempts": {"type": "integer", "minimum": 1, "maximum": 10},
                "backoff_ms": {"type": "integer", "minimum": 0, "maximum": 60000, "default": 1000},
            },
            "required": ["max_attempts"],
            "additionalProperties": False,
        },
        "timeout_ms": {
            "type": "integer",
            "minimum": 1,
            "maximum": 3600000,
            "description": "Time limit of one attempt, in milliseconds.",
        },
        "on_error": {
            "enum": ["fail", "continue"],
            "default": "fail",
            "description": "`continue` records the failure as the output `{error}` and lets the children run.",
        },
    },
}


def _setting(name: str) -> Any:
    """A WORKFLOW_* setting, or its default outside a configured Django project."""
    try:
        from django.conf import settings

        return getattr(settings, name, _DEFAULTS[name])
    except Exception:  # ImproperlyConfigured when settings are not set up (plain-Python use)
        return _DEFAULTS[name]


def _object(properties: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "$schema": SCHEMA_DIALECT,
        "type": "object",
        "properties": {
            "label": {"type": "string", "maxLength": 200, "description": "Display name in the builder."},
            "description": {"type": "string", "maxLength": 2000, "description": "Notes for people."},
            **properties,
        },
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    schema.update(extra)
    return schema


_TEMPLATE_NOTE = "Strings may contain {{ ... }} templates."
_ANY: dict[str, Any] = {}


def _operator_needs_right(operator_path: str) -> dict[str, Any]:
    """`right` is required unless the operator is unary (is_empty, not_empty, is_true, is_false)."""
    return {
        "if": {"properties": {operator_path: {"not": {"enum": sorted(UNARY_OPERATORS)}}}, "required": [operator_path]},
        "then": {"required": ["right"]},
    }


def _trigger_schema() -> dict[str, Any]:
    return _object(
        {"trigger_type": {"enum": list(TRIGGER_TYPES), "default": "manual", "description": "Informational only."}}
    )


def _llm_schema() -> dict[str, Any]:
    return _object(
        {
            "model": {"type": "string", "minLength": 1, "maxLength": 200},
            "prompt": {"type": "string", "maxLength": 200000, "description": _TEMPLATE_NOTE},
            "system_prompt": {"type": "string", "maxLength": 200000, "description": _TEMPLATE_NOTE},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": 200000},
            "tools": {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "uniqueItems": True,
                "maxItems": 64,
                "description": "Tool names, run in a tool-calling loop.",
            },
            "response_format": {"enum": ["text", "json"], "default": "text"},
            "json_schema": {"type": "object", "description": "With response_format json: the expected shape."},
        },
        ["model", "prompt"],
        dependentSchemas={
            "json_schema": {"required": ["response_format"], "properties": {"response_format": {"const": "json"}}}
        },
    )


def _tool_schema() -> dict[str, Any]:
    return _object(
        {
            "tool": {"type": "string", "minLength": 1, "maxLength": 64},
            "arguments": {"type": "object", "default": {}, "description": _TEMPLATE_NOTE},
            "credential_id": {"type": "string", "minLength": 1, "maxLength": 200},
        },
        ["tool"],
    )


def _http_request_schema() -> dict[str, Any]:
    scalar = {"type": ["string", "number", "boolean"]}
    return _object(
        {
            "method": {"enum": list(HTTP_METHODS)},
            "url": {"type": "string", "minLength": 1, "maxLength": 8192, "description": _TEMPLATE_NOTE},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "query": {
                "type": "object",
                "additionalProperties": {"anyOf": [scalar, {"type": "array", "items": scalar}]},
            },
            "body": {"description": "Any JSON; objects and arrays are sent as JSON. " + _TEMPLATE_NOTE},
            "timeout_ms": {"type": "integer", "minimum": 1, "maximum": 300000},
        },
        ["method", "url"],
    )


def _condition_schema() -> dict[str, Any]:
    return _object(
        {
            "left": {"description": _TEMPLATE_NOTE},
            "operator": {"enum": list(OPERATORS)},
            "right": {"description": "Not used by unary operators. " + _TEMPLATE_NOTE},
        },
        ["left", "operator"],
        **_operator_needs_right("operator"),
    )


def _switch_schema() -> dict[str, Any]:
    case = {
        "type": "object",
        "properties": {
            "label": {"type": "string", "minLength": 1, "maxLength": 100, "not": {"const": DEFAULT_HANDLE}},
            "operator": {"enum": list(OPERATORS), "default": "eq"},
            "right": {"description": _TEMPLATE_NOTE},
        },
        "required": ["label", "operator"],
        "additionalProperties": False,
        **_operator_needs_right("operator"),
    }
    return _object(
        {
            "value": {"description": _TEMPLATE_NOTE},
            "cases": {
                "type": "array",
                "items": case,
                "minItems": 1,
                "maxItems": MAX_SWITCH_CASES,
                "description": "Checked in order; the first match picks its label, none picks 'default'. "
                "Labels are unique.",
            },
        },
        ["value", "cases"],
    )


def _transform_schema() -> dict[str, Any]:
    return _object({"output": {"description": "Any JSON value. " + _TEMPLATE_NOTE}}, ["output"])


def _loop_schema() -> dict[str, Any]:
    return _object(
        {
            "items": {
                "type": "string",
                "minLength": 1,
                "description": "A template giving a list, e.g. {{ nodes.fetch.json.results }}.",
            },
            "max_iterations": {
                "type": "integer",
                "minimum": 1,
                "maximum": _setting("WORKFLOW_MAX_LOOP_ITERATIONS"),
                "default": DEFAULT_LOOP_ITERATIONS,
            },
        },
        ["items"],
    )


def _delay_schema() -> dict[str, Any]:
    return _object(
        {"seconds": {"type": "number", "minimum": 0, "maximum": _setting("WORKFLOW_MAX_DELAY_SECONDS")}},
        ["seconds"],
    )


def _agent_schema() -> dict[str, Any]:
    return _object(
        {
            "agent_id": {"type": "string", "pattern": "^agent_[A-Za-z0-9_-]+$", "maxLength": 200},
            "input": {"description": "The sub-execution's input. " + _TEMPLATE_NOTE},
        },
        ["agent_id"],
    )


def _output_schema() -> dict[str, Any]:
    return _object({"value": {"description": "The execution output; without it, the node's input. " + _TEMPLATE_NOTE}})


@dataclass(frozen=True)
class NodeType:
    """One node type of the catalogue."""

    type: str
    display_name: str
    description: str
    category: str
    icon: str
    output: str
    schema_factory: Callable[[], dict[str, Any]]
    handles: tuple[str, ...] = (DEFAULT_HANDLE,)
    dynamic_handles: str | None = None  # where extra handles come from (switch case labels)

    def data_schema(self) -> dict[str, Any]:
        """A fresh JSON Schema of this type's `data`."""
        return self.schema_factory()


NODE_TYPES: dict[str, NodeType] = {
    node_type.type: node_type
    for node_type in (
        NodeType(
            "trigger", "Trigger", "Starts the workflow; outputs the execution input.", "triggers", "zap",
            "the execution input", _trigger_schema,
        ),
        NodeType(
            "llm", "LLM", "Asks a model, optionally letting it call tools.", "ai", "brain",
            "{text, json?, usage, tool_calls}", _llm_schema,
        ),
        NodeType(
            "tool", "Tool", "Runs one tool from the tool registry.", "integrations", "wrench",
            "{result}", _tool_schema,
        ),
        NodeType(
            "http_request", "HTTP Request", "Calls an HTTP API on the public internet.", "integrations", "globe",
            "{status, headers, body, json?}", _http_request_schema,
        ),
        NodeType(
            "condition", "Condition", "Takes the true or the false branch.", "logic", "git-branch",
            "{result: bool}", _condition_schema, handles=CONDITION_HANDLES,
        ),
        NodeType(
            "switch", "Switch", "Takes the branch of the first matching case, else default.", "logic", "split",
            "{branch}", _switch_schema, handles=(DEFAULT_HANDLE,), dynamic_handles="cases[].label",
        ),
        NodeType(
            "transform", "Transform", "Shapes data with templates.", "data", "shuffle",
            "the rendered value", _transform_schema,
        ),
        NodeType(
            "loop", "Loop", "Runs the 'loop' branch once per item, then the 'done' branch.", "logic", "repeat",
            "{items: [per-item results]}", _loop_schema, handles=LOOP_HANDLES,
        ),
        NodeType(
            "delay", "Delay", "Waits, then passes its input on.", "logic", "clock",
            "its input", _delay_schema,
        ),
        NodeType(
            "agent", "Agent", "Runs another of your agents as a sub-workflow.", "ai", "bot",
            "that execution's output", _agent_schema,
        ),
        NodeType(
            "output", "Output", "Shapes the execution output.", "output", "flag",
            "the execution output", _output_schema,
        ),
    )
}  # fmt: skip


def get_node_type(name: Any) -> NodeType | None:
    """The catalogue entry for a type name, or None."""
    return NODE_TYPES.get(name) if isinstance(name, str) else None


def data_schema(node_type: str) -> dict[str, Any]:
    """The JSON Schema of one type's `data`; raises KeyError for an unknown type."""
    return NODE_TYPES[node_type].data_schema()


def node_handles(node_type: str, data: Any) -> list[str]:
    """The source handles a node offers: condition true/false, switch its labels + default, loop loop/done.

    Every other node has one unnamed output; an edge from it may omit `source_handle` or say "default".
    """
    entry = NODE_TYPES.get(node_type)
    if entry is None:
        return []
    if node_type == "switch":
        cases = data.get("cases") if isinstance(data, Mapping) else None
        labels = [
            case["label"] for case in cases or [] if isinstance(case, Mapping) and isinstance(case.get("label"), str)
        ]
        return [*labels, DEFAULT_HANDLE]
    return list(entry.handles)


def handle_required(node_type: str) -> bool:
    """Whether an edge from this type must name a `source_handle` (branching types and loop)."""
    return node_type in ("condition", "switch", "loop")


def node_types_public() -> list[dict[str, Any]]:
    """The node registry for the builder: one entry per type, schemas included."""
    common = copy.deepcopy(COMMON_FIELDS_SCHEMA["properties"])
    return [
        {
            "type": entry.type,
            "display_name": entry.display_name,
            "description": entry.description,
            "category": entry.category,
            "icon": entry.icon,
            "output": entry.output,
            "data_schema": entry.data_schema(),
            "handles": list(entry.handles),
            "dynamic_handles": entry.dynamic_handles,
            "handle_required": handle_required(entry.type),
            "common_fields": copy.deepcopy(common),
        }
        for entry in NODE_TYPES.values()
    ]
