"""Reads of agents, always scoped to their owner."""

from claraverse.errors import ApplicationError

from .models import Agent


def agent_get(*, user, agent_id: str) -> Agent:
    """The user's agent, or a 404 (also for another user's agent)."""
    agent = Agent.objects.filter(pk=agent_id, user=user).first()
    if agent is None:
        raise ApplicationError("NOT_FOUND", "Agent not found.")
    return agent
