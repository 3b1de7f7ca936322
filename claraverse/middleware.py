"""Request ids, and the error envelope for failures that happen outside DRF views."""

import logging
import re
import secrets

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from .errors import DEFAULT_MESSAGES, STATUS_CODES, envelope_response, unexpected_error_response
from .logging import current_request_id

logger = logging.getLogger("claraverse.request")

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

# Paths whose errors keep Django's own pages (the operator admin site and static files).
_HTML_PATH_PREFIXES = ("/admin/", "/static/")


def _client_request_id(request: HttpRequest) -> str | None:
    supplied = request.headers.get(REQUEST_ID_HEADER, "")
    return supplied if _VALID_REQUEST_ID.match(supplied) else None


class RequestIdMiddleware:
    """Gives each request an id (a sane client `X-Request-ID` or a fresh one) for logs and answers."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = _client_request_id(request) or secrets.token_hex(8)
        request.request_id = request_id
        token = current_request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            current_request_id.reset(token)
        response[REQUEST_ID_HEADER] = request_id
        return response


class ErrorEnvelopeMiddleware:
    """Turns Django's own error pages (unknown route, 405, 413, uncaught exception) into the envelope.

    DRF views already answer with the envelope through `claraverse.errors.api_exception_handler`;
    this covers what never reaches a DRF view.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path:
            # `%00` in a path: no route or id holds a NUL, and PostgreSQL refuses one in any query
            # parameter, so looking the id up would end in a 500 rather than the 404 it is.
            return envelope_response(DEFAULT_MESSAGES["NOT_FOUND"], "NOT_FOUND", 404)
        response = self.get_response(request)
        if response.status_code < 400 or request.path.startswith(_HTML_PATH_PREFIXES):
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        code = STATUS_CODES.get(
            response.status_code, "INTERNAL_ERROR" if response.status_code >= 500 else "VALIDATION_ERROR"
        )
        details = {}
        if code == "INTERNAL_ERROR":
            details = {"request_id": getattr(request, "request_id", None)}
        if code == "PAYLOAD_TOO_LARGE":
            details = {"max_bytes": settings.DATA_UPLOAD_MAX_MEMORY_SIZE}
        headers = {}
        if response.has_header("Allow"):
            headers["Allow"] = response["Allow"]
        return envelope_response(DEFAULT_MESSAGES.get(code, code), code, response.status_code, details, headers)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """An exception escaping a non-DRF view: log it with the request id, answer 500/503."""
        if request.path.startswith(_HTML_PATH_PREFIXES):
            return None  # the admin site keeps Django's own handling (403 pages, login redirects)
        from django.core.exceptions import RequestDataTooBig
        from django.http import Http404

        if isinstance(exception, Http404):
            return envelope_response(DEFAULT_MESSAGES["NOT_FOUND"], "NOT_FOUND", 404)
        if isinstance(exception, RequestDataTooBig):
            return envelope_response(
                DEFAULT_MESSAGES["PAYLOAD_TOO_LARGE"],
                "PAYLOAD_TOO_LARGE",
                413,
                {"max_bytes": settings.DATA_UPLOAD_MAX_MEMORY_SIZE},
            )
        drf_response = unexpected_error_response(exception, request)
        return envelope_response(
            drf_response.data["error"],
            drf_response.data["code"],
            drf_response.status_code,
            drf_response.data["details"],
        )
