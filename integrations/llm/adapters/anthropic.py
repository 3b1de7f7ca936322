"""Anthropic Messages API (`POST /v1/messages`), streamed as typed SSE events."""

from __future__ import annotations

import json
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
    json_instruction,
    load_json,
    parse_arguments,
    provider_error_message,
)
from integrations.llm.types import LLMRequest, TextDelta, ToolCall, ToolCallsRequested, Usage

ANTHROPIC_DEFAULT_BASE_URL = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"
# The Messages API requires max_tokens; this is used when the request sets none.
DEFAULT_MAX_TOKENS = 4096
MODELS_PAGE_SIZE = 1000

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# Error types inside a stream that are worth another attempt (the same as HTTP 529/500 would be).
RETRYABLE_STREAM_ERRORS = {"overloaded_error", "api_error", "rate_limit_error"}


def anthropic_base_url(base_url: str) -> str:
    """The origin the `/v1/...` paths are appended to (a typed `/v1` suffix is tolerated)."""
    base = (base_url or "").strip().rstrip("/") or ANTHROPIC_DEFAULT_BASE_URL
    return base.removesuffix("/v1")


def _text(content: Any) -> str:
    if content is None:
        return ""
    return content if isinstance(content, str) else json.dumps(content)


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    role = message.get("role", "user")
    content = message.get("content")
    if role == "tool":
        return [{"type": "tool_result", "tool_use_id": message.get("tool_call_id", ""), "content": _text(content)}]
    if isinstance(content, list):  # already content blocks
        return list(content)
    # Anthropic refuses empty text blocks, so an empty text adds nothing.
    blocks: list[dict[str, Any]] = [{"type": "text", "text": _text(content)}] if _text(content) else []
    if role == "assistant":
        for call in message.get("tool_calls") or []:
            arguments = call.get("arguments", {})
            blocks.append(
                {
                    "type": "tool_use",
                    "id": call.get("id", ""),
                    "name": call.get("name", ""),
                    "input": parse_arguments(arguments) if isinstance(arguments, str) else arguments,
                }
            )
    return blocks


