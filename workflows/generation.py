"""Workflow generation: a model drafts a graph from a description; the draft is validated, not saved.

The model is given the node catalogue (types, data schemas, handles) and the tools it may use,
asked for `{"nodes": [...], "edges": [...]}` as JSON, and its draft is checked by the same
validation as a save. A draft that fails is sent back once with the errors to repair.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from claraverse.errors import ApplicationError
from integrations.llm.answers import parse_json_answer
from integrations.llm.client import complete_chat
from integrations.llm.types import LLMRequest
from integrations.tools import tool_registry

from .catalogue import node_types_public
from .validation import validate_workflow

REPAIR_ROUNDS = 1
GRAPH_SCHEMA = {
    "type": "object",
    "properties": {"nodes": {"type": "array"}, "edges": {"type": "array"}},
    "required": ["nodes", "edges"],
}


def _instructions() -> str:
    catalogue = [
        {key: entry[key] for key in ("type", "description", "data_schema", "handles", "dynamic_handles")}
        for entry in node_types_public()
    ]
    tools = [{"name": tool.name, "description": tool.description} for tool in tool_registry.all()]
    return (
        "You design workflows for an agent platform. Answer with one JSON object "
        '{"nodes": [...], "edges": [...]} and nothing else.\n'
        'A node is {"id", "type", "position": {"x", "y"}, "data"}; ids are short and unique '
        '([A-Za-z0-9_-]). An edge is {"source", "target"} plus "source_handle" when leaving a '
        "condition (true/false), a switch (a case label or default) or a loop (loop/done). Start with one "
        "trigger node and end with one output node. Templates use {{ input.x }}, {{ nodes.<id>.<field> }} "
        "and {{ prev }}. No cycles.\n"
        f"Node types: {json.dumps(catalogue)}\n"
        f"Tools: {json.dumps(tools)}"
    )


def _parse(text: str) -> dict[str, Any]:
    try:
        draft = parse_json_answer(text)
    except ValueError:
        raise ValueError("The answer was not JSON.") from None
    if not isinstance(draft, dict):
        raise ValueError("The answer was not a JSON object.")
    return draft


def workflow_generate(*, agent, description: str, model_id: str | None, user) -> dict[str, Any]:
    """Draft a validated graph for `description`; raises PROVIDER_ERROR if no valid draft came back."""
    from integrations.selectors import recommended_models

    model_id = model_id or agent.model or settings.CHAT_DEFAULT_MODEL or recommended_models()["default"]
    if not model_id:
        raise ApplicationError(
            "VALIDATION_ERROR",
            "No model given and none configured.",
            details={"model": ["Required: no default model is configured."]},
        )
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": _instructions()},
        {"role": "user", "content": description},
    ]
    problem: Any = None
    for _ in range(REPAIR_ROUNDS + 1):
        result = complete_chat(
            LLMRequest(model_id=model_id, messages=messages, response_format="json", json_schema=GRAPH_SCHEMA),
            user=user,
            source="system",
        )
        try:
            draft = _parse(result.text)
            nodes, edges = validate_workflow(
                draft.get("nodes"),
                draft.get("edges"),
                tool_exists=lambda name: tool_registry.get(name) is not None,
            )
            return {"nodes": nodes, "edges": edges, "model": model_id}
        except ValueError as exc:
            problem = str(exc)
        except ApplicationError as exc:
            problem = exc.details or exc.message
        messages += [
            {"role": "assistant", "content": result.text},
            {"role": "user", "content": f"That draft is invalid: {json.dumps(problem)}. Answer with a corrected one."},
        ]
    raise ApplicationError(
        "PROVIDER_ERROR", "The model did not produce a valid workflow.", details={"validation": problem}
    )
