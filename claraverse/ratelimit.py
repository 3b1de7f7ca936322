"""Request-rate limits (CONTRACT §13), counted in the shared cache so processes share one count.

Each limit is a number of requests per minute read from settings at request time. Counting uses
django-ratelimit's fixed windows (atomic `add` + `incr` in the cache). Global and public limits
are per client IP, authenticated and upload limits per user, WebSocket connection attempts per IP.
If the cache is unreachable the limiter fails open and logs it: an outage of Redis must not turn
every request into a 429.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest
from django_ratelimit.core import get_usage
from rest_framework.permissions import AllowAny
from rest_framework.throttling import BaseThrottle

from .errors import DEFAULT_MESSAGES, envelope_response

logger = logging.getLogger("claraverse.ratelimit")


@dataclass(frozen=True)
class RateDecision:
    """The outcome of counting one request against a limit."""

    allowed: bool
    retry_after: int


@dataclass(frozen=True)
class _CountedRequest:
    # get_usage only reads `method` from the request it is given.
    method: str = "GET"


def consume(limit_name: str, identity: str, per_minute: int) -> RateDecision:
    """Count one request for `identity` under `limit_name`; say whether it is within `per_minute`."""
    if per_minute <= 0:
        return RateDecision(allowed=True, retry_after=0)
    try:
        usage = get_usage(
            _CountedRequest(),
            group=f"cv.{limit_name}",
            key=lambda _group, _request: identity,
            rate=f"{per_minute}/m",
            increment=True,
        )
    except Exception:  # the cache backend is down: fail open, but say so
        logger.warning("rate limit cache unavailable; not limiting %s", limit_name, exc_info=True)
        return RateDecision(allowed=True, retry_after=0)
    if usage is None or usage["time_left"] < 0:
        return RateDecision(allowed=True, retry_after=0)
    return RateDecision(allowed=not usage["should_limit"], retry_after=max(1, usage["time_left"]))


def client_ip(meta: dict) -> str:
    """The client address, trusting exactly TRUSTED_PROXY_COUNT entries of X-Forwarded-For."""
    remote = meta.get("REMOTE_ADDR") or "unknown"
    hops = settings.TRUSTED_PROXY_COUNT
    if hops > 0:
        forwarded = [part.strip() for part in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= hops:
            candidate = forwarded[-hops]
            try:
                return str(ipaddress.ip_address(candidate))
            except ValueError:
                pass
    return remote


def rate_limited_response(retry_after: int):
    """The 429 answer for a non-DRF path."""
    return envelope_response(
        DEFAULT_MESSAGES["RATE_LIMIT"],
        "RATE_LIMIT",
        429,
        {"retry_after": retry_after},
        headers={"Retry-After": str(retry_after)},
    )


class GlobalApiRateLimitMiddleware:
    """RATE_LIMIT_GLOBAL_API per client IP over every `/api/` request, before any other work."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        if request.path.startswith("/api/"):
            decision = consume("global", client_ip(request.META), settings.RATE_LIMIT_GLOBAL_API)
            if not decision.allowed:
                return rate_limited_response(decision.retry_after)
        return self.get_response(request)


def is_public_view(view) -> bool:
    """A view anyone may call (its permissions include AllowAny)."""
    return any(permission is AllowAny for permission in getattr(view, "permission_classes", ()))


class CacheRateThrottle(BaseThrottle):
    """A DRF throttle over `consume`; subclasses say which requests count and under what identity."""

    limit_name = ""
    limit_setting = ""

    def identity(self, request, view) -> str | None:
        raise NotImplementedError  # pragma: no cover - abstract

    def allow_request(self, request, view) -> bool:
        identity = self.identity(request, view)
        if identity is None:
            return True
        decision = consume(self.limit_name, identity, getattr(settings, self.limit_setting))
        self._retry_after = decision.retry_after
        return decision.allowed

    def wait(self) -> float:
        return float(getattr(self, "_retry_after", 60))


class PublicReadThrottle(CacheRateThrottle):
    """RATE_LIMIT_PUBLIC_READ per client IP on endpoints that need no authentication."""

    limit_name = "public"
    limit_setting = "RATE_LIMIT_PUBLIC_READ"

    def identity(self, request, view) -> str | None:
        return client_ip(request.META) if is_public_view(view) else None


class AuthenticatedThrottle(CacheRateThrottle):
    """RATE_LIMIT_AUTHENTICATED per user on endpoints that need authentication."""

    limit_name = "user"
    limit_setting = "RATE_LIMIT_AUTHENTICATED"

    def identity(self, request, view) -> str | None:
        if is_public_view(view) or not request.user or not request.user.is_authenticated:
            return None
        return str(request.user.pk)


def websocket_connection_allowed(ip: str) -> RateDecision:
    """Count a WebSocket connection attempt from `ip` against RATE_LIMIT_WEBSOCKET."""
    return consume("websocket", ip, settings.RATE_LIMIT_WEBSOCKET)
