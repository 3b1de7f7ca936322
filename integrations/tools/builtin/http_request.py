"""`http_request`: one HTTP request to a public URL, through the guarded outbound client.

Any status is a result, not a failure: the caller (a model or a workflow) decides what a 404 means.
Only network-level problems (refused destination, timeout, unreachable host) fail the call.
"""

from __future__ import annotations

import json
from contextlib import suppress
from typing import Any

from django.conf import settings

from integrations.tools.builtin.common import capped_request, clip, header_charset
from integrations.tools.builtin.scrape import MAX_URL_LENGTH, URL_PATTERN
from integrations.tools.registry import Tool, ToolContext, ToolExecutionError

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
DEFAULT_HTTP_MAX_RESPONSE_BYTES = 1024 * 1024
DEFAULT_TIMEOUT_MS = 15_000
MAX_TIMEOUT_MS = 60_000
MIN_TIMEOUT_MS = 100
MAX_BODY_CHARS = 14_000
# Body and parsed JSON both go back to the model; together they must stay under the registry's result cap.
MAX_BODY_RESULT_BYTES = 14 * 1024
MAX_REQUEST_BODY_BYTES = 1024 * 1024
MAX_HEADERS = 50
MAX_RESPONSE_HEADER_BYTES = 2048
MAX_HEADER_VALUE_CHARS = 256
# Framing and routing headers are the client's job: letting a model set them could desynchronise the connection.
RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer"})
_JSON_TYPES = ("application/json", "text/json")


def http_max_response_bytes() -> int:
    """How much of a response body http_request reads at most (TOOL_HTTP_MAX_RESPONSE_BYTES)."""
    return int(getattr(settings, "TOOL_HTTP_MAX_RESPONSE_BYTES", DEFAULT_HTTP_MAX_RESPONSE_BYTES))


def _request_body(body: Any, headers: dict[str, str]) -> dict[str, Any]:
    if body is None:
        return {}
    has_content_type = any(name.lower() == "content-type" for name in headers)
    if isinstance(body, str):
        data = body.encode("utf-8")
        if not has_content_type:
            headers["Content-Type"] = "text/plain; charset=utf-8"
    else:
        data = json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")
        if not has_content_type:
            headers["Content-Type"] = "application/json"
    if len(data) > MAX_REQUEST_BODY_BYTES:
        raise ToolExecutionError(f"The request body is larger than {MAX_REQUEST_BODY_BYTES} bytes.")
    return {"data": data}


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type in _JSON_TYPES or media_type.endswith("+json")


def _execute(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    method = arguments.get("method", "GET")
    headers = dict(arguments.get("headers") or {})
    reserved = sorted(name for name in headers if name.strip().lower() in RESERVED_HEADERS)
    if reserved:
        raise ToolExecutionError(f"The header '{reserved[0][:64]}' is set automatically and cannot be given.")
    if arguments.get("body") is not None and method in ("GET", "HEAD"):
        raise ToolExecutionError(f"A {method} request cannot have a body; use POST, PUT or PATCH.")
    query = arguments.get("query") or None
    if query is not None:
        # requests writes True as 'True'; APIs expect the JSON spelling.
        query = {name: json.dumps(value) if isinstance(value, bool) else value for name, value in query.items()}
    body_options = _request_body(arguments.get("body"), headers)

    response = capped_request(
        method,
        arguments["url"].strip(),
        max_bytes=http_max_response_bytes(),
        failure="The request failed",
        timeout=arguments.get("timeout_ms", DEFAULT_TIMEOUT_MS) / 1000,
        headers=headers,
        params=query,
        **body_options,
    )
    content_type = response.headers.get("Content-Type", "")
    text = response.content.decode(header_charset(content_type) or "utf-8", errors="replace")
    body, cut = clip(text, MAX_BODY_CHARS, MAX_BODY_RESULT_BYTES)
    result: dict[str, Any] = {
        "status": response.status_code,
        "url": response.url,
        "headers": _response_headers(response.headers),
        "body": body,
        "truncated": cut or response.truncated,
    }
    if not result["truncated"] and _is_json(content_type):
        # A server mislabelling its body is common; the text is still there, so a parse failure is no error.
        with suppress(ValueError):
            result["json"] = json.loads(text)
    return result


def _response_headers(headers: Any) -> dict[str, str]:
    kept: dict[str, str] = {}
    used = 0
    for name, value in headers.items():
        value = value[:MAX_HEADER_VALUE_CHARS]
        used += len(name) + len(value)
        if used > MAX_RESPONSE_HEADER_BYTES:
            break
        kept[name.lower()] = value
    return kept


HTTP_REQUEST = Tool(
    name="http_request",
    display_name="HTTP Request",
    description=(
        "Send an HTTP request to a public http or https URL (e.g. a REST API) and return the status, response "
        "headers and body (parsed into 'json' when the response is JSON). Any status is returned as a result. "
        "A body that is an object or array is sent as JSON; a string is sent as is."
    ),
    category="web",
    icon="Send",
    parameters={
        "type": "object",
        "properties": {
            "method": {"type": "string", "enum": list(METHODS), "default": "GET", "description": "The HTTP method."},
            "url": {
                "type": "string",
                "pattern": URL_PATTERN,
                "maxLength": MAX_URL_LENGTH,
                "description": "The full URL, starting with http:// or https://.",
            },
            "headers": {
                "type": "object",
                "additionalProperties": {"type": "string", "maxLength": 8192},
                "maxProperties": MAX_HEADERS,
                "description": 'Request headers, e.g. {"Accept": "application/json"}.',
            },
            "query": {
                "type": "object",
                "additionalProperties": {"type": ["string", "number", "boolean"]},
                "maxProperties": MAX_HEADERS,
                "description": 'Query-string parameters added to the URL, e.g. {"page": 2}.',
            },
            "body": {
                "description": "The request body: an object or array (sent as JSON) or a string (sent as is).",
            },
            "timeout_ms": {
                "type": "integer",
                "minimum": MIN_TIMEOUT_MS,
                "maximum": MAX_TIMEOUT_MS,
                "default": DEFAULT_TIMEOUT_MS,
                "description": f"Give up after this many milliseconds (default {DEFAULT_TIMEOUT_MS}).",
            },
        },
        "required": ["url"],
        "additionalProperties": False,
    },
    execute=_execute,
    keywords=("http", "api", "rest", "request", "get", "post", "fetch", "endpoint", "json", "call", "url", "curl"),
)
