"""The LLM client against a real OpenAI-compatible server on loopback (no patched HTTP, no patched client)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

import pytest

from claraverse.errors import ApplicationError
from integrations.llm.client import complete_chat, list_provider_models, stream_chat
from integrations.llm.types import (
    Completed,
    LLMRequest,
    LLMResult,
    TextDelta,
    ToolCall,
    ToolCallsRequested,
    ToolSpec,
    Usage,
)
from integrations.models import LLMUsage
from tests.support.llm_server import LLMServer, Reply, create_model, create_provider

pytestmark = pytest.mark.django_db

API_KEY = "sk-test-0123456789-very-secret-key"
CALCULATE = ToolSpec(
    name="calculate_math",
    description="Evaluate an arithmetic expression.",
    parameters={"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
)


@pytest.fixture(autouse=True)
def fast_llm_settings(settings):
    # Private networks stay refused globally: the client itself must allow them for providers.
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = False
    settings.OUTBOUND_ALLOWED_NETWORKS = []
    settings.LLM_CONNECT_TIMEOUT_SECONDS = 2.0
    settings.LLM_READ_TIMEOUT_SECONDS = 5.0
    settings.LLM_TOTAL_TIMEOUT_SECONDS = 30.0
    settings.LLM_MAX_ATTEMPTS = 3
    settings.LLM_RETRY_BACKOFF_SECONDS = 0.01
    settings.LLM_RETRY_MAX_DELAY_SECONDS = 1.0
    return settings


@pytest.fixture
def server():
    with LLMServer() as running:
        yield running


@pytest.fixture
def provider(server):
    return create_provider(server, "openai", api_key=API_KEY, name="Acme AI")


@pytest.fixture
def model(provider):
    return create_model(provider, "acme/gpt:latest", name="gpt-test-large")


def ask(model_id: str = "acme/gpt:latest", messages: list[dict] | None = None, **fields) -> LLMRequest:
    return LLMRequest(model_id=model_id, messages=messages or [{"role": "user", "content": "What is 2+2?"}], **fields)


def only_usage() -> LLMUsage:
    rows = list(LLMUsage.objects.all())
    assert len(rows) == 1, rows
    return rows[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- Streaming text and usage ---------------------------------------------------------------------


def test_streamed_text_arrives_as_several_deltas_then_completed_with_usage(server, model, user):
    server.enqueue(Reply(text="Hello world", chunks=3, prompt_tokens=21, completion_tokens=3))

    events = list(stream_chat(ask(), user=user, source="chat"))

    deltas = [event for event in events if isinstance(event, TextDelta)]
    assert len(deltas) == 3
    assert "".join(delta.text for delta in deltas) == "Hello world"
    assert events[:3] == deltas
    completed = events[-1]
    assert isinstance(completed, Completed)
    assert completed.finish_reason == "stop"
    assert completed.usage == Usage(prompt_tokens=21, completion_tokens=3, estimated=False)
    assert completed.ttft_ms is not None and 0 <= completed.ttft_ms <= completed.latency_ms

    sent = server.chat_requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.body["model"] == "gpt-test-large"  # the provider's name, not the public id
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}
    assert sent.body["messages"] == [{"role": "user", "content": "What is 2+2?"}]
    assert "tools" not in sent.body

    row = only_usage()
    assert (row.user, row.provider, row.provider_name, row.model_id) == (user, model.provider, "Acme AI", model.id)
    assert (row.source, row.outcome, row.error_code) == ("chat", "success", "")
    assert (row.prompt_tokens, row.completion_tokens) == (21, 3)
    assert row.ttft_ms == completed.ttft_ms
    assert row.latency_ms >= row.ttft_ms


def test_text_is_yielded_as_soon_as_it_arrives(server, model):
    server.enqueue(Reply(text="one two three four", chunks=4, chunk_interval=0.15))
    started = time.monotonic()
    arrivals = [
        time.monotonic() - started for event in stream_chat(ask(), source="chat") if isinstance(event, TextDelta)
    ]
    # Each delta is handed over when its chunk arrives (0.15 s apart), not all together at the end of the stream.
    assert len(arrivals) == 4
    assert arrivals[0] < 0.35
    assert arrivals[3] - arrivals[0] >= 0.4


def test_missing_usage_is_estimated(server, model):
    server.enqueue(Reply(text="x" * 40, include_usage=False))
    completed = list(stream_chat(ask(), source="workflow"))[-1]
    # "What is 2+2?" is 12 characters: 3 tokens; 40 characters of answer: 10 tokens.
    assert completed.usage == Usage(prompt_tokens=3, completion_tokens=10, estimated=True)
    row = only_usage()
    assert (row.source, row.prompt_tokens, row.completion_tokens) == ("workflow", 3, 10)


def test_complete_chat_returns_the_whole_answer(server, model):
    server.enqueue(Reply(text="The answer is 4.", chunks=4))
    result = complete_chat(ask(), source="system")
    assert isinstance(result, LLMResult)
    assert (result.text, result.tool_calls, result.finish_reason) == ("The answer is 4.", [], "stop")
    assert result.usage == Usage(12, 5)
    assert only_usage().source == "system"


# --- Tool calls and message conversion ------------------------------------------------------------


@pytest.mark.parametrize("interleave", [False, True])
def test_parallel_tool_calls_are_assembled_from_split_deltas(server, model, interleave):
    server.enqueue(
        Reply(
            tool_calls=[("calculate_math", {"expression": "2+2"}), ("search_web", {"query": "weather in Paris"})],
            argument_pieces=4,
            interleave_tool_calls=interleave,
        )
    )

    events = list(stream_chat(ask(tools=[CALCULATE]), source="chat"))

    assert [type(event) for event in events] == [ToolCallsRequested, Completed]
    assert events[0].calls == [
        ToolCall("call_0", "calculate_math", {"expression": "2+2"}, '{"expression": "2+2"}'),
        ToolCall("call_1", "search_web", {"query": "weather in Paris"}, '{"query": "weather in Paris"}'),
    ]
    assert events[1].finish_reason == "tool_calls"
    assert server.chat_requests[0].body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "calculate_math",
                "description": "Evaluate an arithmetic expression.",
                "parameters": CALCULATE.parameters,
            },
        }
    ]


def test_tool_turns_are_sent_in_openai_shape(server, model):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2 and 3+3?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "call_a", "name": "calculate_math", "arguments": {"expression": "2+2"}},
                {"id": "call_b", "name": "calculate_math", "arguments": {"expression": "3+3"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "4"},
        {"role": "tool", "tool_call_id": "call_b", "content": "6"},
    ]
    list(stream_chat(ask(messages=messages, tools=[CALCULATE], temperature=0.2, max_tokens=50), source="chat"))
    body = server.chat_requests[0].body
    assert body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 2+2 and 3+3?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "calculate_math", "arguments": '{"expression": "2+2"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "calculate_math", "arguments": '{"expression": "3+3"}'},
                },
            ],
        },
        {"role": "tool", "content": "4", "tool_call_id": "call_a"},
        {"role": "tool", "content": "6", "tool_call_id": "call_b"},
    ]
    assert body["temperature"] == 0.2
    assert body["max_completion_tokens"] == 50  # OpenAI's newer models refuse max_tokens
    assert "max_tokens" not in body


def test_a_model_without_streaming_gets_one_call_turned_into_the_same_events(server, provider):
    create_model(provider, "acme/batch", name="batch-model", supports_streaming=False)
    server.enqueue(Reply(text="All at once.", tool_calls=[("calculate_math", {"expression": "1+1"})]))

    events = list(stream_chat(ask("acme/batch", tools=[CALCULATE]), source="chat"))

    assert events[0] == TextDelta("All at once.")
    assert events[1] == ToolCallsRequested(
        [ToolCall("call_0", "calculate_math", {"expression": "1+1"}, '{"expression": "1+1"}')]
    )
    assert isinstance(events[2], Completed)
    assert (events[2].finish_reason, events[2].usage) == ("tool_calls", Usage(12, 5))
    body = server.chat_requests[0].body
    assert body["stream"] is False
    assert "stream_options" not in body
    assert only_usage().outcome == "success"


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (None, {"type": "json_object"}),
        (
            {"title": "Answer", "type": "object", "properties": {"value": {"type": "number"}}},
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "Answer",
                    "schema": {"title": "Answer", "type": "object", "properties": {"value": {"type": "number"}}},
                },
            },
        ),
    ],
)
def test_json_response_format_request_shape(server, model, schema, expected):
    complete_chat(ask(response_format="json", json_schema=schema), source="system")
    assert server.chat_requests[0].body["response_format"] == expected


def test_text_response_format_sends_no_response_format(server, model):
    complete_chat(ask(), source="system")
    assert "response_format" not in server.chat_requests[0].body


# --- Provider types and base URLs -----------------------------------------------------------------


def test_ollama_base_url_gets_v1_and_no_key_header(server):
    ollama = create_provider(server, "ollama", name="Local Ollama")  # http://127.0.0.1:<port>, as typed
    create_model(ollama, "llama3.1:8b", name="llama3.1:8b")
    result = complete_chat(ask("llama3.1:8b", max_tokens=20), source="chat")
    assert result.text == "Hello from the test server."
    sent = server.chat_requests[0]
    assert sent.path == "/v1/chat/completions"
    assert "authorization" not in sent.headers
    assert sent.body["max_tokens"] == 20


def test_openai_compatible_uses_the_base_as_typed(server):
    compatible = create_provider(
        server, "openai_compatible", api_key="gsk-other", base_url=server.base_url("/api/openai/")
    )
    create_model(compatible, "groq/llama", name="llama-3.1-8b-instant")
    complete_chat(ask("groq/llama"), source="chat")
    sent = server.chat_requests[0]
    assert sent.path == "/api/openai/chat/completions"
    assert sent.headers["authorization"] == "Bearer gsk-other"


# --- Resolution -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["unknown", "disabled model", "disabled provider"])
def test_unavailable_models_are_not_found(server, provider, model, case):
    model_id = model.id
    if case == "unknown":
        model_id = "nobody/knows:this"
    elif case == "disabled model":
        model.enabled = False
        model.save()
    else:
        provider.enabled = False
        provider.save()

    with pytest.raises(ApplicationError) as caught:
        stream_chat(ask(model_id), source="chat")  # raised at once, before iterating

    assert (caught.value.code, caught.value.status) == ("NOT_FOUND", 404)
    assert caught.value.message == f"Model '{model_id}' is not available."
    assert server.requests == []
    assert not LLMUsage.objects.exists()


def test_include_disabled_reaches_a_disabled_model(server, model):
    model.enabled = False
    model.save()
    assert complete_chat(ask(), source="system", include_disabled=True).finish_reason == "stop"


def test_an_unknown_source_is_a_programming_error(model):
    with pytest.raises(ValueError, match="source"):
        stream_chat(ask(), source="cron")


# --- Retries --------------------------------------------------------------------------------------


def test_429_with_retry_after_then_success(server, model):
    server.enqueue(Reply(status=429, retry_after=0.4), Reply(text="after the wait"))
    started = time.monotonic()
    result = complete_chat(ask(), source="chat")
    elapsed = time.monotonic() - started
    assert result.text == "after the wait"
    assert len(server.chat_requests) == 2
    assert elapsed >= 0.4  # the backoff alone would have been about 0.01 s
    row = only_usage()
    assert (row.outcome, row.error_code) == ("success", "")


def test_retry_after_is_capped(server, model, settings):
    settings.LLM_RETRY_MAX_DELAY_SECONDS = 0.1
    server.enqueue(Reply(status=429, retry_after=30))
    started = time.monotonic()
    assert complete_chat(ask(), source="chat").finish_reason == "stop"
    assert time.monotonic() - started < 2


def test_500_twice_then_success(server, model):
    server.enqueue(Reply(status=500), Reply(status=503), Reply(text="third time lucky"))
    assert complete_chat(ask(), source="chat").text == "third time lucky"
    assert len(server.chat_requests) == 3
    assert only_usage().outcome == "success"


def test_persistent_500_is_a_provider_error_after_the_last_attempt(server, model):
    server.default_reply = Reply(status=500, error_message="upstream exploded")
    with pytest.raises(ApplicationError) as caught:
        list(stream_chat(ask(), source="chat"))
    assert (caught.value.code, caught.value.status) == ("PROVIDER_ERROR", 502)
    assert caught.value.message == "Acme AI: the provider failed (HTTP 500): upstream exploded"
    assert len(server.chat_requests) == 3
    row = only_usage()
    assert (row.outcome, row.error_code, row.prompt_tokens, row.completion_tokens) == ("error", "http_500", 0, 0)


def test_max_attempts_comes_from_the_settings(server, model, settings):
    settings.LLM_MAX_ATTEMPTS = 1
    server.enqueue(Reply(status=503))
    with pytest.raises(ApplicationError):
        list(stream_chat(ask(), source="chat"))
    assert len(server.chat_requests) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_not_retried(server, model, status):
    server.enqueue(Reply(status=status, error_message="model does not support tools"))
    with pytest.raises(ApplicationError) as caught:
        list(stream_chat(ask(), source="chat"))
    assert caught.value.code == "PROVIDER_ERROR"
    assert len(server.chat_requests) == 1
    if status in (401, 403):
        assert caught.value.message == (
            f"Acme AI: the provider rejected the API key (HTTP {status}); check the provider's API key"
        )
        assert only_usage().error_code == "auth_failed"
    else:
        assert caught.value.message.endswith(f"(HTTP {status}): model does not support tools")


def test_an_exhausted_quota_429_is_not_retried(server, model):
    server.enqueue(Reply(status=429, error_code="insufficient_quota", error_message="You exceeded your current quota."))
    with pytest.raises(ApplicationError) as caught:
        list(stream_chat(ask(), source="chat"))
    assert caught.value.message == "Acme AI: rate limited by the provider (HTTP 429): You exceeded your current quota."
    assert len(server.chat_requests) == 1
    assert only_usage().error_code == "rate_limited"


def test_a_stream_cut_before_any_event_is_retried(server, model):
    server.enqueue(Reply(text="lost", drop_after_chunks=1), Reply(text="second try"))
    assert complete_chat(ask(), source="chat").text == "second try"
    assert len(server.chat_requests) == 2
    assert only_usage().outcome == "success"


def test_a_stream_cut_after_text_was_yielded_is_not_retried(server, model):
    server.enqueue(Reply(text="abcdef", chunks=3, drop_after_chunks=3))  # role chunk + 2 text chunks, then cut
    received = []
    with pytest.raises(ApplicationError) as caught:
        for event in stream_chat(ask(), source="chat"):
            received.append(event)
    assert received == [TextDelta("ab"), TextDelta("cd")]
    assert caught.value.code == "PROVIDER_ERROR"
    assert len(server.chat_requests) == 1
    row = only_usage()
    assert row.outcome == "error"
    assert row.completion_tokens == 1  # 4 characters received, estimated


def test_an_error_inside_the_stream_before_any_text_is_retried(server, model):
    server.enqueue(Reply(stream_error="server_error", error_message="overloaded"), Reply(text="fine now"))
    assert complete_chat(ask(), source="chat").text == "fine now"
    assert len(server.chat_requests) == 2


def test_an_unreachable_provider_is_retried_then_a_provider_error(caplog):
    caplog.set_level(logging.INFO, logger="integrations.llm")
    dead = create_model(
        create_provider(None, "openai", name="Dead", base_url=f"http://127.0.0.1:{free_port()}/v1"),
        "dead/model",
    )
    with pytest.raises(ApplicationError) as caught:
        list(stream_chat(ask(dead.id), source="chat"))
    assert caught.value.message == "Dead: could not connect to the provider"
    assert len([r for r in caplog.records if r.getMessage().startswith("llm retry")]) == 2
    assert only_usage().error_code == "connection_error"


def test_an_unreadable_stored_key_is_a_provider_error(server):
    broken = create_provider(server, "openai", name="Broken")
    broken.api_key_encrypted = "v1.nokey.AAAA"
    broken.save()
    create_model(broken, "broken/model")
    with pytest.raises(ApplicationError) as caught:
        list(stream_chat(ask("broken/model"), source="chat"))
    assert caught.value.message == "Broken: the stored API key cannot be decrypted; enter it again"
    assert server.requests == []
    assert only_usage().error_code == "api_key_unreadable"


# --- Timeouts and stopping ------------------------------------------------------------------------


def test_a_hanging_provider_times_out_as_a_provider_error(server, model, settings):
    settings.LLM_READ_TIMEOUT_SECONDS = 0.3
    server.enqueue(Reply(hang=True))
    started = time.monotonic()
    with pytest.raises(ApplicationError) as caught:
        list(stream_chat(ask(), source="chat"))
    assert time.monotonic() - started < 2
    assert caught.value.message == "Acme AI: the provider did not answer in time"
    assert len(server.chat_requests) == 1  # a slow provider is not asked again
    assert only_usage().error_code == "timeout"


def test_the_overall_deadline_bounds_a_dripping_stream(server, model, settings):
    settings.LLM_TOTAL_TIMEOUT_SECONDS = 0.5
    server.enqueue(Reply(text="x" * 100, chunks=100, chunk_interval=0.05))
    started = time.monotonic()
    with pytest.raises(ApplicationError, match="did not answer in time"):
        list(stream_chat(ask(), source="chat"))
    assert time.monotonic() - started < 1.5


def test_stop_mid_stream_ends_promptly_with_cancelled(server, model):
    server.enqueue(Reply(text="x" * 40, chunks=40, chunk_interval=0.05))
    stop = threading.Event()
    events = []
    stopped_at = 0.0
    for event in stream_chat(ask(), source="chat", stop_event=stop):
        events.append(event)
        if len(events) == 3:
            stopped_at = time.monotonic()
            threading.Thread(target=stop.set).start()  # the stop comes from another thread
    assert time.monotonic() - stopped_at < 1.0
    assert isinstance(events[-1], Completed)
    assert events[-1].finish_reason == "cancelled"
    assert 3 <= len(events) - 1 < 40
    assert server.client_gone.wait(1.0)  # the connection was shut, the provider stops generating
    row = only_usage()
    assert (row.outcome, row.error_code) == ("cancelled", "")
    assert row.completion_tokens >= 1  # the text received, estimated


def test_stop_while_the_provider_is_silent_before_the_first_chunk(server, model):
    server.enqueue(Reply(hang=True))
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    events = list(stream_chat(ask(), source="chat", stop_event=stop))
    assert time.monotonic() - started < 1.0  # the read timeout is 5 s
    assert len(events) == 1
    assert events[0].finish_reason == "cancelled"
    assert events[0].usage == Usage(0, 0, estimated=True)
    assert events[0].ttft_ms is None
    assert server.client_gone.wait(1.0)
    assert only_usage().outcome == "cancelled"


def test_stop_before_the_provider_sent_its_headers(server, model):
    server.enqueue(Reply(delay_before_headers=3.0))
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    events = list(stream_chat(ask(), source="chat", stop_event=stop))
    assert time.monotonic() - started < 1.0
    assert [event.finish_reason for event in events] == ["cancelled"]
    assert only_usage().outcome == "cancelled"


def test_the_abort_callable_handed_to_on_stream_open_cancels(server, model):
    server.enqueue(Reply(hang=True))
    handles = []

    def opened(abort):
        handles.append(abort)
        threading.Timer(0.2, abort).start()

    started = time.monotonic()
    events = list(stream_chat(ask(), source="chat", on_stream_open=opened))
    assert len(handles) == 1
    assert time.monotonic() - started < 1.0
    assert events[-1].finish_reason == "cancelled"
    assert only_usage().outcome == "cancelled"


def test_a_stop_during_the_retry_backoff_cancels(server, model, settings):
    settings.LLM_RETRY_MAX_DELAY_SECONDS = 10.0
    server.enqueue(Reply(status=429, retry_after=5))
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    events = list(stream_chat(ask(), source="chat", stop_event=stop))
    assert time.monotonic() - started < 1.0
    assert events[-1].finish_reason == "cancelled"
    assert len(server.chat_requests) == 1
    assert only_usage().outcome == "cancelled"


def test_leaving_the_iterator_early_records_a_cancelled_call(server, model):
    server.enqueue(Reply(text="x" * 20, chunks=20, chunk_interval=0.05))
    events = stream_chat(ask(), source="chat")
    assert isinstance(next(events), TextDelta)
    events.close()
    assert server.client_gone.wait(1.0)
    assert only_usage().outcome == "cancelled"


# --- Secrets --------------------------------------------------------------------------------------


def test_the_api_key_never_reaches_logs_or_errors(server, model, caplog):
    caplog.set_level(logging.DEBUG)
    server.enqueue(
        Reply(text="fine"),
        Reply(status=401, error_message=f"Incorrect API key provided: {API_KEY}."),
        Reply(status=400, error_message=f"The key {API_KEY} cannot use this model."),
        *[Reply(status=500, error_message=f"Crashed while serving {API_KEY}")] * 3,  # every attempt
    )
    list(stream_chat(ask(), source="chat"))
    errors = []
    for _ in range(3):
        with pytest.raises(ApplicationError) as caught:
            list(stream_chat(ask(), source="chat"))
        errors.append(caught.value)

    assert server.chat_requests[0].headers["authorization"] == f"Bearer {API_KEY}"  # it was sent, and only there
    assert (
        errors[1].message
        == "Acme AI: the provider refused the request (HTTP 400): The key [redacted] cannot use this model."
    )
    for error in errors:
        assert API_KEY not in json.dumps(error.envelope())
        assert API_KEY not in str(error)
    messages = [record.getMessage() for record in caplog.records]
    assert any("outcome=success" in message for message in messages)
    assert any("outcome=error" in message for message in messages)
    assert all(API_KEY not in message for message in messages)
    assert API_KEY not in caplog.text
    # Prompts are not logged either.
    assert all("What is 2+2?" not in message for message in messages)


# --- Model listing --------------------------------------------------------------------------------


def test_list_provider_models_openai(server, provider):
    assert list_provider_models(provider) == [
        {"id": "gpt-test-large", "display_name": "gpt-test-large"},
        {"id": "gpt-test-small", "display_name": "gpt-test-small"},
    ]
    sent = server.requests[0]
    assert (sent.method, sent.path) == ("GET", "/v1/models")
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"


def test_list_provider_models_failures_are_provider_errors(server, provider):
    server.models_status = 401
    with pytest.raises(ApplicationError) as caught:
        list_provider_models(provider)
    assert caught.value.code == "PROVIDER_ERROR"
    assert caught.value.message.startswith("Acme AI: the provider rejected the API key (HTTP 401)")
    assert not LLMUsage.objects.exists()  # listing models is not an LLM call
