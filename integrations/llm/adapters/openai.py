"""OpenAI chat completions: OpenAI itself, OpenAI-compatible servers and Ollama (through its `/v1` API)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from integrations.llm.adapters.base import (
    AdapterEvent,
    HttpCall,
    OutputStarted,
    ProviderAdapter,
    ProviderFailure,
    StreamEnd,
    ToolCallBuffer,
    bad_response,
    iter_sse,
    load_json,
    parse_arguments,
    provider_error_message,
)
from integrations.llm.types import LLMRequest, TextDelta, ToolCall, ToolCallsRequested, Usage

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
OLLAMA_DEFAULT_BASE_URL = "http://localhost:11434"

FINISH_REASONS = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls"}


def openai_base_url(provider_type: str, base_url: str) -> str:
    """The API base that `/chat/completions` and `/models` are appended to, for each OpenAI-like type."""
    base = (base_url or "").strip().rstrip("/")
    if provider_type == "openai":
        base = base or OPENAI_DEFAULT_BASE_URL
        # "https://api.openai.com" (no path) is a common way to type it; the API lives under /v1.
        return base if re.search(r"//[^/]+/.", base) else f"{base}/v1"
    if provider_type == "ollama":
        base = (base or OLLAMA_DEFAULT_BASE_URL).removesuffix("/api")
        return base if base.endswith("/v1") else f"{base}/v1"
    # OpenAI-compatible: the admin's base as typed, minus an endpoint pasted along with it.
    return base.removesuffix("/chat/completions")


def _tool_call_part(call: dict[str, Any]) -> dict[str, Any]:
    arguments = call.get("arguments", {})
    return {
        "id": call.get("id", ""),
        "type": "function",
        "function": {
            "name": call.get("name", ""),
            "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
        },
    }


def convert_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Neutral messages to OpenAI's: tool calls become `function` parts with JSON-string arguments."""
    converted = []
    for message in messages:
        role = message.get("role", "user")
        out: dict[str, Any] = {"role": role, "content": message.get("content") or ""}
        if role == "assistant" and message.get("tool_calls"):
            out["tool_calls"] = [_tool_call_part(call) for call in message["tool_calls"]]
            # OpenAI wants null, not "", for an assistant turn that only called tools.
            out["content"] = message.get("content") or None
        if role == "tool":
            out["tool_call_id"] = message.get("tool_call_id", "")
        converted.append(out)
    return converted


def _schema_name(schema: dict[str, Any]) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title") or "response"))[:64]
    return name or "response"


