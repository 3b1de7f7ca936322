from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    """Workflow graphs, versions, validation, the node catalogue and the engine."""

    name = "workflows"
