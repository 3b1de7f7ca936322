"""One error envelope for every failure (CONTRACT §1).

`{"error": "<human message>", "code": "<CODE>", "details": {...}}`. Domain code raises
`ApplicationError`; DRF exceptions, Django's own 404/405/500 and uncaught exceptions are all
turned into the same shape here and in `claraverse.middleware`.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response

logger = logging.getLogger("claraverse.errors")

STATUS_CODES = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "VALIDATION_ERROR",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMIT",
    500: "INTERNAL_ERROR",
    502: "PROVIDER_ERROR",
    503: "SERVICE_UNAVAILABLE",
}

DEFAULT_MESSAGES = {
    "VALIDATION_ERROR": "Invalid request data.",
    "UNAUTHORIZED": "Authentication credentials were missing or invalid.",
    "FORBIDDEN": "You do not have permission to perform this action.",
    "NOT_FOUND": "Not found.",
    "METHOD_NOT_ALLOWED": "Method not allowed.",
    "CONFLICT": "Conflict with the current state of the resource.",
    "PAYLOAD_TOO_LARGE": "Request body too large.",
    "UNSUPPORTED_MEDIA_TYPE": "Unsupported media type.",
    "RATE_LIMIT": "Rate limit exceeded.",
    "QUOTA_EXCEEDED": "Quota exceeded.",
    "INTERNAL_ERROR": "Internal server error.",
    "PROVIDER_ERROR": "An upstream provider failed.",
    "SERVICE_UNAVAILABLE": "A required service is unavailable.",
}


class ApplicationError(Exception):
    """A domain error with its envelope code, HTTP status and structured details."""

    def __init__(self, code: str, message: str | None = None, status: int | None = None, details: dict | None = None):
        self.code = code
        self.message = message or DEFAULT_MESSAGES.get(code, code)
        self.status = status or _status_for_code(code)
        self.details = details or {}
        super().__init__(self.message)

    def envelope(self) -> dict[str, Any]:
        """The JSON body of this error."""
        return envelope(self.message, self.code, self.details)


def _status_for_code(code: str) -> int:
    if code == "QUOTA_EXCEEDED":
        return 429
    for status, known in STATUS_CODES.items():
        if known == code:
            return status
    return 500


def envelope(message: str, code: str, details: dict | None = None) -> dict[str, Any]:
    """Build the error body."""
    return {"error": message, "code": code, "details": details or {}}


def envelope_response(message: str, code: str, status: int, details: dict | None = None, headers=None) -> JsonResponse:
    """A plain Django JSON response carrying the envelope (for non-DRF paths)."""
    response = JsonResponse(
        envelope(message, code, details), status=status, json_dumps_params={"separators": (",", ":")}
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _flatten_messages(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [f"{key}: {msg}" for key, inner in value.items() for msg in _flatten_messages(inner)]
    if isinstance(value, list | tuple):
        return [msg for item in value for msg in _flatten_messages(item)]
    return [str(value)]


def validation_details(detail: Any) -> dict[str, Any]:
    """Shape DRF validation detail as `{field: [messages]}`; nested structures are kept as-is."""
    if isinstance(detail, dict):
        shaped: dict[str, Any] = {}
        for field, value in detail.items():
            key = "body" if field == "non_field_errors" else str(field)
            if isinstance(value, dict):
                shaped[key] = validation_details(value)
            elif isinstance(value, list) and any(isinstance(item, dict) for item in value):
                shaped[key] = [validation_details(item) if isinstance(item, dict) else item for item in value]
            else:
                shaped[key] = [str(msg) for msg in (value if isinstance(value, list) else [value])]
        return shaped
    return {"body": _flatten_messages(detail)}


def _validation_message(details: dict[str, Any]) -> str:
    if len(details) == 1:
        field, messages = next(iter(details.items()))
        if isinstance(messages, list) and messages and isinstance(messages[0], str):
            return messages[0] if field == "body" else f"{field}: {messages[0]}"
    return DEFAULT_MESSAGES["VALIDATION_ERROR"]


def api_exception_handler(exc: Exception, context: dict) -> Response:
    """DRF exception handler: every exception becomes the envelope, never a stack trace."""
    # Imported here: rest_framework.views imports this module's handler through its settings.
    from rest_framework.views import set_rollback

    set_rollback()
    headers: dict[str, str] = {}
    if isinstance(exc, ApplicationError):
        return Response(exc.envelope(), status=exc.status)
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response(envelope(DEFAULT_MESSAGES["PAYLOAD_TOO_LARGE"], "PAYLOAD_TOO_LARGE", {"max_bytes": limit}), 413)
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied()

    if isinstance(exc, drf_exceptions.ValidationError):
        details = validation_details(exc.detail)
        body = envelope(_validation_message(details), "VALIDATION_ERROR", details)
        return Response(body, status=400)
    if isinstance(exc, drf_exceptions.ParseError):
        body = envelope("Malformed request body.", "VALIDATION_ERROR", {"body": [str(exc.detail)]})
        return Response(body, status=400)
    if isinstance(exc, drf_exceptions.Throttled):
        retry_after = max(1, math.ceil(exc.wait or 1))
        headers["Retry-After"] = str(retry_after)
        body = envelope(DEFAULT_MESSAGES["RATE_LIMIT"], "RATE_LIMIT", {"retry_after": retry_after})
        return Response(body, status=429, headers=headers)
    if isinstance(exc, drf_exceptions.NotAuthenticated | drf_exceptions.AuthenticationFailed):
        message = _detail_text(exc.detail) or DEFAULT_MESSAGES["UNAUTHORIZED"]
        return Response(envelope(message, "UNAUTHORIZED"), status=401, headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, drf_exceptions.UnsupportedMediaType):
        return Response(envelope(_detail_text(exc.detail), "UNSUPPORTED_MEDIA_TYPE"), status=415)
    if isinstance(exc, drf_exceptions.APIException):
        code = STATUS_CODES.get(exc.status_code, "INTERNAL_ERROR")
        message = _detail_text(exc.detail) or DEFAULT_MESSAGES.get(code, code)
        return Response(envelope(message, code), status=exc.status_code)
    return unexpected_error_response(exc, context.get("request"))


def _detail_text(detail: Any) -> str:
    messages = _flatten_messages(detail)
    return messages[0] if messages else ""


def unexpected_error_response(exc: Exception, request=None) -> Response:
    """Log an uncaught exception with the request id and answer 500 (or 503 for a dead database)."""
    request_id = getattr(request, "request_id", None) if request is not None else None
    if isinstance(exc, OperationalError | InterfaceError) or (
        isinstance(exc, DatabaseError) and "connection" in str(exc).lower()
    ):
        logger.error("database unavailable: %s", exc.__class__.__name__, exc_info=exc)
        body = envelope(DEFAULT_MESSAGES["SERVICE_UNAVAILABLE"], "SERVICE_UNAVAILABLE", {"request_id": request_id})
        return Response(body, status=503, headers={"Retry-After": "5"})
    logger.error("unhandled exception", exc_info=exc)
    body = envelope(DEFAULT_MESSAGES["INTERNAL_ERROR"], "INTERNAL_ERROR", {"request_id": request_id})
    return Response(body, status=500)
