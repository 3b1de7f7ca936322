"""Agent shapes and input validation (CONTRACT §3)."""

import re

from rest_framework import serializers

from claraverse.pagination import PageParamsSerializer
from claraverse.serializers import StrictInputSerializer
from integrations.serializers import MODEL_ID_PATTERN
from integrations.tools import tool_registry

from .models import Agent

AGENT_ID_PATTERN = re.compile(r"^agent_[A-Za-z0-9_-]{1,58}$")
SORT_FIELDS = ["created_at", "updated_at", "name"]


class AgentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Agent
        fields = [
            "id",
            "name",
            "description",
            "model",
            "system_prompt",
            "tools",
            "temperature",
            "created_at",
            "updated_at",
        ]


class AgentUpdateSerializer(StrictInputSerializer):
    """Partial update: only the fields sent change."""

    name = serializers.CharField(min_length=1, max_length=200, required=False)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    model = serializers.CharField(max_length=200, required=False, allow_blank=True)
    system_prompt = serializers.CharField(max_length=100_000, required=False, allow_blank=True, trim_whitespace=False)
    tools = serializers.ListField(child=serializers.CharField(max_length=100), max_length=64, required=False)
    temperature = serializers.FloatField(min_value=0, max_value=2, required=False)

    def validate_name(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("Must not be blank.")
        return value.strip()

    def validate_model(self, value: str) -> str:
        if value and not MODEL_ID_PATTERN.match(value):
            raise serializers.ValidationError("Not a valid model id.")
        return value

    def validate_tools(self, value: list[str]) -> list[str]:
        unknown = [name for name in value if tool_registry.get(name) is None]
        if unknown:
            raise serializers.ValidationError(f"Unknown tools: {', '.join(unknown)}.")
        return list(dict.fromkeys(value))


class AgentCreateSerializer(AgentUpdateSerializer):
    name = serializers.CharField(min_length=1, max_length=200)


class AgentListParamsSerializer(PageParamsSerializer):
    sort = serializers.ChoiceField(
        choices=[*SORT_FIELDS, *(f"-{field}" for field in SORT_FIELDS)], required=False, default="-updated_at"
    )


class AgentSyncSerializer(StrictInputSerializer):
    """`POST /api/agents/:id/sync`: the agent's fields and, optionally, its workflow."""

    agent = serializers.DictField()
    workflow = serializers.DictField(required=False, allow_null=True)
