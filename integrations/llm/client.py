"""The one LLM client: resolves the model, talks to its provider, retries, stops on request, records usage.

Every caller (chat, workflows, tool recommendation, benchmarks, admin tests) goes through `stream_chat` or
`complete_chat`. The provider is called from a worker thread that feeds a queue, so the caller's generator can
end at once on a stop even while the provider is silent (before its headers, too); the worker's socket is then
shut down with `OutboundStream.abort()`. Retries happen only while nothing has been handed to the caller.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from django.conf import settings

from claraverse.encryption import DecryptionError
from claraverse.errors import ApplicationError
from claraverse.outbound import (
    InvalidOutboundRequest,
    OutboundConnectionError,
    OutboundError,
    OutboundStream,
    OutboundTimeout,
    ResponseTooLarge,
    outbound_request,
    outbound_stream,
)
from integrations.llm.adapters import adapter_for
from integrations.llm.adapters.base import (
    MAX_PROVIDER_MESSAGE_CHARS,
    AdapterEvent,
    HttpCall,
    OutputStarted,
    ProviderAdapter,
    ProviderFailure,
    StreamEnd,
    estimate_tokens,
    load_json,
    prompt_length,
    provider_error_message,
)
from integrations.llm.types import (
    Completed,
    LLMEvent,
    LLMRequest,
    LLMResult,
    TextDelta,
    ToolCall,
    ToolCallsRequested,
    Usage,
)
from integrations.models import LLMModel, LLMUsage, Provider, UsageOutcome, UsageSource
from integrations.provider_keys import decrypt_provider_key

__all__ = ["complete_chat", "list_provider_models", "resolve_model", "stream_chat"]

logger = logging.getLogger("integrations.llm")

# How often the caller's generator looks at the stop event while the provider is silent.
STOP_POLL_SECONDS = 0.05
# Enough of an error answer to find the provider's message in it.
MAX_ERROR_BODY_BYTES = 64 * 1024
MAX_MODEL_PAGES = 20

AbortCallable = Callable[[], None]


@dataclass(frozen=True)
class _Limits:
    connect_timeout: float
    read_timeout: float
    total_timeout: float
    max_attempts: int
    backoff_seconds: float
    max_delay_seconds: float

    @classmethod
    def from_settings(cls) -> _Limits:
        return cls(
            connect_timeout=float(getattr(settings, "LLM_CONNECT_TIMEOUT_SECONDS", 10.0)),
            read_timeout=float(getattr(settings, "LLM_READ_TIMEOUT_SECONDS", 120.0)),
            total_timeout=float(getattr(settings, "LLM_TOTAL_TIMEOUT_SECONDS", 600.0)),
            max_attempts=max(1, int(getattr(settings, "LLM_MAX_ATTEMPTS", 3))),
            backoff_seconds=float(getattr(settings, "LLM_RETRY_BACKOFF_SECONDS", 0.5)),
            max_delay_seconds=float(getattr(settings, "LLM_RETRY_MAX_DELAY_SECONDS", 10.0)),
        )


# --- Model and key resolution ---------------------------------------------------------------------


def resolve_model(model_id: str, *, include_disabled: bool = False) -> LLMModel:
    """The model with this public id and its provider, both enabled; else NOT_FOUND."""
    models = LLMModel.objects.select_related("provider").filter(pk=model_id)
    if not include_disabled:
        models = models.filter(enabled=True, provider__enabled=True)
    model = models.first()
    if model is None:
        raise ApplicationError("NOT_FOUND", f"Model '{str(model_id)[:200]}' is not available.")
    return model


def _api_key(provider: Provider) -> str:
    try:
        return decrypt_provider_key(provider.api_key_encrypted)
    except DecryptionError:
        raise ProviderFailure("the stored API key cannot be decrypted; enter it again", code="api_key_unreadable")


# --- Failures -------------------------------------------------------------------------------------


def _scrub(message: str, api_key: str) -> str:
    if api_key:
        message = message.replace(api_key, "[redacted]")
    message = re.sub(r"\s+", " ", message).strip()
    if len(message) > MAX_PROVIDER_MESSAGE_CHARS:
        message = message[: MAX_PROVIDER_MESSAGE_CHARS - 1] + "…"
    return message


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the provider asked us to wait: OpenAI's `retry-after-ms`, else `Retry-After` (seconds or a date)."""
    for name, scale in (("retry-after-ms", 0.001), ("Retry-After", 1.0)):
        value = (headers.get(name) or "").strip()
        if not value:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            pass
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError, IndexError):
            continue
    return None


