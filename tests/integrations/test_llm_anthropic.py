"""The LLM client against a real Anthropic Messages API server on loopback."""

from __future__ import annotations

import pytest

from claraverse.errors import ApplicationError
from integrations.llm.client import complete_chat, list_provider_models, stream_chat
from integrations.llm.types import Completed, LLMRequest, TextDelta, ToolCall, ToolCallsRequested, ToolSpec, Usage
from integrations.models import LLMUsage
from tests.support.llm_server import LLMServer, Reply, create_model, create_provider

pytestmark = pytest.mark.django_db

API_KEY = "sk-ant-test-0123456789-secret"
CALCULATE = ToolSpec(
    name="calculate_math",
    description="Evaluate an arithmetic expression.",
    parameters={"type": "object", "properties": {"expression": {"type": "string"}}},
)


@pytest.fixture(autouse=True)
def fast_llm_settings(settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = False
    settings.LLM_READ_TIMEOUT_SECONDS = 5.0
    settings.LLM_RETRY_BACKOFF_SECONDS = 0.01
    settings.LLM_MAX_ATTEMPTS = 3
    return settings


@pytest.fixture
def server():
    with LLMServer() as running:
        yield running


@pytest.fixture
def provider(server):
    return create_provider(server, "anthropic", api_key=API_KEY, name="Anthropic")


@pytest.fixture
def model(provider):
    return create_model(provider, "claude", name="claude-test-4")


def ask(messages: list[dict] | None = None, **fields) -> LLMRequest:
    return LLMRequest(model_id="claude", messages=messages or [{"role": "user", "content": "Hi there"}], **fields)


def test_streamed_text_with_usage_and_headers(server, model):
    server.enqueue(Reply(text="Hello from Claude", chunks=3, prompt_tokens=30, completion_tokens=4))

    events = list(stream_chat(ask(), source="chat"))

    assert [type(event) for event in events] == [TextDelta, TextDelta, TextDelta, Completed]
    assert "".join(event.text for event in events[:3]) == "Hello from Claude"
    assert events[-1].usage == Usage(30, 4)
    assert events[-1].finish_reason == "stop"
    sent = server.chat_requests[0]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == API_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    assert sent.body == {
        "model": "claude-test-4",
        "messages": [{"role": "user", "content": "Hi there"}],
        "max_tokens": 4096,  # required by the API; the default when the request sets none
        "stream": True,
    }
    row = LLMUsage.objects.get()
    assert (row.outcome, row.prompt_tokens, row.completion_tokens, row.provider_name) == ("success", 30, 4, "Anthropic")


def test_a_base_url_typed_with_v1_is_not_doubled(server):
    provider = create_provider(server, "anthropic", api_key=API_KEY, base_url=server.base_url("/v1/"))
    create_model(provider, "claude", name="claude-test-4")
    complete_chat(ask(), source="chat")
    assert server.chat_requests[0].path == "/v1/messages"


@pytest.mark.parametrize("interleave", [False, True])
def test_parallel_tool_use_blocks_are_assembled_from_json_pieces(server, model, interleave):
    server.enqueue(
        Reply(
            text="Let me compute.",
            tool_calls=[("calculate_math", {"expression": "2+2"}), ("calculate_math", {"expression": "3*3"})],
            argument_pieces=5,
            interleave_tool_calls=interleave,
        )
    )

    events = list(stream_chat(ask(tools=[CALCULATE]), source="chat"))

    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Let me compute."
    requested = [e for e in events if isinstance(e, ToolCallsRequested)]
    assert len(requested) == 1
    assert requested[0].calls == [
        ToolCall("toolu_0", "calculate_math", {"expression": "2+2"}, '{"expression": "2+2"}'),
        ToolCall("toolu_1", "calculate_math", {"expression": "3*3"}, '{"expression": "3*3"}'),
    ]
    assert events[-1].finish_reason == "tool_calls"
    assert server.chat_requests[0].body["tools"] == [
        {
            "name": "calculate_math",
            "description": "Evaluate an arithmetic expression.",
            "input_schema": CALCULATE.parameters,
        }
    ]


def test_messages_are_converted_system_tool_use_and_tool_results(server, model):
    messages = [
        {"role": "system", "content": "You are a calculator."},
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What are 2+2 and 3*3?"},
        {
            "role": "assistant",
            "content": "Computing both.",
            "tool_calls": [
                {"id": "toolu_a", "name": "calculate_math", "arguments": {"expression": "2+2"}},
                {"id": "toolu_b", "name": "calculate_math", "arguments": {"expression": "3*3"}},
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_a", "content": "4"},
        {"role": "tool", "tool_call_id": "toolu_b", "content": {"value": 9}},
        {"role": "user", "content": "Thanks, and now?"},
        {"role": "assistant", "content": ""},  # empty turns are dropped: the API refuses empty text blocks
    ]

    complete_chat(ask(messages, tools=[CALCULATE], max_tokens=300, temperature=0.5), source="chat")

    body = server.chat_requests[0].body
    assert body["system"] == "You are a calculator.\n\nBe brief."
    assert body["messages"] == [
        {"role": "user", "content": "What are 2+2 and 3*3?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Computing both."},
                {"type": "tool_use", "id": "toolu_a", "name": "calculate_math", "input": {"expression": "2+2"}},
                {"type": "tool_use", "id": "toolu_b", "name": "calculate_math", "input": {"expression": "3*3"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": "4"},
                {"type": "tool_result", "tool_use_id": "toolu_b", "content": '{"value": 9}'},
                {"type": "text", "text": "Thanks, and now?"},
            ],
        },
    ]
    assert body["max_tokens"] == 300
    assert body["temperature"] == 0.5


def test_a_model_without_streaming(server, provider):
    create_model(provider, "claude-batch", name="claude-batch", supports_streaming=False)
    server.enqueue(Reply(text="Whole answer.", tool_calls=[("calculate_math", {"expression": "1+1"})]))

    events = list(stream_chat(LLMRequest("claude-batch", [{"role": "user", "content": "Hi"}]), source="chat"))

    assert events[0] == TextDelta("Whole answer.")
    assert events[1].calls == [ToolCall("toolu_0", "calculate_math", {"expression": "1+1"}, '{"expression": "1+1"}')]
    assert (events[2].finish_reason, events[2].usage) == ("tool_calls", Usage(12, 5))
    assert server.chat_requests[0].body["stream"] is False


@pytest.mark.parametrize("schema", [None, {"type": "object", "properties": {"value": {"type": "number"}}}])
def test_json_response_format_becomes_a_system_instruction(server, model, schema):
    messages = [{"role": "system", "content": "You grade answers."}, {"role": "user", "content": "Grade: 4"}]
    complete_chat(ask(messages, response_format="json", json_schema=schema), source="system")
    system = server.chat_requests[0].body["system"]
    assert system.startswith("You grade answers.\n\nAnswer with one valid JSON value only")
    if schema is None:
        assert "JSON Schema" not in system
    else:
        assert system.endswith('{"type": "object", "properties": {"value": {"type": "number"}}}')
    assert "response_format" not in server.chat_requests[0].body


def test_overloaded_529_is_retried(server, model):
    server.enqueue(Reply(status=529, error_message="Overloaded"), Reply(text="ok"))
    assert complete_chat(ask(), source="chat").text == "ok"
    assert len(server.chat_requests) == 2


@pytest.mark.parametrize(("error_type", "attempts"), [("overloaded_error", 2), ("invalid_request_error", 1)])
def test_errors_inside_the_stream(server, model, error_type, attempts):
    server.enqueue(Reply(stream_error=error_type, error_message="scripted"), Reply(text="ok"))
    if attempts == 2:
        assert complete_chat(ask(), source="chat").text == "ok"
    else:
        with pytest.raises(ApplicationError, match="Anthropic: scripted"):
            complete_chat(ask(), source="chat")
    assert len(server.chat_requests) == attempts


def test_missing_usage_is_estimated(server, model):
    server.enqueue(Reply(text="y" * 20, include_usage=False))
    assert complete_chat(ask(), source="chat").usage == Usage(2, 5, estimated=True)  # "Hi there": 8 chars


def test_list_provider_models_anthropic(server, provider):
    assert list_provider_models(provider) == [
        {"id": "gpt-test-large", "display_name": "GPT Test Large"},
        {"id": "gpt-test-small", "display_name": "GPT Test Small"},
    ]
    sent = server.requests[0]
    assert (sent.method, sent.path) == ("GET", "/v1/models?limit=1000")
    assert sent.headers["x-api-key"] == API_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
