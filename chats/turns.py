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
from django.db import connection

from claraverse.errors import ApplicationError
from integrations.credentials import tool_context_for
from integrations.llm.tool_loop import run_tool_loop
from integrations.llm.types import LLMRequest
from integrations.models import LLMModel
from integrations.tools import tool_registry
from memories.services import memory_prompt_for_chat

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
    tool_names = turn.tool_names if (model is None or model.supports_tools) else []

    user_message = {"role": "user", "content": turn.message}
    prompt: list[dict[str, Any]] = [{"role": "system", "content": turn.system_prompt}] if turn.system_prompt else []
    memories = memory_prompt_for_chat(user=turn.user)
    if memories:
        prompt.append({"role": "system", "content": memories})
    history = services.conversation_history(user=turn.user, conversation_id=turn.conversation_id)
    prompt += [*history_window(history, history_budget(model)), user_message]
    conversation = {"conversation_id": turn.conversation_id}
    # A stream can last minutes: give the pooled connection back instead of holding it idle meanwhile.
    connection.close()

    def on_text(text: str) -> None:
        if turn.stream:
            emit("stream", {**conversation, "content": text, "done": False})

    def on_tool_call(call) -> None:
        emit("tool_call", {**conversation, "tool": call.name, "arguments": call.arguments, "status": "executing"})

    def on_tool_result(call, outcome) -> None:
        emit(
            "tool_result",
            {
                **conversation,
                "tool": call.name,
                "result": outcome.result if outcome.success else outcome.error,
                "status": "completed" if outcome.success else "failed",
            },
        )

    result = run_tool_loop(
        LLMRequest(model_id=turn.model_id, messages=prompt, temperature=turn.temperature),
        tool_names=tool_names,
        context=tool_context_for(user=turn.user),
        user=turn.user,
        source="chat",
        max_rounds=settings.CHAT_MAX_TOOL_ROUNDS,
        stop_event=stop_event,
        on_text=on_text,
        on_tool_call=on_tool_call,
        on_tool_result=on_tool_result,
    )
    services.conversation_append(
        user=turn.user,
        conversation_id=turn.conversation_id,
        messages=[user_message, *result.messages],
        model=turn.model_id,
    )
    final = {
        **conversation,
        "content": "" if turn.stream else result.text,
        "done": True,
        "usage": result.usage.as_dict(),
    }
    if result.stopped:
        final["stopped"] = True
    emit("stream", final)
