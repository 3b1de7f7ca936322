"""Runners of the side-effect node types (llm, tool, http_request, agent), injected into the engine.

Each receives a `NodeCall` whose `context` is the `RunContext` of the execution, and returns the
node's output or raises NodeError / NodeCancelled.
"""

from __future__ import annotations

import contextlib
import json
import threading
from dataclasses import dataclass
from typing import Any

import jsonschema
from django.conf import settings

from claraverse.errors import ApplicationError
from claraverse.outbound import DestinationNotAllowed, OutboundError, outbound_request
from integrations.credentials import tool_context_for
from integrations.llm.answers import parse_json_answer
from integrations.llm.tool_loop import run_tool_loop
from integrations.llm.types import LLMRequest
from integrations.tools import ToolError, tool_registry
from workflows.engine import NodeCall, NodeCancelled, NodeError

HTTP_DEFAULT_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class RunContext:
    """What the side-effect runners need to know about the execution they serve."""

    user: Any
    execution: Any  # executions.models.Execution


def _stop_event(call: NodeCall) -> threading.Event:
    event = threading.Event()
    call.cancel_token.add_callback(event.set)
    return event


def run_llm(call: NodeCall) -> dict[str, Any]:
    """The `llm` node: the one LLM client with its tool loop; `json` answers are parsed and schema-checked."""
    data = call.render(dict(call.data))
    context: RunContext = call.context
    messages = []
    if data.get("system_prompt"):
        messages.append({"role": "system", "content": str(data["system_prompt"])})
    messages.append(
        {"role": "user", "content": data["prompt"] if isinstance(data["prompt"], str) else json.dumps(data["prompt"])}
    )
    response_format = data.get("response_format", "text")
    request = LLMRequest(
        model_id=str(data["model"]),
        messages=messages,
        temperature=data.get("temperature"),
        max_tokens=data.get("max_tokens"),
        response_format=response_format,
        json_schema=data.get("json_schema"),
    )
    try:
        result = run_tool_loop(
            request,
            tool_names=list(data.get("tools") or []),
            context=tool_context_for(user=context.user),
            user=context.user,
            source="workflow",
            max_rounds=settings.CHAT_MAX_TOOL_ROUNDS,
            stop_event=_stop_event(call),
        )
    except ApplicationError as exc:
        raise NodeError(exc.message, retryable=exc.code == "PROVIDER_ERROR") from None
    if result.stopped:
        raise NodeCancelled()
    output: dict[str, Any] = {"text": result.text, "usage": result.usage.as_dict(), "tool_calls": result.tool_runs}
    if response_format == "json":
        try:
            output["json"] = parse_json_answer(result.text)
        except ValueError:
            raise NodeError("The model did not answer with valid JSON.") from None
        if data.get("json_schema"):
            try:
                jsonschema.validate(output["json"], data["json_schema"])
            except jsonschema.ValidationError as exc:
                path = "$" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in exc.absolute_path)
                raise NodeError(f"The model's JSON does not match json_schema at {path}: {exc.message}") from None
    return output


def run_tool(call: NodeCall) -> dict[str, Any]:
    """The `tool` node: one registry tool with rendered arguments."""
    context: RunContext = call.context
    arguments = call.render(call.data.get("arguments", {}))
    tool_context = tool_context_for(user=context.user, credential_id=call.data.get("credential_id"))
    try:
        outcome = tool_registry.execute(call.data["tool"], arguments, tool_context)
    except ToolError as exc:
        raise NodeError(exc.message, retryable=False) from None
    if not outcome.success:
        raise NodeError(outcome.error or "The tool failed.")
    return {"result": outcome.result}


def run_http_request(call: NodeCall) -> dict[str, Any]:
    """The `http_request` node, through the outbound guard (public addresses only, capped, timed)."""
    data = call.render(dict(call.data))
    timeout = data.get("timeout_ms", HTTP_DEFAULT_TIMEOUT_MS) / 1000
    remaining = call.time_remaining()
    if remaining is not None:
        timeout = max(0.1, min(timeout, remaining))
    body = data.get("body")
    as_json = isinstance(body, dict | list)
    headers = {str(key): str(value) for key, value in (data.get("headers") or {}).items()}
    query = {str(key): str(value) for key, value in (data.get("query") or {}).items()}
    try:
        response = outbound_request(
            data.get("method", "GET"),
            str(data["url"]),
            headers=headers,
            params=query or None,
            json=body if as_json else None,
            data=None if as_json or body is None else str(body).encode(),
            timeout=timeout,
            total_timeout=timeout,
        )
    except OutboundError as exc:
        raise NodeError(exc.message, retryable=not isinstance(exc, DestinationNotAllowed)) from None
    output: dict[str, Any] = {
        "status": response.status_code,
        "headers": dict(response.headers),
        "body": response.text,
    }
    if "json" in response.headers.get("Content-Type", "").lower():
        with contextlib.suppress(ValueError):
            output["json"] = response.json()
    return output


def run_agent(call: NodeCall) -> Any:
    """The `agent` node: another of the owner's agents as a child execution, run here, depth-limited."""
    from agents.models import Agent

    from .models import ExecutionStatus, ExecutionTrigger
    from .run import execute_execution
    from .services import execution_create

    context: RunContext = call.context
    if context.execution.depth + 1 > settings.WORKFLOW_MAX_AGENT_DEPTH:
        raise NodeError(f"Sub-agents may nest at most {settings.WORKFLOW_MAX_AGENT_DEPTH} deep.", retryable=False)
    agent_id = str(call.render(call.data["agent_id"]))
    agent = Agent.objects.filter(pk=agent_id, user=context.user).first()
    if agent is None:
        raise NodeError(f"Agent '{agent_id[:64]}' not found.", retryable=False)
    child_input = call.render(call.data.get("input", {}))
    if not isinstance(child_input, dict):
        child_input = {"value": child_input}
    try:
        child = execution_create(
            user=context.user,
            agent=agent,
            trigger=ExecutionTrigger.AGENT,
            input=child_input,
            parent=context.execution,
            enqueue=False,
        )
    except ApplicationError as exc:
        raise NodeError(exc.message, retryable=False) from None
    finished = execute_execution(execution_id=child.id, cancel_token=call.cancel_token)
    if finished is None or finished.status == ExecutionStatus.CANCELLED:
        raise NodeCancelled()
    if finished.status != ExecutionStatus.COMPLETED:
        raise NodeError(f"Sub-agent execution {finished.id} failed: {finished.error}", retryable=False)
    return finished.output


SIDE_EFFECT_RUNNERS = {"llm": run_llm, "tool": run_tool, "http_request": run_http_request, "agent": run_agent}