def convert_messages(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Neutral messages to Anthropic's: (system text, messages) with tool results as user `tool_result` blocks.

    Consecutive turns of one role are merged, which puts the results of parallel tool calls in one user turn
    as the API requires.
    """
    system_parts: list[str] = []
    converted: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role", "user")
        if role == "system":
            if _text(message.get("content")):
                system_parts.append(_text(message.get("content")))
            continue
        api_role = "assistant" if role == "assistant" else "user"
        blocks = _blocks(message)
        if not blocks:
            continue
        if converted and converted[-1]["role"] == api_role:
            converted[-1]["content"].extend(blocks)
        else:
            converted.append({"role": api_role, "content": blocks})
    for message in converted:
        # A lone text block reads better (and logs smaller) as a plain string; the API accepts both.
        if len(message["content"]) == 1 and message["content"][0].get("type") == "text":
            message["content"] = message["content"][0]["text"]
    return "\n\n".join(system_parts), converted


class AnthropicAdapter(ProviderAdapter):
    """Anthropic Messages: `x-api-key` + `anthropic-version` headers, system prompt apart, `tool_use` blocks."""

    def __init__(self, base_url: str, api_key: str):
        super().__init__(anthropic_base_url(base_url), api_key)

    def _headers(self) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if self.api_key:
            headers["x-api-key"] = self.api_key
        return headers

    def chat_call(self, request: LLMRequest, model_name: str, *, stream: bool) -> HttpCall:
        """POST {base}/v1/messages."""
        system, messages = convert_messages(request.messages)
        if request.response_format == "json":
            # No native JSON mode: the instruction goes where the model weighs it most, the system prompt.
            system = "\n\n".join(part for part in (system, json_instruction(request.json_schema)) if part)
        body: dict[str, Any] = {
            "model": model_name,
            "messages": messages,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "stream": stream,
        }
        if system:
            body["system"] = system
        if request.tools:
            body["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters} for t in request.tools
            ]
        if request.temperature is not None:
            body["temperature"] = request.temperature
        headers = {**self._headers(), "Accept": "text/event-stream" if stream else "application/json"}
        return HttpCall("POST", f"{self.base_url}/v1/messages", headers, body)

    def parse_stream(self, lines: Iterable[str]) -> Iterator[AdapterEvent]:
        """message_start (input tokens), content blocks (text, tool_use with JSON pieces), message_delta, stop."""
        blocks: dict[int, tuple[str, ToolCallBuffer]] = {}
        prompt_tokens: int | None = None
        completion_tokens: int | None = None
        stop_reason: str | None = None
        started = done = False
        for _, data in iter_sse(lines):
            event = load_json(data, "a stream event")
            if not isinstance(event, dict):
                raise bad_response("a stream event is not an object")
            kind = event.get("type")
            if kind == "message_start":
                usage = (event.get("message") or {}).get("usage") or {}
                prompt_tokens = _input_tokens(usage)
                completion_tokens = usage.get("output_tokens") if isinstance(usage.get("output_tokens"), int) else None
            elif kind == "content_block_start":
                block = event.get("content_block") or {}
                buffer = ToolCallBuffer(id=block.get("id", ""), name=block.get("name", ""))
                if block.get("type") == "tool_use" and block.get("input"):
                    buffer.argument_parts.append(json.dumps(block["input"]))
                blocks[int(event.get("index", len(blocks)))] = (str(block.get("type")), buffer)
                if block.get("type") == "tool_use" and not started:
                    started = True
                    yield OutputStarted()
            elif kind == "content_block_delta":
                delta = event.get("delta") or {}
                if delta.get("type") == "text_delta" and delta.get("text"):
                    if not started:
                        started = True
                        yield OutputStarted()
                    yield TextDelta(delta["text"])
                elif delta.get("type") == "input_json_delta":
                    entry = blocks.get(int(event.get("index", -1)))
                    if entry is None:
                        raise bad_response("a tool input delta for an unknown block")
                    entry[1].argument_parts.append(delta.get("partial_json") or "")
            elif kind == "message_delta":
                stop_reason = (event.get("delta") or {}).get("stop_reason") or stop_reason
                usage = event.get("usage") or {}
                if isinstance(usage.get("output_tokens"), int):
                    completion_tokens = usage["output_tokens"]  # cumulative, so the last one counts
                if _input_tokens(usage) is not None:
                    prompt_tokens = _input_tokens(usage)
            elif kind == "message_stop":
                done = True
                break
            elif kind == "error":
                error = event.get("error") or {}
                raise ProviderFailure(
                    provider_error_message(event) or "the provider reported an error mid-stream",
                    code="stream_error",
                    retryable=error.get("type") in RETRYABLE_STREAM_ERRORS,
                )
        if not done:
            raise ProviderFailure(
                "the stream ended before the answer was complete", code="stream_incomplete", retryable=True
            )
        calls = [buffer.build() for index, (kind, buffer) in sorted(blocks.items()) if kind == "tool_use"]
        if calls:
            yield ToolCallsRequested(calls)
        usage_seen = prompt_tokens is not None or completion_tokens is not None
        usage = Usage(prompt_tokens or 0, completion_tokens or 0) if usage_seen else None
        yield StreamEnd(_finish(stop_reason, bool(calls)), usage)

    def parse_response(self, body: Any) -> Iterator[AdapterEvent]:
        """The events of a whole `message` object."""
        if not isinstance(body, dict) or not isinstance(body.get("content"), list):
            raise bad_response("no content in the answer")
        text = "".join(
            block.get("text", "")
            for block in body["content"]
            if isinstance(block, dict) and block.get("type") == "text"
        )
        calls = [
            ToolCall(
                id=block.get("id", ""),
                name=block.get("name", ""),
                arguments=parse_arguments(block.get("input")),
                raw_arguments=json.dumps(block.get("input", {})),
            )
            for block in body["content"]
            if isinstance(block, dict) and block.get("type") == "tool_use"
        ]
        if text or calls:
            yield OutputStarted()
        if text:
            yield TextDelta(text)
        if calls:
            yield ToolCallsRequested(calls)
        usage = body.get("usage") or {}
        prompt, completion = _input_tokens(usage), usage.get("output_tokens")
        reported = prompt is not None or isinstance(completion, int)
        yield StreamEnd(
            _finish(body.get("stop_reason"), bool(calls)),
            Usage(prompt or 0, int(completion or 0)) if reported else None,
        )

    def models_call(self, after: str | None = None) -> HttpCall:
        """GET {base}/v1/models, paged with `after_id`."""
        params: dict[str, Any] = {"limit": MODELS_PAGE_SIZE}
        if after:
            params["after_id"] = after
        headers = {**self._headers(), "Accept": "application/json"}
        return HttpCall("GET", f"{self.base_url}/v1/models", headers, params=params)

    def parse_models(self, body: Any) -> tuple[list[dict[str, str]], str | None]:
        """`data[].id` and `display_name`; the next cursor is `last_id` while `has_more`."""
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise bad_response("the model list has no data")
        models = [
            {"id": str(item["id"]), "display_name": str(item.get("display_name") or item["id"])}
            for item in body["data"]
            if isinstance(item, dict) and item.get("id")
        ]
        next_cursor = body.get("last_id") if body.get("has_more") and models else None
        return models, next_cursor


def _input_tokens(usage: dict[str, Any]) -> int | None:
    # Cached prompt tokens are reported apart from input_tokens; the prompt is all of them.
    parts = [usage.get(key) for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")]
    counted = [part for part in parts if isinstance(part, int)]
    return sum(counted) if counted else None


def _finish(reason: str | None, has_calls: bool) -> str:
    if has_calls:
        return "tool_calls"
    return STOP_REASONS.get(reason or "end_turn", reason or "stop")
