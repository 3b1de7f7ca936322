"""Workflow writes: validated saves with a snapshot per version, and restore as a new version."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction

from integrations.tools import tool_registry

from .models import Workflow, WorkflowVersion
from .validation import validate_workflow


@transaction.atomic
def workflow_save(*, agent, nodes: Any, edges: Any, description: str = "") -> Workflow:
    """Validate the graph, bump the version by one and keep a snapshot of it."""
    from agents.models import Agent

    nodes, edges = validate_workflow(
        nodes,
        edges,
        tool_exists=lambda name: tool_registry.get(name) is not None,
        agent_exists=lambda agent_id: Agent.objects.filter(pk=agent_id, user_id=agent.user_id).exists(),
        max_nodes=settings.WORKFLOW_MAX_NODES,
        max_edges=settings.WORKFLOW_MAX_EDGES,
    )
    workflow = Workflow.objects.select_for_update().filter(agent=agent).first() or Workflow(agent=agent)
    workflow.nodes, workflow.edges = nodes, edges
    workflow.version += 1
    workflow.save()
    WorkflowVersion.objects.create(
        workflow=workflow, version=workflow.version, nodes=nodes, edges=edges, description=description[:500]
    )
    return workflow


def workflow_restore(*, agent, version: int) -> Workflow:
    """Copy an old version into a new one (history is never rewritten)."""
    from .selectors import workflow_version_get

    snapshot = workflow_version_get(agent=agent, version=version)
    return workflow_save(
        agent=agent, nodes=snapshot.nodes, edges=snapshot.edges, description=f"Restored from version {version}"
    )
