"""Helpers shared by the built-in tools that reach the network: guarded calls, caps, safe messages."""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.conf import settings

from claraverse.outbound import OutboundError, OutboundResponse, outbound_request, outbound_stream
from integrations.tools.registry import MAX_RESULT_BYTES, ToolExecutionError

DEFAULT_TOOL_HTTP_TIMEOUT_SECONDS = 20.0
# The registry shrinks any result above MAX_RESULT_BYTES; a tool that fits its own text first can say truthfully
# where it stopped (next_offset, truncated). The rest of the budget is for the result's other, short fields.
TEXT_RESULT_BUDGET_BYTES = MAX_RESULT_BYTES - 4096
# A cap on what the stream reader is told, so a huge declared Content-Length does not fail the call up front:
# the tools stop reading at their own, smaller cap and report the text as truncated instead.
_UNBOUNDED_STREAM_BYTES = 1 << 62
_REDACTED = "[redacted]"
# Secrets shorter than this are not worth redacting and would garble ordinary text ("ok", "1").
_MIN_REDACTED_LENGTH = 6
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def tool_http_timeout() -> float:
    """The overall time budget (seconds) of one outbound call made by a tool (TOOL_HTTP_TIMEOUT_SECONDS)."""
    return float(getattr(settings, "TOOL_HTTP_TIMEOUT_SECONDS", DEFAULT_TOOL_HTTP_TIMEOUT_SECONDS))


def redact(text: str, secrets: Iterable[Any]) -> str:
    """`text` with every occurrence of each non-trivial secret replaced by a marker (longest secrets first)."""
    for secret in sorted((s for s in secrets if isinstance(s, str)), key=len, reverse=True):
        if len(secret) >= _MIN_REDACTED_LENGTH:
            text = text.replace(secret, _REDACTED)
    return text


def url_secrets(url: str) -> list[str]:
    """The parts of a secret URL that a server might echo back: the URL, its path and its token-like pieces."""
    secrets = [url]
    try:
        parts = urlsplit(url)
    except ValueError:
        return secrets
    if parts.path.strip("/"):
        secrets.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    pieces = [unquote(segment) for segment in parts.path.split("/")]
    pieces += [value for _, value in parse_qsl(parts.query)]
    # Tokens are long or mix in digits ("services" and "api" are not secret, "T0001ABCD" and long ids may be).
    secrets += [piece for piece in pieces if len(piece) >= 16 or (len(piece) >= 8 and any(c.isdigit() for c in piece))]
    # Longest first, so that a token inside the path is not redacted before the path itself is.
    return sorted(set(secrets), key=len, reverse=True)


def peer_excerpt(text: str, secrets: Iterable[Any] = (), limit: int = 200) -> str:
    """A short, printable, redacted excerpt of what a remote server said, for an error message."""
    flat = " ".join(_CONTROL_CHARACTERS.sub(" ", redact(text, secrets)).split())
    return flat if len(flat) <= limit else flat[:limit] + "…"


def _encoded_size(text: str) -> int:
    # The size the registry will measure: JSON-escaped, UTF-8.
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8"))


def clip(text: str, max_chars: int, max_bytes: int = TEXT_RESULT_BUDGET_BYTES) -> tuple[str, bool]:
    """`text` cut to at most `max_chars` characters and `max_bytes` JSON-encoded bytes, and whether it was cut."""
    cut = len(text) > max_chars
    text = text[:max_chars]
    if _encoded_size(text) <= max_bytes:
        return text, cut
    # The encoded size only grows with the prefix, so the longest prefix that fits is found by bisection.
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if _encoded_size(text[:middle]) <= max_bytes:
            low = middle
        else:
            high = middle - 1
    return text[:low], True


def header_charset(content_type: str) -> str | None:
    """The charset a Content-Type header names, if Python knows it."""
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip("'\"")
            try:
                codecs.lookup(charset)
            except LookupError:
                return None
            return charset
    return None


def guarded_request(
    method: str, url: str, *, failure: str, secrets: Iterable[Any] = (), **options: Any
) -> OutboundResponse:
    """One outbound_request whose failures become a ToolExecutionError: '`failure`: <the guard's safe message>'."""
    options.setdefault("total_timeout", tool_http_timeout())
    options.setdefault("timeout", options["total_timeout"])
    try:
        return outbound_request(method, url, **options)
    except OutboundError as exc:
        raise ToolExecutionError(f"{failure}: {redact(exc.message, secrets)}")


@dataclass(frozen=True)
class CappedResponse:
    """A response whose body was read up to a byte cap: what arrived, and whether more was left unread."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes
    url: str
    truncated: bool


def capped_request(
    method: str, url: str, *, max_bytes: int, failure: str, timeout: float | None = None, **options: Any
) -> CappedResponse:
    """A guarded request that keeps the first `max_bytes` of the body instead of failing on a larger one."""
    budget = tool_http_timeout() if timeout is None else timeout
    try:
        with outbound_stream(
            method, url, timeout=budget, total_timeout=budget, max_bytes=_UNBOUNDED_STREAM_BYTES, **options
        ) as stream:
            chunks: list[bytes] = []
            received = 0
            truncated = False
            for chunk in stream.iter_bytes():
                chunks.append(chunk)
                received += len(chunk)
                if received > max_bytes:
                    truncated = True
                    break
            # Leaving the block closes the connection, so the rest of a large body is never downloaded.
            return CappedResponse(
                status_code=stream.status_code,
                headers=stream.headers,
                content=b"".join(chunks)[:max_bytes],
                url=stream.url,
                truncated=truncated,
            )
    except OutboundError as exc:
        raise ToolExecutionError(f"{failure}: {exc.message}")


def credential_value(fields: Mapping[str, Any], name: str, service: str) -> str:
    """The non-empty string field `name` of a credential, or a ToolExecutionError naming what is missing."""
    value = fields.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ToolExecutionError(f"The {service} credential has no '{name}'; edit the credential and add it.")
    return value.strip()
