"""Reads of agents, always scoped to their owner."""

from django.db.models import QuerySet

from claraverse.errors import ApplicationError

from .models import Agent


def agent_list(*, user, sort: str = "-updated_at") -> QuerySet[Agent]:
    """The user's agents in a stable order (`sort` plus the id as a tie-breaker)."""
    tiebreak = "-id" if sort.startswith("-") else "id"
    return Agent.objects.filter(user=user).order_by(sort, tiebreak)


def agent_get(*, user, agent_id: str) -> Agent:
    """The user's agent, or a 404 (also for another user's agent)."""
    agent = Agent.objects.filter(pk=agent_id, user=user).first()
    if agent is None:
        raise ApplicationError("NOT_FOUND", "Agent not found.")
    return agent
