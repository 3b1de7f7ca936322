"""One chat turn: history in, streamed answer and tool runs out, history saved.

Plain synchronous Python, run by the chat consumer in a worker thread. It speaks to the socket
only through `emit(frame_type, payload)`, so it knows nothing of Channels.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from claraverse.errors import ApplicationError
from integrations.llm.client import stream_chat
from integrations.llm.types import Completed, LLMRequest, TextDelta, ToolCall, ToolCallsRequested, Usage
from integrations.models import LLMModel
from integrations.tools import ToolContext, ToolError, ToolOutcome, tool_registry

from . import services

logger = logging.getLogger("claraverse.chat")

Emit = Callable[[str, dict[str, Any]], None]
CHARS_PER_TOKEN = 4  # a rough, provider-neutral estimate, only used to budget history
LLM_ROLES = {"system", "user", "assistant", "tool"}


@dataclass
class ChatTurn:
    """Everything one `chat` frame asks for, resolved (agent settings already applied)."""

    user: Any
    conversation_id: str
    message: str
    model_id: str
    tool_names: list[str] = field(default_factory=list)
    system_prompt: str = ""
    temperature: float | None = None
    stream: bool = True


def estimate_tokens(message: dict[str, Any]) -> int:
    """A rough token count of one message (content plus any tool-call arguments)."""
    size = len(message.get("content") or "")
    for call in message.get("tool_calls") or []:
        size += len(json.dumps(call.get("arguments", {}))) + len(call.get("name", ""))
    return size // CHARS_PER_TOKEN + 4


def _as_llm_message(message: dict[str, Any]) -> dict[str, Any] | None:
    # Stored chats may come from clients (chat sync) with other shapes; only these reach a model.
    if message.get("role") not in LLM_ROLES or not isinstance(message.get("content", ""), str):
        return None
    converted = {"role": message["role"], "content": message.get("content") or ""}
    if message.get("tool_calls"):
        converted["tool_calls"] = message["tool_calls"]
    if message.get("tool_call_id"):
        converted["tool_call_id"] = message["tool_call_id"]
    return converted


def history_window(messages: list[dict[str, Any]], budget_tokens: int) -> list[dict[str, Any]]:
    """The most recent messages that fit the budget, never starting with an orphaned tool result."""
    usable = [converted for message in messages if (converted := _as_llm_message(message)) is not None]
    kept: list[dict[str, Any]] = []
    used = 0
    for message in reversed(usable):
        cost = estimate_tokens(message)
        if used + cost > budget_tokens:
            break
        kept.append(message)
        used += cost
    kept.reverse()
    while kept and kept[0]["role"] == "tool":
        kept.pop(0)
    return kept


def history_budget(model: LLMModel | None) -> int:
    """CHAT_HISTORY_TOKEN_BUDGET, but never more than 60% of the model's context window."""
    budget = settings.CHAT_HISTORY_TOKEN_BUDGET
    if model is not None:
        budget = min(budget, int(model.context_length * 0.6))
    return max(budget, 256)


def _run_tool(call: ToolCall, offered: list[str], context: ToolContext) -> ToolOutcome:
    # Whatever the model asks, only offered tools run; its mistakes go back to it as failed results.
    if call.name not in offered:
        return ToolOutcome(
            success=False, result=None, error=f"The tool '{call.name}' is not available here.", duration_ms=0
        )
    try:
        return tool_registry.execute(call.name, call.arguments, context)
    except ToolError as exc:
        return ToolOutcome(success=False, result=None, error=exc.message, duration_ms=0)


def run_chat_turn(turn: ChatTurn, *, emit: Emit, stop_event: threading.Event) -> None:
    """Answer one user message: stream text, run requested tools in a bounded loop, save history.

    Emits `stream` frames (and `tool_call`/`tool_result` around each tool run), then one final
    `stream` frame with `done: true` and the summed usage (`stopped: true` after a stop). Errors
    are raised as ApplicationError for the caller to turn into an `error` frame.
    """
    unknown = [name for name in turn.tool_names if tool_registry.get(name) is None]
    if unknown:
        raise ApplicationError("VALIDATION_ERROR", f"Unknown tools: {', '.join(unknown)}.", details={"tools": unknown})
    model = LLMModel.objects.filter(pk=turn.model_id).first()
    tools = tool_registry.spec_for_llm(turn.tool_names) if (model is None or model.supports_tools) else []

    user_message = {"role": "user", "content": turn.message}
    prompt: list[dict[str, Any]] = [{"role": "system", "content": turn.system_prompt}] if turn.system_prompt else []
    history = services.conversation_history(user=turn.user, conversation_id=turn.conversation_id)
    prompt += [*history_window(history, history_budget(model)), user_message]

    new_messages: list[dict[str, Any]] = [user_message]
    usage = Usage()
    answer_parts: list[str] = []
    stopped = False
    context = ToolContext(user=turn.user)
    for round_number in range(settings.CHAT_MAX_TOOL_ROUNDS + 1):
        # The last round offers no tools, so a model that keeps calling them still answers.
        offered = tools if round_number < settings.CHAT_MAX_TOOL_ROUNDS else []
        request = LLMRequest(model_id=turn.model_id, messages=prompt, tools=offered, temperature=turn.temperature)
        text_parts: list[str] = []
        calls: list[ToolCall] = []
        for event in stream_chat(request, user=turn.user, source="chat", stop_event=stop_event):
            if isinstance(event, TextDelta):
                text_parts.append(event.text)
                if turn.stream and event.text:
                    emit("stream", {"conversation_id": turn.conversation_id, "content": event.text, "done": False})
            elif isinstance(event, ToolCallsRequested):
                calls = event.calls
            elif isinstance(event, Completed):
                usage = usage + event.usage
                stopped = event.finish_reason == "cancelled"
        text = "".join(text_parts)
        answer_parts.append(text)
        if stopped or not calls:
            if text or not calls:
                new_messages.append({"role": "assistant", "content": text, **({"stopped": True} if stopped else {})})
            break
        assistant_turn = {"role": "assistant", "content": text, "tool_calls": [c.as_message_part() for c in calls]}
        prompt.append(assistant_turn)
        new_messages.append(assistant_turn)
        for call in calls:
            emit(
                "tool_call",
                {
                    "conversation_id": turn.conversation_id,
                    "tool": call.name,
                    "arguments": call.arguments,
                    "status": "executing",
                },
            )
            outcome = _run_tool(call, turn.tool_names, context)
            emit(
                "tool_result",
                {
                    "conversation_id": turn.conversation_id,
                    "tool": call.name,
                    "result": outcome.result if outcome.success else outcome.error,
                    "status": "completed" if outcome.success else "failed",
                },
            )
            tool_turn = {"role": "tool", "tool_call_id": call.id, "content": outcome.model_content()}
            prompt.append(tool_turn)
            new_messages.append(tool_turn)
            if stop_event.is_set():
                stopped = True
                break
        if stopped:
            break

    services.conversation_append(
        user=turn.user, conversation_id=turn.conversation_id, messages=new_messages, model=turn.model_id
    )
    final = {
        "conversation_id": turn.conversation_id,
        "content": "" if turn.stream else "".join(answer_parts),
        "done": True,
        "usage": usage.as_dict(),
    }
    if stopped:
        final["stopped"] = True
    emit("stream", final)
