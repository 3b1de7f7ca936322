"""The tool-calling loop shared by chat and the workflow `llm` node.

The model answers; when it asks for tools, the offered ones run through the tool registry and
their results go back to it; this repeats for at most `max_rounds` rounds, after which a final
round offers no tools so the model must answer. Callers observe progress through callbacks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from integrations.tools import ToolContext, ToolError, ToolOutcome, tool_registry

from .client import stream_chat
from .types import Completed, LLMRequest, TextDelta, ToolCall, ToolCallsRequested, Usage


@dataclass
class ToolLoopResult:
    """The final answer text (all rounds), summed usage, every tool run, and the messages added."""

    text: str = ""
    usage: Usage = field(default_factory=Usage)
    tool_runs: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    stopped: bool = False
    finish_reason: str = ""


def run_offered_tool(call: ToolCall, offered: list[str], context: ToolContext) -> ToolOutcome:
    """Run one requested tool if it was offered; the model's mistakes come back to it as failed outcomes."""
    if call.name not in offered:
        return ToolOutcome(
            success=False, result=None, error=f"The tool '{call.name}' is not available here.", duration_ms=0
        )
    try:
        return tool_registry.execute(call.name, call.arguments, context)
    except ToolError as exc:
        return ToolOutcome(success=False, result=None, error=exc.message, duration_ms=0)


def run_tool_loop(
    request: LLMRequest,
    *,
    tool_names: list[str],
    context: ToolContext,
    user: Any,
    source: str,
    max_rounds: int,
    stop_event: threading.Event | None = None,
    on_text: Callable[[str], None] | None = None,
    on_tool_call: Callable[[ToolCall], None] | None = None,
    on_tool_result: Callable[[ToolCall, ToolOutcome], None] | None = None,
) -> ToolLoopResult:
    """Run the model with tools until it answers without calling one (or is stopped)."""
    result = ToolLoopResult()
    messages = list(request.messages)
    tools = tool_registry.spec_for_llm(tool_names)
    for round_number in range(max_rounds + 1):
        offered = tools if round_number < max_rounds else []
        calls: list[ToolCall] = []
        text_parts: list[str] = []
        for event in stream_chat(
            replace(request, messages=messages, tools=offered), user=user, source=source, stop_event=stop_event
        ):
            if isinstance(event, TextDelta):
                text_parts.append(event.text)
                if on_text and event.text:
                    on_text(event.text)
            elif isinstance(event, ToolCallsRequested):
                calls = event.calls
            elif isinstance(event, Completed):
                result.usage = result.usage + event.usage
                result.finish_reason = event.finish_reason
                result.stopped = event.finish_reason == "cancelled"
        text = "".join(text_parts)
        result.text += text
        if result.stopped or not calls:
            if text or not calls:
                result.messages.append(
                    {"role": "assistant", "content": text, **({"stopped": True} if result.stopped else {})}
                )
            return result
        assistant_turn = {
            "role": "assistant",
            "content": text,
            "tool_calls": [call.as_message_part() for call in calls],
        }
        messages.append(assistant_turn)
        result.messages.append(assistant_turn)
        for call in calls:
            if on_tool_call:
                on_tool_call(call)
            outcome = run_offered_tool(call, tool_names, context)
            if on_tool_result:
                on_tool_result(call, outcome)
            result.tool_runs.append(
                {
                    "name": call.name,
                    "arguments": call.arguments,
                    "success": outcome.success,
                    "result": outcome.result,
                    "error": outcome.error,
                }
            )
            tool_turn = {"role": "tool", "tool_call_id": call.id, "content": outcome.model_content()}
            messages.append(tool_turn)
            result.messages.append(tool_turn)
            if stop_event is not None and stop_event.is_set():
                result.stopped = True
                return result
    return result
