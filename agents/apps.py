from django.apps import AppConfig


class AgentsConfig(AppConfig):
    """Agents and their sync."""

    name = "agents"
