from django.apps import AppConfig


class ChatsConfig(AppConfig):
    """Encrypted chat sync, conversation history and /ws/chat."""

    name = "chats"
