"""Shared OpenAPI pieces: the error envelope and its responses, the auth schemes."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorEnvelopeSerializer = inline_serializer(
    name="ErrorEnvelope",
    fields={
        "error": serializers.CharField(help_text="Human-readable message."),
        "code": serializers.CharField(help_text="Machine-readable code, e.g. VALIDATION_ERROR."),
        "details": serializers.DictField(help_text="Structured details, e.g. {field: [messages]}."),
    },
)

_DESCRIPTIONS = {
    400: "VALIDATION_ERROR: bad input; details map each field to messages.",
    401: "UNAUTHORIZED: missing, malformed, expired or revoked credentials.",
    403: "FORBIDDEN: authenticated but not allowed.",
    404: "NOT_FOUND: unknown id or another user's object.",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMIT (with Retry-After) or QUOTA_EXCEEDED.",
    502: "PROVIDER_ERROR: an upstream provider failed.",
    503: "SERVICE_UNAVAILABLE",
}


class _ErrorResponses:
    """`ERROR_RESPONSES.pick(400, 404)` -> the `responses` entries for those error statuses."""

    def pick(self, *statuses: int) -> dict[int, OpenApiResponse]:
        return {
            status: OpenApiResponse(response=ErrorEnvelopeSerializer, description=_DESCRIPTIONS[status])
            for status in statuses
        }


ERROR_RESPONSES = _ErrorResponses()


def list_response(name: str, plural: str, item_serializer) -> serializers.Serializer:
    """The schema of a list answer `{<plural>: [...], total, limit, offset}` (CONTRACT §1)."""
    return inline_serializer(
        name=name,
        fields={
            plural: item_serializer(many=True),
            "total": serializers.IntegerField(),
            "limit": serializers.IntegerField(),
            "offset": serializers.IntegerField(),
        },
    )


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Documents `Authorization: Bearer <access token>`."""

    target_class = "accounts.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
