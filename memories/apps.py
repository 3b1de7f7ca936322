from django.apps import AppConfig


class MemoriesConfig(AppConfig):
    """Memories and their use in chat."""

    name = "memories"

    def ready(self) -> None:
        from claraverse.encryption import register_encrypted_field

        register_encrypted_field("memories.Memory", "content_encrypted", purpose="memory", owner_attr="user_id")
