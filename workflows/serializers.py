"""Workflow and version shapes (CONTRACT §3)."""

from rest_framework import serializers

from claraverse.serializers import StrictInputSerializer

from .models import Workflow, WorkflowVersion


class WorkflowSerializer(serializers.ModelSerializer):
    agent_id = serializers.CharField(source="agent.id", read_only=True)
    nodes = serializers.ListField(child=serializers.DictField())
    edges = serializers.ListField(child=serializers.DictField())

    class Meta:
        model = Workflow
        fields = ["id", "agent_id", "nodes", "edges", "version", "updated_at"]


class WorkflowSaveSerializer(StrictInputSerializer):
    """The body of a save. Node and edge contents are checked by workflows.validation."""

    nodes = serializers.JSONField()
    edges = serializers.JSONField()
    description = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class WorkflowVersionSummarySerializer(serializers.ModelSerializer):
    node_count = serializers.SerializerMethodField()
    edge_count = serializers.SerializerMethodField()

    class Meta:
        model = WorkflowVersion
        fields = ["version", "node_count", "edge_count", "created_at", "description"]

    def get_node_count(self, snapshot) -> int:
        return len(snapshot.nodes)

    def get_edge_count(self, snapshot) -> int:
        return len(snapshot.edges)


class WorkflowVersionSerializer(serializers.ModelSerializer):
    nodes = serializers.ListField(child=serializers.DictField())
    edges = serializers.ListField(child=serializers.DictField())

    class Meta:
        model = WorkflowVersion
        fields = ["version", "nodes", "edges", "created_at", "description"]


class GenerateWorkflowSerializer(StrictInputSerializer):
    description = serializers.CharField(min_length=1, max_length=4000)
    model = serializers.CharField(max_length=200, required=False)


class GeneratedWorkflowSerializer(serializers.Serializer):
    nodes = serializers.ListField(child=serializers.DictField())
    edges = serializers.ListField(child=serializers.DictField())
    model = serializers.CharField()
