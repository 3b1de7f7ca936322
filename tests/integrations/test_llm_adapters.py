"""Adapter edge cases that a scripted server does not produce: pure parsing and URL rules, no I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from integrations.llm.adapters import AnthropicAdapter, OpenAIAdapter, adapter_for
from integrations.llm.adapters.anthropic import anthropic_base_url
from integrations.llm.adapters.base import OutputStarted, ProviderFailure, StreamEnd, iter_sse
from integrations.llm.adapters.openai import openai_base_url
from integrations.llm.client import _retry_after
from integrations.llm.types import TextDelta, ToolCallsRequested, Usage


def _openai_lines(*chunks: dict, done: bool = True) -> list[str]:
    lines = []
    for chunk in chunks:
        lines += [f"data: {json.dumps(chunk)}", ""]
    if done:
        lines += ["data: [DONE]", ""]
    return lines


def _delta(delta: dict, finish_reason: str | None = None) -> dict:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


@pytest.mark.parametrize(
    ("provider_type", "typed", "expected"),
    [
        ("openai", "", "https://api.openai.com/v1"),
        ("openai", "https://api.openai.com", "https://api.openai.com/v1"),
        ("openai", "https://api.openai.com/v1/", "https://api.openai.com/v1"),
        ("openai", "https://gateway.example/openai/v1", "https://gateway.example/openai/v1"),
        ("ollama", "", "http://localhost:11434/v1"),
        ("ollama", "http://localhost:11434", "http://localhost:11434/v1"),
        ("ollama", "http://gpu-box:11434/", "http://gpu-box:11434/v1"),
        ("ollama", "http://gpu-box:11434/v1", "http://gpu-box:11434/v1"),
        ("ollama", "http://gpu-box:11434/api", "http://gpu-box:11434/v1"),
        ("openai_compatible", "https://api.groq.com/openai/v1", "https://api.groq.com/openai/v1"),
        ("openai_compatible", "http://vllm:8000", "http://vllm:8000"),
        ("openai_compatible", "http://vllm:8000/v1/chat/completions", "http://vllm:8000/v1"),
    ],
)
def test_openai_like_base_urls(provider_type, typed, expected):
    assert openai_base_url(provider_type, typed) == expected


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("", "https://api.anthropic.com"),
        ("https://api.anthropic.com/", "https://api.anthropic.com"),
        ("https://api.anthropic.com/v1", "https://api.anthropic.com"),
        ("http://proxy:8080/anthropic", "http://proxy:8080/anthropic"),
    ],
)
def test_anthropic_base_urls(typed, expected):
    assert anthropic_base_url(typed) == expected


def test_adapter_for_each_type():
    assert isinstance(adapter_for("anthropic", "", ""), AnthropicAdapter)
    for provider_type in ("openai", "openai_compatible", "ollama"):
        assert isinstance(adapter_for(provider_type, "http://x", ""), OpenAIAdapter)
    with pytest.raises(ValueError, match="Unknown provider type"):
        adapter_for("gemini", "", "")


def test_sse_framing():
    lines = [": keep-alive comment", "event: first", "data: a", "data: b", "", "", "data:no-space", "", "data: tail"]
    assert list(iter_sse(lines)) == [("first", "a\nb"), ("message", "no-space"), ("message", "tail")]


def test_openai_broken_tool_arguments_become_an_empty_object_with_the_raw_text_kept():
    lines = _openai_lines(
        _delta({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": '{"a": '}}]}),
        _delta({}, "tool_calls"),
    )
    events = list(OpenAIAdapter("", "", provider_type="openai").parse_stream(lines))
    calls = next(e for e in events if isinstance(e, ToolCallsRequested)).calls
    assert (calls[0].arguments, calls[0].raw_arguments) == ({}, '{"a": ')


def test_openai_tool_deltas_without_index_and_stop_finish_from_ollama():
    lines = _openai_lines(
        _delta({"tool_calls": [{"id": "a", "function": {"name": "one", "arguments": {"x": 1}}}]}),
        _delta({"tool_calls": [{"id": "b", "function": {"name": "two", "arguments": '{"y":'}}]}),
        _delta({"tool_calls": [{"function": {"arguments": " 2}"}}]}),
        _delta({}, "stop"),
    )
    events = list(OpenAIAdapter("", "", provider_type="ollama").parse_stream(lines))
    assert isinstance(events[0], OutputStarted)
    calls = events[1].calls
    assert [(c.id, c.name, c.arguments) for c in calls] == [("a", "one", {"x": 1}), ("b", "two", {"y": 2})]
    assert events[2] == StreamEnd("tool_calls", None)


def test_openai_stream_that_just_stops_is_incomplete():
    lines = _openai_lines(_delta({"content": "half an ans"}), done=False)
    parsed = OpenAIAdapter("", "", provider_type="openai").parse_stream(lines)
    assert next(parsed) == OutputStarted()
    assert next(parsed) == TextDelta("half an ans")
    with pytest.raises(ProviderFailure) as caught:
        next(parsed)
    assert (caught.value.code, caught.value.retryable) == ("stream_incomplete", True)


def test_openai_garbage_in_the_stream_is_a_bad_response():
    with pytest.raises(ProviderFailure) as caught:
        list(OpenAIAdapter("", "").parse_stream(["data: <html>", ""]))
    assert caught.value.code == "bad_response"
    assert not caught.value.retryable


def test_anthropic_usage_counts_cached_prompt_tokens_and_maps_max_tokens():
    events = [
        {
            "type": "message_start",
            "message": {"usage": {"input_tokens": 5, "cache_read_input_tokens": 100, "output_tokens": 1}},
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "cut"}},
        {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 7}},
        {"type": "message_stop"},
    ]
    lines = [line for event in events for line in (f"event: {event['type']}", f"data: {json.dumps(event)}", "")]
    parsed = list(AnthropicAdapter("", "").parse_stream(lines))
    assert parsed[-1] == StreamEnd("length", Usage(105, 7))


def test_retry_after_forms():
    assert _retry_after({"Retry-After": "2"}) == 2.0
    assert _retry_after({"retry-after-ms": "250", "Retry-After": "9"}) == 0.25
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    assert 55 <= _retry_after({"Retry-After": in_a_minute}) <= 60
    assert _retry_after({"Retry-After": "soon"}) is None
    assert _retry_after({}) is None
