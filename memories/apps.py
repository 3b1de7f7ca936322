from django.apps import AppConfig


class MemoriesConfig(AppConfig):
    """Memories and their use in chat."""

    name = "memories"
