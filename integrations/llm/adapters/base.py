"""What every provider adapter does: build the HTTP call for an LLMRequest and parse the answer into events.

Adapters are pure (no I/O, no Django): the client sends the calls through the guarded outbound client and
feeds the response lines or JSON back in. Besides the public LLMEvents they yield two internal markers:
`OutputStarted` when the first piece of output (text or a tool call) arrives, for time-to-first-token, and
one `StreamEnd` with the finish reason and the provider's usage (None when it reported none).
"""

from __future__ import annotations

import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from integrations.llm.types import LLMRequest, TextDelta, ToolCall, ToolCallsRequested, Usage

# Provider messages go into errors shown to users; long ones are cut.
MAX_PROVIDER_MESSAGE_CHARS = 200


@dataclass(frozen=True)
class HttpCall:
    """One request to send: method, full URL, headers (secrets included) and JSON body."""

    method: str
    url: str
    headers: dict[str, str]
    body: dict[str, Any] | None = None
    params: dict[str, Any] | None = None


@dataclass(frozen=True)
class OutputStarted:
    """Internal marker: the provider sent its first piece of output."""


@dataclass(frozen=True)
class StreamEnd:
    """Internal marker: the provider finished; `usage` is None when it reported none."""

    finish_reason: str
    usage: Usage | None


AdapterEvent = TextDelta | ToolCallsRequested | OutputStarted | StreamEnd


class ProviderFailure(Exception):
    """The provider answered with an error, in the HTTP status or inside the stream.

    `reason` is short and safe to show (no secrets); `code` is a stable machine reason recorded with the usage.
    """

    def __init__(
        self,
        reason: str,
        *,
        code: str,
        retryable: bool = False,
        status: int | None = None,
        retry_after: float | None = None,
    ):
        self.reason = reason
        self.code = code
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        super().__init__(reason)


def bad_response(what: str) -> ProviderFailure:
    """A failure for an answer that does not follow the provider's protocol."""
    return ProviderFailure(f"unexpected answer from the provider ({what})", code="bad_response")


@dataclass
class ToolCallBuffer:
    """The pieces of one tool call as they stream in."""

    id: str = ""
    name: str = ""
    argument_parts: list[str] = field(default_factory=list)

    def build(self) -> ToolCall:
        """The complete call, its arguments parsed ({} when they are not a JSON object)."""
        raw = "".join(self.argument_parts)
        return ToolCall(
            id=self.id or f"call_{uuid.uuid4().hex[:24]}",
            name=self.name,
            arguments=parse_arguments(raw),
            raw_arguments=raw,
        )


def parse_arguments(raw: str | dict[str, Any] | None) -> dict[str, Any]:
    """A tool call's arguments as a dict; models do send broken JSON, which becomes {} (raw is kept apart)."""
    if isinstance(raw, dict):
        return raw
    if not raw or not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def iter_sse(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Server-sent events as (event name, data) from response lines (the SSE framing, comments skipped)."""
    event, data = "", []
    for line in lines:
        if not line:
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    # Lenient where the spec is strict: a last event without its blank line is still delivered.
    if data:
        yield event or "message", "\n".join(data)


def load_json(data: str, what: str) -> Any:
    """Parse one JSON payload of the provider, failing as a bad response."""
    try:
        return json.loads(data)
    except ValueError:
        raise bad_response(f"{what} is not JSON")


def provider_error_message(body: Any) -> str:
    """The human message inside a provider's error answer (OpenAI, Anthropic and Ollama shapes), or ""."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, str):
            return error
        if isinstance(error, dict):
            for key in ("message", "detail", "error"):
                value = error.get(key)
                if isinstance(value, str):
                    return value
    return ""


def estimate_tokens(text_length: int) -> int:
    """About four characters per token, the usual rule of thumb for English and code."""
    return (text_length + 3) // 4


def prompt_length(request: LLMRequest) -> int:
    """Characters the prompt holds (messages and tool definitions), for estimating its tokens."""
    total = 0
    for message in request.messages:
        content = message.get("content")
        total += len(content) if isinstance(content, str) else len(json.dumps(content or ""))
        for call in message.get("tool_calls") or []:
            total += len(json.dumps(call))
    for tool in request.tools:
        total += len(tool.name) + len(tool.description) + len(json.dumps(tool.parameters))
    return total


def json_instruction(schema: dict[str, Any] | None) -> str:
    """The instruction that asks a model without a native JSON mode for JSON only."""
    text = (
        "Answer with one valid JSON value only: no prose before or after it, no Markdown code fences."
        if schema is None
        else "Answer with one valid JSON value only, matching this JSON Schema, with no prose before or after it "
        f"and no Markdown code fences:\n{json.dumps(schema)}"
    )
    return text


class ProviderAdapter(ABC):
    """Converts requests to one provider API and its answers back; one instance per call."""

    def __init__(self, base_url: str, api_key: str):
        self.base_url = base_url
        self.api_key = api_key

    @abstractmethod
    def chat_call(self, request: LLMRequest, model_name: str, *, stream: bool) -> HttpCall:
        """The HTTP call asking `model_name` (the provider's name for it) for an answer."""

    @abstractmethod
    def parse_stream(self, lines: Iterable[str]) -> Iterator[AdapterEvent]:
        """Events from the lines of a streamed answer; raises ProviderFailure on errors inside the stream."""

    @abstractmethod
    def parse_response(self, body: Any) -> Iterator[AdapterEvent]:
        """Events from a whole (non-streamed) JSON answer."""

    @abstractmethod
    def models_call(self, after: str | None = None) -> HttpCall:
        """The HTTP call listing the provider's models (`after`: the page cursor, if the API pages)."""

    @abstractmethod
    def parse_models(self, body: Any) -> tuple[list[dict[str, str]], str | None]:
        """`[{id, display_name}]` from one page of the model list, and the cursor of the next page (or None)."""
