"""Agent writes: create, update, delete (stopping its executions), sync with a client-chosen id."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from claraverse.errors import ApplicationError, validation_details

from .models import Agent
from .serializers import AGENT_ID_PATTERN, AgentCreateSerializer, AgentUpdateSerializer


@transaction.atomic
def agent_create(*, user, fields: dict[str, Any], agent_id: str | None = None) -> Agent:
    """Create an agent (and its empty workflow, version 0)."""
    from workflows.models import Workflow

    agent = Agent(user=user, **fields)
    if agent_id:
        agent.id = agent_id
    agent.save(force_insert=True)
    Workflow.objects.create(agent=agent)
    return agent


def agent_update(*, agent: Agent, fields: dict[str, Any]) -> Agent:
    """Change the fields given."""
    for field, value in fields.items():
        setattr(agent, field, value)
    agent.save()
    return agent


@transaction.atomic
def agent_delete(*, agent: Agent) -> None:
    """Delete an agent with its workflow, versions and schedule; its running executions are cancelled."""
    from executions.schedules import schedule_delete_for_agent
    from executions.services import executions_cancel_for_agent

    # The schedule first: on PostgreSQL this waits for a dispatcher holding its row, so that the
    # executions that dispatcher just started are among those cancelled next.
    schedule_delete_for_agent(agent=agent)
    executions_cancel_for_agent(user=agent.user, agent_id=agent.id)
    agent.delete()


def _validated_agent_fields(data: dict, *, partial: bool) -> dict:
    serializer_class = AgentUpdateSerializer if partial else AgentCreateSerializer
    serializer = serializer_class(
        data={key: value for key, value in data.items() if key not in {"id", "created_at", "updated_at"}}
    )
    if not serializer.is_valid():
        details = {f"agent.{field}": messages for field, messages in validation_details(serializer.errors).items()}
        raise ApplicationError("VALIDATION_ERROR", "Invalid agent.", details=details)
    return serializer.validated_data


@transaction.atomic
def agent_sync(*, user, agent_id: str, agent_data: dict, workflow_data: dict | None) -> tuple[Agent, Any]:
    """Upsert an agent under a client-chosen `agent_` id, and its workflow if given.

    An id owned by another user is a 404, as if it did not exist for this user.
    """
    from workflows.selectors import workflow_for_agent
    from workflows.services import workflow_save

    if not AGENT_ID_PATTERN.match(agent_id):
        raise ApplicationError(
            "VALIDATION_ERROR",
            "The id must look like agent_<letters, digits, _ or ->.",
            details={"id": ["Must start with agent_ and use URL-safe characters."]},
        )
    if "id" in agent_data and agent_data["id"] != agent_id:
        raise ApplicationError(
            "VALIDATION_ERROR",
            "agent.id differs from the id in the path.",
            details={"agent.id": ["Must equal the id in the path."]},
        )
    existing = Agent.objects.select_for_update().filter(pk=agent_id).first()
    if existing is not None and existing.user_id != user.pk:
        raise ApplicationError("NOT_FOUND", "Agent not found.")
    if existing is None:
        fields = _validated_agent_fields(agent_data, partial=False)
        try:
            agent = agent_create(user=user, fields=fields, agent_id=agent_id)
        except IntegrityError:
            # Another request created this id between our look-up and our insert.
            raise ApplicationError("CONFLICT", "The agent was created concurrently; retry the sync.") from None
    else:
        agent = agent_update(agent=existing, fields=_validated_agent_fields(agent_data, partial=True))
    if workflow_data is not None:
        workflow_save(
            agent=agent,
            nodes=workflow_data.get("nodes"),
            edges=workflow_data.get("edges"),
            description=str(workflow_data.get("description") or "Synced"),
        )
    return agent, workflow_for_agent(agent=agent)
