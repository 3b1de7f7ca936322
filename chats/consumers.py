"""`/ws/chat`: streaming chat with tool calls (API.md Chat WebSocket, CONTRACT §12)."""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from autobahn.exception import Disconnected
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import close_old_connections
from rest_framework import serializers

from accounts.quotas import quota_consume
from claraverse.errors import ApplicationError
from claraverse.ids import new_id
from claraverse.ratelimit import consume
from claraverse.serializers import StrictBooleanField, StrictCharField, StrictFloatField, StrictRegexField
from claraverse.websocket import JsonFrameConsumer, validated_payload

from .turns import ChatTurn, run_chat_turn

logger = logging.getLogger("claraverse.chat")

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
_DONE = object()


def generation_executor() -> ThreadPoolExecutor:
    """The threads chat generations run in (bounded by CHAT_MAX_CONCURRENT_GENERATIONS)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=settings.CHAT_MAX_CONCURRENT_GENERATIONS, thread_name_prefix="chat-generation"
            )
        return _executor


class ChatFrameSerializer(serializers.Serializer):
    """The payload of a `chat` frame; each field takes only its own JSON type (no `1` for `"1"` or `true`)."""

    conversation_id = StrictRegexField(r"^[A-Za-z0-9_.:-]{1,200}$", required=False)
    message = StrictCharField(max_length=32_000, trim_whitespace=False)
    model = StrictCharField(max_length=200, required=False)
    agent_id = StrictCharField(max_length=64, required=False)
    tools = serializers.ListField(child=StrictCharField(max_length=100), max_length=64, required=False)
    temperature = StrictFloatField(min_value=0, max_value=2, required=False)
    stream = StrictBooleanField(required=False, default=True)

    def validate_message(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("Must not be empty.")
        return value


class StopFrameSerializer(serializers.Serializer):
    conversation_id = StrictCharField(max_length=200)


def resolve_turn(user, data: dict, conversation_id: str) -> ChatTurn:
    """Apply the agent (if any) and defaults to a validated `chat` payload."""
    from agents.selectors import agent_get
    from integrations.selectors import recommended_models

    model_id = data.get("model", "")
    tool_names = list(data.get("tools", []))
    system_prompt, temperature = "", data.get("temperature")
    if data.get("agent_id"):
        agent = agent_get(user=user, agent_id=data["agent_id"])
        model_id = model_id or agent.model
        tool_names = list(dict.fromkeys([*agent.tools, *tool_names]))
        system_prompt = agent.system_prompt
        temperature = agent.temperature if temperature is None else temperature
    model_id = model_id or settings.CHAT_DEFAULT_MODEL or recommended_models()["default"] or ""
    if not model_id:
        raise ApplicationError(
            "VALIDATION_ERROR",
            "model: No model given and none configured.",
            details={"model": ["Required: no default model is configured."]},
        )
    return ChatTurn(
        user=user,
        conversation_id=conversation_id,
        message=data["message"],
        model_id=model_id,
        tool_names=tool_names,
        system_prompt=system_prompt,
        temperature=temperature,
        stream=data["stream"],
    )


def _coalesced(chunk: dict, pending: collections.deque) -> dict:
    """`chunk` with the text of the stream chunks queued right behind it appended (taken off the queue).

    Only when the socket falls behind the provider do chunks queue up; sending them as one frame then
    lets it catch up instead of falling further behind. Clients append `content` either way.
    """
    if not pending or pending[0][0] != "stream" or pending[0][1].get("done"):
        return chunk
    parts = [chunk["content"]]
    while pending and pending[0][0] == "stream" and not pending[0][1].get("done"):
        parts.append(pending.popleft()[1]["content"])
    return {**chunk, "content": "".join(parts)}


def _run_in_thread(user, data: dict, conversation_id: str, emit, stop_event: threading.Event) -> None:
    """Resolve and run one turn; every failure becomes an `error` frame. Always ends with _DONE."""
    close_old_connections()
    try:
        run_chat_turn(resolve_turn(user, data, conversation_id), emit=emit, stop_event=stop_event)
    except ApplicationError as exc:
        payload = {"conversation_id": conversation_id, "error": exc.message, "code": exc.code}
        if exc.details:
            payload["details"] = exc.details
        emit("error", payload)
    except Exception:
        logger.exception("chat generation failed")
        emit("error", {"conversation_id": conversation_id, "error": "Internal server error.", "code": "INTERNAL_ERROR"})
    finally:
        close_old_connections()
        emit(_DONE, {})


class ChatConsumer(JsonFrameConsumer):
    """Streams answers for `chat` frames; several conversations may stream at once on one socket."""

    frame_handlers = {**JsonFrameConsumer.frame_handlers, "chat": "on_chat", "stop": "on_stop"}

    async def on_authenticated(self) -> None:
        self.generations: dict[str, tuple[asyncio.Task, threading.Event]] = {}

    def error_context(self, payload: dict) -> dict:
        conversation_id = payload.get("conversation_id")
        return {"conversation_id": conversation_id} if isinstance(conversation_id, str) else {}

    async def on_chat(self, payload: dict) -> None:
        data = validated_payload(ChatFrameSerializer, payload)
        conversation_id = data.get("conversation_id") or new_id("chat")
        if conversation_id in self.generations:
            raise ApplicationError("CONFLICT", "This conversation is already generating; stop it or wait.")
        decision = await sync_to_async(consume)("chat", str(self.user.pk), settings.RATE_LIMIT_AUTHENTICATED)
        if not decision.allowed:
            raise ApplicationError("RATE_LIMIT", "Rate limit exceeded.", details={"retry_after": decision.retry_after})
        await database_sync_to_async(quota_consume)(user=self.user, limit_name="messages_per_day")
        stop_event = threading.Event()
        task = asyncio.create_task(self._generate(conversation_id, data, stop_event))
        self.generations[conversation_id] = (task, stop_event)

    async def _generate(self, conversation_id: str, data: dict, stop_event: threading.Event) -> None:
        loop = asyncio.get_running_loop()
        pending: collections.deque = collections.deque()
        wake = asyncio.Event()

        def emit(frame_type, frame_payload) -> None:
            # Runs in the generation thread. Waking the event loop costs a cross-thread call, so it
            # is only done when the queue goes from empty to non-empty; the loop drains in batches.
            pending.append((frame_type, frame_payload))
            if len(pending) == 1:
                loop.call_soon_threadsafe(wake.set)

        future = loop.run_in_executor(
            generation_executor(), _run_in_thread, self.user, data, conversation_id, emit, stop_event
        )
        try:
            finished = closed = False
            while not finished:
                wake.clear()
                while pending:
                    frame_type, frame_payload = pending.popleft()
                    if frame_type is _DONE:
                        finished = True
                        break
                    if frame_type == "error" or frame_payload.get("done"):
                        # Free the conversation before the client can read its last frame and send
                        # the next message, which would otherwise race into a CONFLICT.
                        self._release(conversation_id)
                    elif frame_type == "stream":
                        frame_payload = _coalesced(frame_payload, pending)
                    if closed:
                        continue
                    try:
                        await self.send_frame(frame_type, frame_payload)
                    except Disconnected:
                        # The client left mid-answer: stop generating (what was generated is still saved)
                        # and send nothing more.
                        closed = True
                        stop_event.set()
                if not finished:
                    await wake.wait()
            await future
        finally:
            self._release(conversation_id)

    def _release(self, conversation_id: str) -> None:
        # Only this task's entry: a newer generation of the same conversation may already be registered.
        entry = self.generations.get(conversation_id)
        if entry is not None and entry[0] is asyncio.current_task():
            del self.generations[conversation_id]

    async def on_stop(self, payload: dict) -> None:
        conversation_id = validated_payload(StopFrameSerializer, payload)["conversation_id"]
        generation = self.generations.get(conversation_id)
        if generation is None:
            raise ApplicationError("NOT_FOUND", "No generation in progress for this conversation.")
        generation[1].set()

    async def disconnect(self, code):
        # Closing the socket stops its generations; what was generated so far is still saved.
        for _task, stop_event in getattr(self, "generations", {}).values():
            stop_event.set()
        await super().disconnect(code)
