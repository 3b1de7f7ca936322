"""`GET /api/proxy/image?url=` (CONTRACT §14): an image fetched through the guarded outbound client.

Public and rate limited per client IP (RATE_LIMIT_IMAGE_PROXY). Only answers that declare an
`image/*` Content-Type and whose bytes are a raster image we recognise are passed on, under the
sniffed type; SVG is refused, since it is a document that can carry script. Successful answers are
cached (key: SHA-256 of the URL) for IMAGE_PROXY_CACHE_SECONDS; failures are not.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import filetype
from django.conf import settings
from django.core.cache import cache
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from .errors import ApplicationError
from .openapi import ERROR_RESPONSES
from .outbound import OutboundError, as_application_error, outbound_request
from .pagination import validated_query
from .ratelimit import CacheRateThrottle, client_ip

DEFAULT_MAX_BYTES = 5 * 1024 * 1024
DEFAULT_CACHE_SECONDS = 3600
DEFAULT_TIMEOUT_SECONDS = 10.0
MAX_URL_LENGTH = 2048
CACHE_KEY_PREFIX = "cv.image_proxy."
# Raster formats browsers display; SVG is deliberately absent.
PROXIED_IMAGE_TYPES = frozenset(
    {"image/png", "image/apng", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp", "image/x-icon"}
)
# Served bytes are never a document: nothing in them may run, load or be framed.
CONTENT_SECURITY_POLICY = "default-src 'none'; sandbox"


@dataclass(frozen=True)
class ProxiedImage:
    """The bytes of an image and the type sniffed from them."""

    content: bytes
    content_type: str


def _cache_key(url: str) -> str:
    return CACHE_KEY_PREFIX + hashlib.sha256(url.encode("utf-8")).hexdigest()


def _not_an_image(message: str, **details) -> ApplicationError:
    return ApplicationError("UNSUPPORTED_MEDIA_TYPE", message, 415, details)


def image_proxy_fetch(*, url: str) -> ProxiedImage:
    """The image at `url`, from the cache or fetched: 400 for a refused URL, 415 for a non-image, 502 upstream."""
    key = _cache_key(url)
    cached = cache.get(key)
    if cached is not None:
        return ProxiedImage(content=cached["content"], content_type=cached["content_type"])
    max_bytes = int(getattr(settings, "IMAGE_PROXY_MAX_BYTES", DEFAULT_MAX_BYTES))
    timeout = float(getattr(settings, "IMAGE_PROXY_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS))
    try:
        response = outbound_request(
            "GET", url, headers={"Accept": "image/*"}, max_bytes=max_bytes, timeout=timeout, total_timeout=timeout
        )
    except OutboundError as exc:
        raise as_application_error(exc, field="url") from None
    if not response.is_success:
        raise ApplicationError(
            "PROVIDER_ERROR",
            f"The image server answered with status {response.status_code}.",
            502,
            {"upstream_status": response.status_code},
        )
    declared = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if not declared.startswith("image/"):
        raise _not_an_image("The URL did not answer with an image.", content_type=declared)
    if declared == "image/svg+xml":
        raise _not_an_image("SVG images are not proxied.", content_type=declared)
    kind = filetype.guess(response.content[:8192]) if response.content else None
    if kind is None or kind.mime not in PROXIED_IMAGE_TYPES:
        raise _not_an_image("The answer is not an image in a supported format.", content_type=declared)
    image = ProxiedImage(content=response.content, content_type=kind.mime)
    cache_seconds = int(getattr(settings, "IMAGE_PROXY_CACHE_SECONDS", DEFAULT_CACHE_SECONDS))
    if cache_seconds > 0:
        cache.set(key, {"content": image.content, "content_type": image.content_type}, cache_seconds)
    return image


class BinaryContentNegotiation(DefaultContentNegotiation):
    """For views answering raw bytes: the client's Accept header cannot turn them into a 406; errors stay JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class ImageProxyThrottle(CacheRateThrottle):
    """RATE_LIMIT_IMAGE_PROXY per client IP, in place of the public-read limit."""

    limit_name = "image_proxy"
    limit_setting = "RATE_LIMIT_IMAGE_PROXY"

    def identity(self, request, view) -> str | None:
        return client_ip(request.META)


class ImageProxyParamsSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=MAX_URL_LENGTH, help_text="The http(s) URL of the image.")


class ImageProxyView(APIView):
    """Public image proxy: outbound rules of CONTRACT §7, images only, capped, cached, rate limited per IP."""

    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = [ImageProxyThrottle]
    content_negotiation_class = BinaryContentNegotiation

    @extend_schema(
        operation_id="image_proxy",
        parameters=[ImageProxyParamsSerializer],
        responses={
            (200, "image/*"): OpenApiResponse(
                response=OpenApiTypes.BINARY, description="The image, under the type sniffed from its bytes."
            ),
            **ERROR_RESPONSES.pick(400, 415, 429, 502),
        },
        tags=["public"],
        description=(
            "Public, rate limited per IP. 400 for a missing URL or a refused scheme or address (private networks, "
            "also after redirects), 415 when the answer is not a raster image (SVG is refused), 502 when the "
            "image server fails, times out or sends more than IMAGE_PROXY_MAX_BYTES."
        ),
    )
    def get(self, request):
        params = validated_query(ImageProxyParamsSerializer, request.query_params)
        image = image_proxy_fetch(url=params["url"])
        cache_seconds = int(getattr(settings, "IMAGE_PROXY_CACHE_SECONDS", DEFAULT_CACHE_SECONDS))
        response = HttpResponse(image.content, content_type=image.content_type)
        response["Cache-Control"] = f"public, max-age={cache_seconds}"
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return response