def _http_failure(status: int, headers: Mapping[str, str], body: bytes, api_key: str) -> ProviderFailure:
    try:
        parsed: Any = json.loads(body) if body else None
    except ValueError:
        parsed = None
    detail = _scrub(provider_error_message(parsed), api_key)
    suffix = f": {detail}" if detail else ""
    retry_after = _retry_after(headers)
    if status in (401, 403):
        # The provider's own text is left out: some echo (part of) the key they refused.
        return ProviderFailure(
            f"the provider rejected the API key (HTTP {status}); check the provider's API key",
            code="auth_failed",
            status=status,
        )
    if status == 429:
        error = parsed.get("error") if isinstance(parsed, dict) else None
        # OpenAI answers 429 for an exhausted quota too, which no amount of waiting fixes.
        exhausted = isinstance(error, dict) and error.get("code") == "insufficient_quota"
        return ProviderFailure(
            f"rate limited by the provider (HTTP 429){suffix}",
            code="rate_limited",
            retryable=not exhausted,
            status=status,
            retry_after=retry_after,
        )
    if status >= 500:
        return ProviderFailure(
            f"the provider failed (HTTP {status}){suffix}",
            code=f"http_{status}",
            retryable=True,
            status=status,
            retry_after=retry_after,
        )
    if status == 404:
        return ProviderFailure(f"model or endpoint not found (HTTP 404){suffix}", code="http_404", status=status)
    return ProviderFailure(f"the provider refused the request (HTTP {status}){suffix}", code=f"http_{status}")


def _describe(exc: BaseException) -> tuple[str, str]:
    """(user-safe reason, usage error code) of a failure; outbound messages name hosts, so they are replaced."""
    if isinstance(exc, ProviderFailure):
        return exc.reason, exc.code
    if isinstance(exc, OutboundTimeout):
        return "the provider did not answer in time", "timeout"
    if isinstance(exc, ResponseTooLarge):
        return "the provider's answer is too large", "response_too_large"
    if isinstance(exc, InvalidOutboundRequest):
        return f"the provider's URL cannot be used: {exc.message}", "invalid_url"
    # The outbound client tells "never connected" from "connected, then lost" only in its message.
    if isinstance(exc, OutboundConnectionError) and "broke" in exc.message:
        return "the connection to the provider broke", "connection_error"
    if isinstance(exc, OutboundError):
        return "could not connect to the provider", "connection_error"
    return "internal error", "internal_error"


def _provider_error(provider: Provider, exc: BaseException) -> ApplicationError:
    reason, code = _describe(exc)
    return ApplicationError("PROVIDER_ERROR", f"{provider.name}: {reason}", 502, {"reason": code})


# --- The provider call (worker thread) ------------------------------------------------------------


@dataclass(frozen=True)
class _Failed:
    error: BaseException


@dataclass(frozen=True)
class _Finished:
    pass


