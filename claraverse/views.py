"""Public endpoints owned by the core: health and the privacy policy."""

from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

import claraverse

from .errors import ApplicationError
from .health import health_report
from .openapi import ERROR_RESPONSES
from .timeutils import isoformat_z

HealthSerializer = inline_serializer(
    name="Health",
    fields={
        "status": serializers.ChoiceField(choices=["healthy", "degraded"]),
        "checks": inline_serializer(
            name="HealthChecks",
            fields={
                "database": serializers.ChoiceField(choices=["ok", "down"]),
                "cache": serializers.ChoiceField(choices=["ok", "down"]),
                "broker": serializers.ChoiceField(choices=["ok", "down"]),
            },
        ),
        "version": serializers.CharField(),
        "timestamp": serializers.DateTimeField(),
    },
)

PrivacyPolicySerializer = inline_serializer(
    name="PrivacyPolicy",
    fields={"content": serializers.CharField(), "updated_at": serializers.DateTimeField()},
)


class HealthView(APIView):
    """Liveness and dependency status; never rate limited."""

    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = []

    @extend_schema(operation_id="health", responses={200: HealthSerializer, 503: HealthSerializer}, tags=["public"])
    def get(self, request):
        checks, database_up = health_report()
        healthy = all(state == "ok" for state in checks.values())
        body = {
            "status": "healthy" if healthy else "degraded",
            "checks": checks,
            "version": claraverse.__version__,
            "timestamp": isoformat_z(datetime.now(UTC)),
        }
        return Response(body, status=200 if database_up else 503)


class PrivacyPolicyView(APIView):
    """The operator's privacy policy, read from PRIVACY_POLICY_FILE."""

    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(
        operation_id="privacy_policy",
        responses={200: PrivacyPolicySerializer, **ERROR_RESPONSES.pick(404, 429)},
        tags=["public"],
    )
    def get(self, request):
        path = Path(settings.PRIVACY_POLICY_FILE)
        try:
            content = path.read_text(encoding="utf-8")
            modified = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            raise ApplicationError("NOT_FOUND", "No privacy policy is configured.") from None
        return Response({"content": content, "updated_at": isoformat_z(modified)})
