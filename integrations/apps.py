from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    """Tools, integrations, credentials, LLM providers, models and the LLM client."""

    name = "integrations"