class OpenAIAdapter(ProviderAdapter):
    """OpenAI chat completions over SSE (`data: {...}` lines ending with `data: [DONE]`)."""

    def __init__(self, base_url: str, api_key: str, *, provider_type: str = "openai"):
        super().__init__(openai_base_url(provider_type, base_url), api_key)
        self.provider_type = provider_type

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def chat_call(self, request: LLMRequest, model_name: str, *, stream: bool) -> HttpCall:
        """POST {base}/chat/completions."""
        body: dict[str, Any] = {"model": model_name, "messages": convert_messages(request.messages), "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                }
                for t in request.tools
            ]
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            # OpenAI's newer models refuse `max_tokens`; compatible servers and Ollama only know `max_tokens`.
            body["max_completion_tokens" if self.provider_type == "openai" else "max_tokens"] = request.max_tokens
        if request.response_format == "json":
            body["response_format"] = (
                {
                    "type": "json_schema",
                    "json_schema": {"name": _schema_name(request.json_schema), "schema": request.json_schema},
                }
                if request.json_schema
                else {"type": "json_object"}
            )
        headers = {**self._headers(), "Accept": "text/event-stream" if stream else "application/json"}
        return HttpCall("POST", f"{self.base_url}/chat/completions", headers, body)

    def parse_stream(self, lines: Iterable[str]) -> Iterator[AdapterEvent]:
        """Text deltas as they come; tool-call deltas assembled per `index`; usage from the last chunk."""
        calls: dict[int, ToolCallBuffer] = {}
        finish_reason: str | None = None
        usage: Usage | None = None
        started = done = False
        for _, data in iter_sse(lines):
            if data.strip() == "[DONE]":
                done = True
                break
            chunk = load_json(data, "a stream chunk")
            if not isinstance(chunk, dict):
                raise bad_response("a stream chunk is not an object")
            if "error" in chunk:
                # Mid-stream errors (e.g. an overloaded server) come as a chunk of their own.
                message = provider_error_message(chunk) or "the provider reported an error mid-stream"
                raise ProviderFailure(message, code="stream_error", retryable=True)
            if isinstance(chunk.get("usage"), dict):
                usage = _usage(chunk["usage"]) or usage
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                text = delta.get("content")
                if text:
                    if not started:
                        started = True
                        yield OutputStarted()
                    yield TextDelta(text)
                for part in delta.get("tool_calls") or []:
                    if not started:
                        started = True
                        yield OutputStarted()
                    _add_tool_delta(calls, part)
                if choice.get("finish_reason"):
                    finish_reason = choice["finish_reason"]
        if not done and finish_reason is None:
            raise ProviderFailure(
                "the stream ended before the answer was complete", code="stream_incomplete", retryable=True
            )
        built = [calls[index].build() for index in sorted(calls)]
        if built:
            yield ToolCallsRequested(built)
        yield StreamEnd(_finish(finish_reason, bool(built)), usage)

    def parse_response(self, body: Any) -> Iterator[AdapterEvent]:
        """The events of a whole chat.completion object."""
        if not isinstance(body, dict) or not isinstance(body.get("choices"), list) or not body["choices"]:
            raise bad_response("no choices in the answer")
        choice = body["choices"][0]
        message = choice.get("message") or {}
        text = message.get("content")
        calls = [
            ToolCall(
                id=part.get("id") or f"call_{index}",
                name=(part.get("function") or {}).get("name", ""),
                arguments=parse_arguments((part.get("function") or {}).get("arguments")),
                raw_arguments=_raw(part),
            )
            for index, part in enumerate(message.get("tool_calls") or [])
        ]
        if text or calls:
            yield OutputStarted()
        if isinstance(text, str) and text:
            yield TextDelta(text)
        if calls:
            yield ToolCallsRequested(calls)
        usage = _usage(body["usage"]) if isinstance(body.get("usage"), dict) else None
        yield StreamEnd(_finish(choice.get("finish_reason"), bool(calls)), usage)

    def models_call(self, after: str | None = None) -> HttpCall:
        """GET {base}/models."""
        return HttpCall("GET", f"{self.base_url}/models", {**self._headers(), "Accept": "application/json"})

    def parse_models(self, body: Any) -> tuple[list[dict[str, str]], str | None]:
        """`data[].id` (OpenAI has no display names)."""
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise bad_response("the model list has no data")
        models = [
            {"id": str(item["id"]), "display_name": str(item["id"])}
            for item in body["data"]
            if isinstance(item, dict) and item.get("id")
        ]
        return models, None


def _add_tool_delta(calls: dict[int, ToolCallBuffer], part: dict[str, Any]) -> None:
    index = part.get("index")
    if not isinstance(index, int):
        # Some compatible servers omit `index`: a new id starts a new call, anything else continues the last one.
        known = {buffer.id for buffer in calls.values()}
        index = len(calls) if (part.get("id") and part["id"] not in known) or not calls else max(calls)
    buffer = calls.setdefault(index, ToolCallBuffer())
    if part.get("id"):
        buffer.id = part["id"]
    function = part.get("function") or {}
    if function.get("name"):
        buffer.name = function["name"]
    arguments = function.get("arguments")
    if isinstance(arguments, dict):  # Ollama has been seen sending an object instead of a string
        arguments = json.dumps(arguments)
    if arguments:
        buffer.argument_parts.append(arguments)


def _raw(part: dict[str, Any]) -> str:
    arguments = (part.get("function") or {}).get("arguments", "")
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def _usage(data: dict[str, Any]) -> Usage | None:
    prompt, completion = data.get("prompt_tokens"), data.get("completion_tokens")
    if not isinstance(prompt, int) and not isinstance(completion, int):
        return None
    return Usage(prompt_tokens=int(prompt or 0), completion_tokens=int(completion or 0))


def _finish(reason: str | None, has_calls: bool) -> str:
    # Ollama and some compatible servers say "stop" even when the answer is tool calls.
    if has_calls:
        return "tool_calls"
    return FINISH_REASONS.get(reason or "stop", reason or "stop")
