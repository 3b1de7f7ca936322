"""Shapes of providers and models (CONTRACT §11)."""

import re

from rest_framework import serializers

from claraverse.pagination import PageParamsSerializer
from claraverse.serializers import StrictInputSerializer

from .models import LLMModel, Provider, ProviderType

# Public model ids may hold `/` and `:` (e.g. `meta-llama/llama-3.1-8b:free`).
MODEL_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+/-]{0,199}$")
_RESERVED_MODEL_ID_SUFFIXES = ("/benchmark", "/test/connection")


class ProviderSerializer(serializers.ModelSerializer):
    """A provider as the admin sees it; never the key, only its masked preview."""

    class Meta:
        model = Provider
        fields = ["id", "name", "type", "base_url", "enabled", "api_key_preview", "created_at"]


class PublicProviderSerializer(serializers.ModelSerializer):
    """A provider as anyone sees it: no endpoint, no key preview."""

    class Meta:
        model = Provider
        fields = ["id", "name", "type", "enabled", "created_at"]


class ModelSerializer(serializers.ModelSerializer):
    """A model (CONTRACT §11)."""

    provider_id = serializers.CharField(source="provider.id", read_only=True)

    class Meta:
        model = LLMModel
        fields = [
            "id",
            "provider_id",
            "name",
            "display_name",
            "context_length",
            "supports_tools",
            "supports_streaming",
            "supports_vision",
            "enabled",
        ]


class AdminModelSerializer(ModelSerializer):
    """A model plus its last connection test and benchmark, for admins."""

    class Meta(ModelSerializer.Meta):
        fields = [*ModelSerializer.Meta.fields, "last_connection_test", "last_benchmark", "created_at", "updated_at"]


def _http_url(value: str) -> str:
    if not re.match(r"^https?://", value, re.IGNORECASE):
        raise serializers.ValidationError("Must be an http or https URL.")
    return value.rstrip("/")


class ProviderCreateSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=100)
    type = serializers.ChoiceField(choices=ProviderType.choices)
    base_url = serializers.URLField(max_length=500, required=False)
    api_key = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="", trim_whitespace=True)
    enabled = serializers.BooleanField(required=False, default=True)

    def validate_base_url(self, value: str) -> str:
        return _http_url(value)


class ProviderUpdateSerializer(ProviderCreateSerializer):
    name = serializers.CharField(max_length=100, required=False)
    type = serializers.ChoiceField(choices=ProviderType.choices, required=False)
    api_key = serializers.CharField(max_length=2000, required=False, allow_blank=True, trim_whitespace=True)
    enabled = serializers.BooleanField(required=False)


class ModelUpdateSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=200, required=False)
    display_name = serializers.CharField(max_length=200, required=False)
    context_length = serializers.IntegerField(min_value=1, max_value=10_000_000, required=False)
    supports_tools = serializers.BooleanField(required=False)
    supports_streaming = serializers.BooleanField(required=False)
    supports_vision = serializers.BooleanField(required=False)
    enabled = serializers.BooleanField(required=False)


class ModelCreateSerializer(ModelUpdateSerializer):
    id = serializers.CharField(max_length=200)
    provider_id = serializers.CharField(max_length=40)

    def validate_id(self, value: str) -> str:
        if not MODEL_ID_PATTERN.match(value) or value.endswith(("/",)) or "//" in value:
            raise serializers.ValidationError(
                "Use letters, digits and . _ : @ + / - (starting with a letter or digit, no empty path segments)."
            )
        if value.endswith(_RESERVED_MODEL_ID_SUFFIXES):
            raise serializers.ValidationError("An id may not end with /benchmark or /test/connection.")
        return value


class ImportedModelsSerializer(serializers.Serializer):
    """`POST /api/admin/providers/:id/models/import`."""

    imported = AdminModelSerializer(many=True)
    skipped = serializers.ListField(child=serializers.DictField())


class ConnectionTestSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    latency_ms = serializers.IntegerField()
    message = serializers.CharField()


class BenchmarkSerializer(serializers.Serializer):
    model_id = serializers.CharField()
    runs = serializers.IntegerField()
    ttft_ms = serializers.IntegerField(allow_null=True)
    tokens_per_second = serializers.FloatField()
    latency_ms = serializers.IntegerField()
    structured_output_pass_rate = serializers.FloatField(help_text="Ratio from 0 to 1.")
    tested_at = serializers.DateTimeField()


class RecommendedModelsSerializer(serializers.Serializer):
    default = serializers.CharField(allow_null=True)
    fast = serializers.CharField(allow_null=True)
    smart = serializers.CharField(allow_null=True)


# --- Credentials -------------------------------------------------------------------------------


class CredentialTestResultSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    message = serializers.CharField()
    tested_at = serializers.DateTimeField()


class CredentialSerializer(serializers.Serializer):
    """A credential as its owner sees it: never a secret, only a masked preview (CONTRACT §8)."""

    id = serializers.CharField()
    integration_id = serializers.CharField()
    name = serializers.CharField()
    preview = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)
    last_test = CredentialTestResultSerializer(allow_null=True)


class CredentialCreateSerializer(StrictInputSerializer):
    integration_id = serializers.CharField(max_length=64)
    name = serializers.CharField(min_length=1, max_length=200)
    credentials = serializers.DictField()


class CredentialUpdateSerializer(StrictInputSerializer):
    name = serializers.CharField(min_length=1, max_length=200, required=False)
    credentials = serializers.DictField(required=False)


class CredentialListParamsSerializer(PageParamsSerializer):
    integration_id = serializers.CharField(max_length=64, required=False)


class TestResultSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    message = serializers.CharField()


# --- Tools and integrations ----------------------------------------------------------------------


class ToolSerializer(serializers.Serializer):
    name = serializers.CharField()
    display_name = serializers.CharField()
    description = serializers.CharField()
    category = serializers.CharField()
    icon = serializers.CharField()
    parameters = serializers.DictField()
    requires_integration = serializers.CharField(allow_null=True)


class ToolListSerializer(serializers.Serializer):
    tools = ToolSerializer(many=True)


class RecommendInputSerializer(StrictInputSerializer):
    task = serializers.CharField(min_length=1, max_length=2000)
    limit = serializers.IntegerField(required=False, default=5, min_value=1, max_value=20)


class RecommendationSerializer(serializers.Serializer):
    name = serializers.CharField()
    score = serializers.FloatField(help_text="Relevance from 0 to 1.")
    reason = serializers.CharField()


class RecommendationsSerializer(serializers.Serializer):
    recommendations = RecommendationSerializer(many=True)


class IntegrationFieldSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField()
    required = serializers.BooleanField()
    secret = serializers.BooleanField()
    description = serializers.CharField()


class IntegrationSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    icon = serializers.CharField()
    auth_type = serializers.CharField()
    fields = IntegrationFieldSerializer(many=True)


class IntegrationListSerializer(serializers.Serializer):
    integrations = IntegrationSerializer(many=True)


class RegistrySerializer(serializers.Serializer):
    tools = ToolSerializer(many=True)
    categories = serializers.ListField(child=serializers.DictField())
    node_types = serializers.ListField(child=serializers.DictField())
