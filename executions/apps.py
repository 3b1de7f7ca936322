from django.apps import AppConfig


class ExecutionsConfig(AppConfig):
    """Execution records, the tasks that run them, schedules and /ws/workflow."""

    name = "executions"