class _ProviderCall:
    """One call to the provider with its retries, run in a daemon thread that puts events on a queue."""

    def __init__(self, adapter: ProviderAdapter, http: HttpCall, *, streaming: bool, limits: _Limits):
        self.adapter = adapter
        self.http = http
        self.streaming = streaming
        self.limits = limits
        self.events: queue.SimpleQueue[AdapterEvent | _Failed | _Finished] = queue.SimpleQueue()
        self.cancelled = threading.Event()
        self.started_at = time.monotonic()
        self.first_output_at: float | None = None
        self.attempts = 0
        self._produced = False
        self._stream: OutboundStream | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="llm-call", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def abort(self) -> None:
        """Cancel from any thread: stop waiting, and shut the open connection so a silent provider cannot delay it."""
        self.cancelled.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.abort()

    def _run(self) -> None:
        try:
            self._attempt_until_done()
        except BaseException as exc:
            if not self.cancelled.is_set():
                self.events.put(_Failed(exc))
        finally:
            self.events.put(_Finished())

    def _attempt_until_done(self) -> None:
        deadline = self.started_at + self.limits.total_timeout
        while not self.cancelled.is_set():
            self.attempts += 1
            try:
                self._attempt(deadline)
                return
            except (ProviderFailure, OutboundConnectionError) as exc:
                retryable = exc.retryable if isinstance(exc, ProviderFailure) else True
                if not retryable or self._produced or self.attempts >= self.limits.max_attempts:
                    raise
                delay = self._delay(exc)
                if time.monotonic() + delay >= deadline:
                    raise
                logger.info(
                    "llm retry %d/%d in %.2f s after %s",
                    self.attempts,
                    self.limits.max_attempts,
                    delay,
                    _describe(exc)[1],
                )
                if self.cancelled.wait(delay):
                    return

    def _delay(self, exc: BaseException) -> float:
        retry_after = exc.retry_after if isinstance(exc, ProviderFailure) else None
        if retry_after is not None:
            return min(retry_after, self.limits.max_delay_seconds)
        backoff = min(self.limits.max_delay_seconds, self.limits.backoff_seconds * 2 ** (self.attempts - 1))
        # Jitter spreads the retries of many callers hit by the same outage; not a security use of random.
        return random.uniform(backoff / 2, backoff)  # noqa: S311

    def _attempt(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise OutboundTimeout()
        http = self.http
        with outbound_stream(
            http.method,
            http.url,
            headers=http.headers,
            json=http.body,
            timeout=(self.limits.connect_timeout, self.limits.read_timeout),
            total_timeout=remaining,
            # Providers are configured by admins and are often local (Ollama), so private addresses are allowed.
            allow_private=True,
        ) as stream:
            with self._lock:
                self._stream = stream
            try:
                if self.cancelled.is_set():
                    stream.abort()  # a stop that came while connecting
                if not stream.is_success:
                    raise _http_failure(stream.status_code, stream.headers, _read_capped(stream), self.adapter.api_key)
                content_type = stream.headers.get("Content-Type", "").lower()
                # A server that ignores `stream: true` answers plain JSON, which is parsed as such.
                if self.streaming and "json" not in content_type:
                    events = self.adapter.parse_stream(stream.iter_lines())
                else:
                    events = self.adapter.parse_response(load_json(stream.read().decode("utf-8", "replace"), "answer"))
                for event in events:
                    self._emit(event)
            finally:
                with self._lock:
                    self._stream = None

    def _emit(self, event: AdapterEvent) -> None:
        if isinstance(event, OutputStarted | TextDelta) and self.first_output_at is None:
            self.first_output_at = time.monotonic()
        if isinstance(event, OutputStarted):
            return
        if isinstance(event, TextDelta | ToolCallsRequested):
            self._produced = True
        self.events.put(event)


def _read_capped(stream: OutboundStream) -> bytes:
    body = bytearray()
    for chunk in stream.iter_bytes():
        body += chunk
        if len(body) >= MAX_ERROR_BODY_BYTES:
            break
    return bytes(body[:MAX_ERROR_BODY_BYTES])


# --- The public API -------------------------------------------------------------------------------


def stream_chat(
    request: LLMRequest,
    *,
    user: Any = None,
    source: str,
    stop_event: threading.Event | None = None,
    on_stream_open: Callable[[AbortCallable], None] | None = None,
    include_disabled: bool = False,
) -> Iterator[LLMEvent]:
    """Ask the model and stream its answer: TextDeltas, at most one ToolCallsRequested, then exactly one Completed.

    Raises ApplicationError NOT_FOUND (at once) for an unknown or disabled model, PROVIDER_ERROR (502, while
    iterating) when the provider fails. Setting `stop_event` (from any thread), calling the abort callable handed
    to `on_stream_open` (called once, before the provider is contacted), or closing the iterator ends the call;
    the first two end it with `Completed(finish_reason="cancelled")`. `source` is "chat", "workflow" or "system";
    `user` (a user, a user id or None) is who the call is recorded for. `include_disabled` is for admin tests.
    """
    if source not in UsageSource.values:
        raise ValueError(f"source must be one of {UsageSource.values}, not {source!r}.")
    model = resolve_model(request.model_id, include_disabled=include_disabled)
    user_id = getattr(user, "pk", user)
    return _stream(model, request, user_id, source, stop_event, on_stream_open)


def _stream(
    model: LLMModel,
    request: LLMRequest,
    user_id: Any,
    source: str,
    stop_event: threading.Event | None,
    on_stream_open: Callable[[AbortCallable], None] | None,
) -> Iterator[LLMEvent]:
    provider = model.provider
    limits = _Limits.from_settings()
    started = time.monotonic()
    outcome, error_code = UsageOutcome.ERROR, "internal_error"
    finished = False
    text_length = 0
    calls: list[ToolCall] = []
    reported: Usage | None = None
    call: _ProviderCall | None = None

    def ttft_ms() -> int | None:
        if call is None or call.first_output_at is None:
            return None
        return int((call.first_output_at - started) * 1000)

    def usage() -> Usage:
        if reported is not None:
            return reported
        produced = text_length + sum(len(c.raw_arguments) or len(json.dumps(c.arguments)) for c in calls)
        if not produced and outcome != UsageOutcome.SUCCESS:
            return Usage(0, 0, estimated=True)  # nothing came back: count nothing rather than guess
        return Usage(estimate_tokens(prompt_length(request)), estimate_tokens(produced), estimated=True)

    def completed(finish_reason: str) -> Completed:
        return Completed(usage(), finish_reason, ttft_ms(), int((time.monotonic() - started) * 1000))

    try:
        adapter = adapter_for(provider.type, provider.base_url, _api_key(provider))
        http = adapter.chat_call(request, model.name, stream=model.supports_streaming)
        call = _ProviderCall(adapter, http, streaming=model.supports_streaming, limits=limits)
        if on_stream_open is not None:
            on_stream_open(call.abort)
        call.start()
        while True:
            if stop_event is not None and stop_event.is_set():
                call.abort()
            if call.cancelled.is_set():
                outcome, error_code, finished = UsageOutcome.CANCELLED, "", True
                yield completed("cancelled")
                return
            try:
                item = call.events.get(timeout=STOP_POLL_SECONDS)
            except queue.Empty:
                continue
            if isinstance(item, TextDelta):
                text_length += len(item.text)
                yield item
            elif isinstance(item, ToolCallsRequested):
                calls.extend(item.calls)
                yield item
            elif isinstance(item, StreamEnd):
                reported = item.usage
                outcome, error_code, finished = UsageOutcome.SUCCESS, "", True
                yield completed(item.finish_reason)
                return
            elif isinstance(item, _Failed):
                raise item.error
            elif isinstance(item, _Finished) and not call.cancelled.is_set():
                raise RuntimeError("the provider call ended without an answer")
    except GeneratorExit:
        if not finished:
            outcome, error_code = UsageOutcome.CANCELLED, ""
        raise
    except (ProviderFailure, OutboundError) as exc:
        error_code = _describe(exc)[1]
        raise _provider_error(provider, exc) from None
    finally:
        if call is not None:
            call.abort()  # ends the worker if the caller left early; harmless once it is done
        _record(
            model=model,
            user_id=user_id,
            source=source,
            outcome=outcome,
            error_code=error_code,
            usage=usage(),
            latency_ms=int((time.monotonic() - started) * 1000),
            ttft_ms=ttft_ms(),
            attempts=call.attempts if call is not None else 0,
        )


def _record(
    *,
    model: LLMModel,
    user_id: Any,
    source: str,
    outcome: str,
    error_code: str,
    usage: Usage,
    latency_ms: int,
    ttft_ms: int | None,
    attempts: int,
) -> None:
    """Write the usage row and the log line of one call (never a prompt, an answer or a key)."""
    provider = model.provider
    logger.log(
        logging.WARNING if outcome == UsageOutcome.ERROR else logging.INFO,
        "llm %s model=%s provider=%s outcome=%s%s attempts=%d tokens=%d+%d%s ttft_ms=%s latency_ms=%d",
        source,
        model.id,
        provider.name,
        outcome,
        f" error={error_code}" if error_code else "",
        attempts,
        usage.prompt_tokens,
        usage.completion_tokens,
        " (estimated)" if usage.estimated else "",
        ttft_ms,
        latency_ms,
    )
    try:
        LLMUsage.objects.create(
            user_id=user_id,
            provider=provider,
            provider_name=provider.name,
            model_id=model.id,
            source=source,
            outcome=outcome,
            error_code=error_code,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            latency_ms=latency_ms,
            ttft_ms=ttft_ms,
        )
    except Exception:
        # Analytics must not take the answer down with it (nor replace the error being raised).
        logger.exception("llm usage could not be recorded for model=%s", model.id)


def complete_chat(
    request: LLMRequest,
    *,
    user: Any = None,
    source: str,
    stop_event: threading.Event | None = None,
    on_stream_open: Callable[[AbortCallable], None] | None = None,
    include_disabled: bool = False,
) -> LLMResult:
    """Ask the model and wait for the whole answer (same arguments, errors and recording as stream_chat)."""
    text: list[str] = []
    calls: list[ToolCall] = []
    for event in stream_chat(
        request,
        user=user,
        source=source,
        stop_event=stop_event,
        on_stream_open=on_stream_open,
        include_disabled=include_disabled,
    ):
        if isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, ToolCallsRequested):
            calls.extend(event.calls)
        elif isinstance(event, Completed):
            return LLMResult(
                text="".join(text),
                tool_calls=calls,
                usage=event.usage,
                finish_reason=event.finish_reason,
                ttft_ms=event.ttft_ms,
                latency_ms=event.latency_ms,
            )
    raise RuntimeError("the stream ended without a Completed event")  # stream_chat always ends with one


