"""Execution shapes (CONTRACT §4)."""

from rest_framework import serializers

from claraverse.pagination import PageParamsSerializer
from claraverse.serializers import StrictInputSerializer

from .models import Execution, ExecutionStatus, ExecutionTrigger


class NodeResultSerializer(serializers.Serializer):
    node_id = serializers.CharField()
    node_type = serializers.CharField()
    status = serializers.ChoiceField(choices=["completed", "failed", "skipped", "cancelled"])
    output = serializers.JSONField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    duration_ms = serializers.IntegerField(allow_null=True)
    attempts = serializers.IntegerField()


class ExecutionSerializer(serializers.ModelSerializer):
    error = serializers.SerializerMethodField()
    node_results = NodeResultSerializer(many=True)
    input = serializers.JSONField()
    output = serializers.JSONField(allow_null=True)

    class Meta:
        model = Execution
        fields = [
            "id",
            "agent_id",
            "status",
            "trigger",
            "input",
            "output",
            "error",
            "duration_ms",
            "started_at",
            "completed_at",
            "created_at",
            "workflow_version",
            "node_results",
        ]

    def get_error(self, execution) -> str | None:
        return execution.error or None


class ExecutionListParamsSerializer(PageParamsSerializer):
    status = serializers.ChoiceField(choices=ExecutionStatus.choices, required=False)
    trigger = serializers.ChoiceField(choices=ExecutionTrigger.choices, required=False)


class GlobalExecutionListParamsSerializer(ExecutionListParamsSerializer):
    agent_id = serializers.CharField(max_length=64, required=False)


class ExecutionStatsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    by_status = serializers.DictField(child=serializers.IntegerField())
    by_trigger = serializers.DictField(child=serializers.IntegerField())
    success_rate = serializers.FloatField(allow_null=True, help_text="Completed / finished, from 0 to 1.")
    avg_duration_ms = serializers.IntegerField(allow_null=True)
    p95_duration_ms = serializers.IntegerField(allow_null=True)
    last_execution_at = serializers.DateTimeField(allow_null=True)


class WebhookDeliverySerializer(serializers.Serializer):
    attempt = serializers.IntegerField()
    status_code = serializers.IntegerField(allow_null=True)
    error = serializers.SerializerMethodField()
    delivered_at = serializers.DateTimeField()

    def get_error(self, delivery) -> str | None:
        return delivery.error or None


class ExecutionDetailSerializer(ExecutionSerializer):
    """One execution, with its webhook delivery attempts (empty without a webhook_url)."""

    webhook_deliveries = WebhookDeliverySerializer(many=True, read_only=True)

    class Meta(ExecutionSerializer.Meta):
        fields = [*ExecutionSerializer.Meta.fields, "webhook_deliveries"]


class ScheduleSerializer(serializers.Serializer):
    id = serializers.CharField()
    agent_id = serializers.CharField()
    cron = serializers.CharField()
    timezone = serializers.CharField()
    enabled = serializers.BooleanField()
    input = serializers.JSONField()
    next_run_at = serializers.SerializerMethodField()
    last_run_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_next_run_at(self, schedule) -> str | None:
        from claraverse.timeutils import isoformat_z

        # The stored cron time the dispatcher fires next (null while disabled).
        return isoformat_z(schedule.next_run_at)


class ScheduleUpdateSerializer(StrictInputSerializer):
    cron = serializers.CharField(max_length=120, required=False)
    timezone = serializers.CharField(max_length=64, required=False)
    enabled = serializers.BooleanField(required=False)
    input = serializers.JSONField(required=False)


class ScheduleCreateSerializer(ScheduleUpdateSerializer):
    cron = serializers.CharField(max_length=120)


class ScheduleRunSerializer(serializers.Serializer):
    input = serializers.JSONField(required=False, default=dict)


class ScheduleRunAcceptedSerializer(serializers.Serializer):
    execution_id = serializers.CharField()
    status = serializers.CharField()
