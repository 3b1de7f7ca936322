"""Reads of workflows and their versions."""

from django.db.models import QuerySet

from claraverse.errors import ApplicationError

from .models import Workflow, WorkflowVersion


def workflow_for_agent(*, agent) -> Workflow:
    """The agent's workflow (every agent has one, version 0 until the first save)."""
    workflow, _ = Workflow.objects.get_or_create(agent=agent)
    return workflow


def workflow_versions_of(*, agent_ids) -> dict[str, int]:
    """Each agent's current workflow version in one query (an agent without a workflow row is at version 0)."""
    return dict(Workflow.objects.filter(agent_id__in=agent_ids).values_list("agent_id", "version"))


def workflow_version_list(*, agent) -> QuerySet[WorkflowVersion]:
    """Saved versions, newest first."""
    return WorkflowVersion.objects.filter(workflow__agent=agent).order_by("-version")


def workflow_version_get(*, agent, version: int) -> WorkflowVersion:
    """One saved version, or a 404."""
    snapshot = WorkflowVersion.objects.filter(workflow__agent=agent, version=version).first()
    if snapshot is None:
        raise ApplicationError("NOT_FOUND", f"Version {version} not found.")
    return snapshot


def workflow_graph_at(*, agent, version: int) -> tuple[list, list]:
    """The nodes and edges of a version (the current graph for the current version)."""
    workflow = workflow_for_agent(agent=agent)
    if version == workflow.version:
        return workflow.nodes, workflow.edges
    snapshot = workflow_version_get(agent=agent, version=version)
    return snapshot.nodes, snapshot.edges
