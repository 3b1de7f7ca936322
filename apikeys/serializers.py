"""API key and trigger shapes (API.md, CONTRACT §6)."""

from rest_framework import serializers

from claraverse.serializers import JsonObjectField, StrictInputSerializer

from .models import ApiKey
from .services import SCOPES


class ApiKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "scopes",
            "agent_ids",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
        ]


class ApiKeyCreatedSerializer(serializers.Serializer):
    """The create answer: the only time the full key and the webhook secret are shown."""

    id = serializers.CharField()
    name = serializers.CharField()
    key = serializers.CharField()
    prefix = serializers.CharField()
    scopes = serializers.ListField(child=serializers.CharField())
    agent_ids = serializers.ListField(child=serializers.CharField())
    webhook_secret = serializers.CharField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)


class ApiKeyCreateSerializer(StrictInputSerializer):
    name = serializers.CharField(min_length=1, max_length=200)
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=SCOPES), min_length=1, max_length=len(SCOPES))
    agent_ids = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, default=list, max_length=100
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True)

    def validate_expires_at(self, value):
        from django.utils import timezone

        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("Must be in the future.")
        return value


class TriggerInputSerializer(StrictInputSerializer):
    input = JsonObjectField(required=False, default=dict, max_bytes=256 * 1024)
    webhook_url = serializers.URLField(required=False, allow_blank=True, max_length=2000)

    def validate_webhook_url(self, value: str) -> str:
        if value and not value.lower().startswith(("http://", "https://")):
            raise serializers.ValidationError("Must be an http or https URL.")
        return value


class TriggerAcceptedSerializer(serializers.Serializer):
    execution_id = serializers.CharField()
    status = serializers.CharField()
    message = serializers.CharField()


class TriggerStatusSerializer(serializers.Serializer):
    execution_id = serializers.CharField(source="id")
    status = serializers.CharField()
    output = serializers.JSONField(allow_null=True)
    error = serializers.SerializerMethodField()
    started_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    duration_ms = serializers.IntegerField(allow_null=True)

    def get_error(self, execution) -> str | None:
        return execution.error or None
