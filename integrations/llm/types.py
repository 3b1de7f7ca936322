"""The one interface every LLM caller uses (chat, workflows, tool recommendation, benchmarks).

Messages use one provider-neutral shape (OpenAI-like), converted by each adapter:

    {"role": "system" | "user" | "assistant" | "tool", "content": str,
     "tool_calls": [ToolCall.as_message_part()...]   # assistant turns that called tools
     "tool_call_id": str}                             # tool turns answering one call

A call streams `LLMEvent`s: `TextDelta`s as text arrives, one `ToolCallsRequested` with every
(fully assembled) call when the model asks for tools, then exactly one `Completed` carrying the
usage and why the model stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class ToolSpec:
    """A tool offered to the model: its name, description and JSON Schema of arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    """One tool call requested by the model; `arguments` is the parsed JSON object ({} if unparsable)."""

    id: str
    name: str
    arguments: dict[str, Any]
    raw_arguments: str = ""

    def as_message_part(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass(frozen=True)
class LLMRequest:
    """What to ask: model id (public), messages, optional tools and sampling settings."""

    model_id: str
    messages: list[dict[str, Any]]
    tools: list[ToolSpec] = field(default_factory=list)
    temperature: float | None = None
    max_tokens: int | None = None
    response_format: Literal["text", "json"] = "text"
    json_schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class Usage:
    """Token counts of one call; `estimated` when the provider reported none."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.estimated or other.estimated,
        )

    def as_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallsRequested:
    calls: list[ToolCall]


@dataclass(frozen=True)
class Completed:
    usage: Usage
    finish_reason: str  # "stop", "tool_calls", "length", "cancelled", ...
    ttft_ms: int | None = None
    latency_ms: int = 0


LLMEvent = TextDelta | ToolCallsRequested | Completed


@dataclass(frozen=True)
class LLMResult:
    """A whole answer, for callers that do not stream."""

    text: str
    tool_calls: list[ToolCall]
    usage: Usage
    finish_reason: str
    ttft_ms: int | None
    latency_ms: int