def list_provider_models(provider: Provider) -> list[dict[str, str]]:
    """The models the provider offers, as `[{"id", "display_name"}]`, for the admin's model import.

    Raises ApplicationError PROVIDER_ERROR when the provider cannot be reached or refuses.
    """
    limits = _Limits.from_settings()
    started = time.monotonic()
    models: dict[str, dict[str, str]] = {}
    try:
        api_key = _api_key(provider)
        adapter = adapter_for(provider.type, provider.base_url, api_key)
        cursor: str | None = None
        for _ in range(MAX_MODEL_PAGES):
            http = adapter.models_call(cursor)
            response = outbound_request(
                http.method,
                http.url,
                headers=http.headers,
                params=http.params,
                timeout=(limits.connect_timeout, limits.read_timeout),
                allow_private=True,
            )
            if not response.is_success:
                raise _http_failure(response.status_code, response.headers, response.content, api_key)
            page, cursor = adapter.parse_models(load_json(response.text, "the model list"))
            for entry in page:
                models.setdefault(entry["id"], entry)
            if not cursor:
                break
    except (ProviderFailure, OutboundError) as exc:
        logger.warning("llm list models provider=%s failed: %s", provider.name, _describe(exc)[1])
        raise _provider_error(provider, exc) from None
    logger.info(
        "llm list models provider=%s -> %d models (%d ms)",
        provider.name,
        len(models),
        int((time.monotonic() - started) * 1000),
    )
    return list(models.values())
